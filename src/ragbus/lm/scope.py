"""The DSPy settings under which ragbus calls an LM."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

import dspy

from ragbus.lm.adapter import CHAT_ADAPTER
from ragbus.observability import tracing
from ragbus.usage import report_tokens


def lm_scope(lm: dspy.BaseLM, *, record_history: bool = False) -> AbstractContextManager[Any]:
    """``dspy.context`` for one call of a DSPy module with ``lm``.

    It sets the LM for the current task only (never ``dspy.configure``), and the
    :class:`ragbus.lm.adapter.ChatAdapter` (system messages built once). Unless
    ``record_history`` is true it also turns off what DSPy keeps of every call: the
    LM's and modules' ``history`` (up to 10,000 entries each, with full prompts) and
    the global ``trace`` of predictions (up to 10,000, shared by all tasks), so a
    long-running worker's memory stays flat.

    Parameters:
        lm: the LM to call.
        record_history: keep DSPy's history and trace (default false; for debugging
            with ``lm.inspect_history()``).
    """
    scope: AbstractContextManager[Any]
    if record_history:
        scope = dspy.context(lm=lm, adapter=CHAT_ADAPTER)
    else:
        scope = dspy.context(lm=lm, adapter=CHAT_ADAPTER, disable_history=True, max_trace_size=0)
    if not tracing.enabled():
        return scope
    # the LM call is a child span of the stage's: ``chat <model>`` (OpenTelemetry's
    # GenAI naming), around everything the module asks of the LM within this scope
    model = str(getattr(lm, "model", type(lm).__name__))
    spans = ExitStack()
    spans.enter_context(
        tracing.span(
            f"chat {model}",
            {"gen_ai.operation.name": "chat", "gen_ai.request.model": model},
            client=True,
        )
    )
    spans.enter_context(scope)
    return spans


@contextmanager
def reported_usage() -> Iterator[None]:
    """Track the tokens the LM calls of the block use, as the LM reports them (DSPy's
    usage tracker), and report their total to the rate limit (``RAGBUS_LM_TPM``)."""
    from dspy.utils.usage_tracker import track_usage

    with track_usage() as tracker:
        try:
            yield
        finally:
            total = sum(
                int(usage.get("total_tokens") or 0) for usage in tracker.get_total_tokens().values()
            )
            report_tokens(total)
