"""The stages of the built-in pipelines. Each handler is an async callable that turns
events into new events; handlers know nothing of the bus or the runtime."""

from ragbus.handlers.generate import AnswerQuestion, GenerateHandler
from ragbus.handlers.retrieve import RetrieveHandler

__all__ = ["AnswerQuestion", "GenerateHandler", "RetrieveHandler"]
