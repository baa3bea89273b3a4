"""The stages of the default pipeline. Each handler is an async callable that turns one
event into a list of new events; handlers know nothing of the bus or the runtime."""

from ragbus.handlers.emit import Emit, TokenEmitter
from ragbus.handlers.generate import AnswerQuestion, GenerateHandler
from ragbus.handlers.retrieve import RetrieveHandler

__all__ = ["AnswerQuestion", "Emit", "GenerateHandler", "RetrieveHandler", "TokenEmitter"]
