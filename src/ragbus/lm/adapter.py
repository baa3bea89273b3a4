"""DSPy's chat adapter, with the system message built once per signature and text
inputs formatted without a pydantic type adapter per call."""

from __future__ import annotations

import weakref
from typing import Any

import dspy
from dspy.adapters.utils import format_field_value


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

    DSPy also formats every input value through a pydantic ``TypeAdapter`` built for
    that call (about 30 µs each, a question's largest single cost in the adapter),
    although a text value is formatted as the text itself: text inputs are handed over
    as they are, every other value is formatted by DSPy.

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

    def format_user_message_content(
        self,
        signature: type[dspy.Signature],
        inputs: dict[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        """The user message of ``inputs``: ``dspy.ChatAdapter``'s, built the same way."""
        messages = [prefix]
        for name, field in signature.input_fields.items():
            if name in inputs:
                value = inputs[name]
                # what DSPy's format_field_value returns for a str, without its type adapter
                text = value if isinstance(value, str) else format_field_value(field, value)
                messages.append(f"[[ ## {name} ## ]]\n{text}")
        if main_request:
            requirements = self.user_message_output_requirements(signature)
            if requirements is not None:
                messages.append(requirements)
        messages.append(suffix)
        return "\n\n".join(messages).strip()


#: The adapter ragbus calls DSPy modules with (shared: it holds no per-call state).
CHAT_ADAPTER = ChatAdapter()
