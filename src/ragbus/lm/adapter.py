"""DSPy's chat adapter, with the system message built once per signature."""

from __future__ import annotations

import weakref
from typing import Any

import dspy


class ChatAdapter(dspy.ChatAdapter):  # type: ignore[misc]
    """``dspy.ChatAdapter`` that builds each signature's system message once.

    It keeps the name ``ChatAdapter`` because DSPy's stream listeners recognise the
    adapter in use by its class name.

    The system message (field descriptions, field structure, task description) depends
    on the signature alone, yet DSPy rebuilds it on every call, creating pydantic type
    adapters as it goes: about a millisecond of CPU per call, the largest part of the
    DSPy path. Signatures are immutable classes (changing one makes a new class), so
    the message is kept per signature class, weakly. Everything else, including the
    JSON fallback and parsing, is the ChatAdapter's own.

    Parameters:
        **options: passed to ``dspy.ChatAdapter``.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._system_messages: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        """The system message of ``signature``, built on first use."""
        message = self._system_messages.get(signature)
        if message is None:
            message = str(super().format_system_message(signature))
            self._system_messages[signature] = message
        return message


#: The adapter ragbus calls DSPy modules with (shared: it holds no per-call state).
CHAT_ADAPTER = ChatAdapter()
