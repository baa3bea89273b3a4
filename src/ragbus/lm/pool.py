"""A ``dspy.LM`` whose HTTP connection pool has a chosen size.

``dspy.LM`` builds DSPy's own HTTP engine (lm15) from its client settings (``api_key``,
``api_base``, ``timeout``) and has no setting for the size of that engine's connection
pool: it keeps lm15's default of 100 connections. lm15's ``RouterConfig`` has one
(``max_connections``), and ``dspy.LM`` takes an engine built from such a config
(``engine=`` and ``async_engine=``), so an LM with a pool size is given DSPy's engine
explicitly, with the key, URL and timeout in its config rather than on the LM (DSPy
refuses client settings on an LM with an engine of its own: the engine owns the
connection).

What the LM gives up by being handed its engine: DSPy's choice of LiteLLM for a model or
a request its own engine cannot carry. A model the engine cannot route is refused here,
when the LM is built, not on its first call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import dspy
from dspy.clients.engines import AsyncLM15Engine, LM15Engine
from dspy.lm15 import (
    Request,
    Response,
    RouterConfig,
    Timeouts,
    UnknownModelError,
    UnsupportedFeatureError,
)

from ragbus.errors import ConfigurationError


class _Engine:
    """What both engines share: the model's capability hints, and being shared by the
    copies of their LM.

    DSPy asks an LM's engine for the hints when the engine is the LM's own (its
    adapters read them: function calling, response schemas, parameters); without them
    it would take the model to support none. They are the hints a ``dspy.LM`` on DSPy's
    own engine choice reports for the same model.
    """

    def __init__(self, reference: dspy.LM) -> None:
        self.supports_function_calling = reference.supports_function_calling
        self.supports_reasoning = reference.supports_reasoning
        self.supports_response_schema = reference.supports_response_schema
        self.supported_params = frozenset(reference.supported_params)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Engine:
        # a deep copy of the LM or of a module holding it (DSPy's optimizers copy
        # modules) shares its pool, as copies of an LM share DSPy's own engines
        return self


class PooledEngine(_Engine):
    """The synchronous engine: one DSPy ``LM15Engine`` built from ``config``, whose one
    connection pool (``config.max_connections``) every thread shares.

    Parameters:
        config: the lm15 router configuration (key, URL, timeouts, pool size).
        reference: an LM on the same model, whose capability hints this engine reports.
    """

    def __init__(self, config: RouterConfig, reference: dspy.LM) -> None:
        super().__init__(reference)
        self._engine = LM15Engine(config, model_type="chat")

    def complete(self, request: Request) -> Response:
        """One call to the LM."""
        return self._engine.complete(request)

    def stream(self, request: Request) -> Iterator[Any]:
        """One streamed call to the LM: its events."""
        yield from self._engine.stream(request)

    def close(self) -> None:
        """Close the pool's connections."""
        self._engine.close()


class AsyncPooledEngine(_Engine):
    """The asynchronous engine: one DSPy ``AsyncLM15Engine`` per event loop, each with a
    pool of ``config.max_connections``.

    An asyncio connection pool belongs to the loop that opened it (DSPy keeps one per
    loop for the same reason), so a worker, which runs one loop, has one pool of that
    size; engines of loops that have closed are dropped.

    Parameters:
        config: the lm15 router configuration (key, URL, timeouts, pool size).
        reference: an LM on the same model, whose capability hints this engine reports.
    """

    def __init__(self, config: RouterConfig, reference: dspy.LM) -> None:
        super().__init__(reference)
        self._config = config
        self._engines: dict[asyncio.AbstractEventLoop, AsyncLM15Engine] = {}
        self._lock = threading.Lock()  # loops in several threads may share the LM

    def _engine(self) -> AsyncLM15Engine:
        loop = asyncio.get_running_loop()
        with self._lock:
            engine = self._engines.get(loop)
            if engine is None:
                for closed in [other for other in self._engines if other.is_closed()]:
                    del self._engines[closed]
                engine = AsyncLM15Engine(self._config, model_type="chat")
                self._engines[loop] = engine
            return engine

    async def complete(self, request: Request) -> Response:
        """One call to the LM, through this loop's pool."""
        return await self._engine().complete(request)

    async def stream(self, request: Request) -> AsyncIterator[Any]:
        """One streamed call to the LM, through this loop's pool: its events."""
        async for event in self._engine().stream(request):
            yield event

    async def aclose(self) -> None:
        """Close this loop's pool."""
        loop = asyncio.get_running_loop()
        with self._lock:
            engine = self._engines.pop(loop, None)
        if engine is not None:
            await engine.aclose()


def pooled_lm(
    model: str,
    *,
    max_connections: int,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout_s: float | None = None,
    **options: Any,
) -> dspy.LM:
    """A ``dspy.LM`` on ``model`` through DSPy's own HTTP engine, with a connection pool
    of ``max_connections`` (per LM, and per event loop for async calls).

    Raises :class:`~ragbus.errors.ConfigurationError` when DSPy's own engine does not
    serve ``model`` (a model DSPy sends through LiteLLM) or a setting is invalid.

    Parameters:
        model: the model string, e.g. ``openai/gpt-4o-mini``.
        max_connections: connections open to the LM at most; a call waits for a free
            one (up to ``timeout_s``).
        api_base: the LM server's URL (default: the provider's).
        api_key: the key (default: the provider's environment variable).
        timeout_s: time limit of each wait of a request (send, next byte, a free
            connection), as ``dspy.LM(timeout=...)`` maps it; connecting keeps the
            engine's 10 s (default: the engine's limits).
        options: other ``dspy.LM`` arguments (temperature, max_tokens, cache...).
    """
    client: dict[str, Any] = {"api_base": api_base, "api_key": api_key, "timeout": timeout_s}
    client = {name: value for name, value in client.items() if value is not None}
    try:
        # resolving reads no credential and makes no call; it refuses a model that
        # DSPy would only send through LiteLLM
        provider = LM15Engine(RouterConfig(env={}), model_type="chat").resolve(model).provider
        if provider.startswith("azure") and api_base:
            # DSPy sends Azure with an address of its own through LiteLLM, which reads
            # that address its own way
            raise UnsupportedFeatureError("an Azure model with an API base goes through LiteLLM")
        reference = dspy.LM(model, **client, **options)
        timeouts = (
            Timeouts(read=timeout_s, write=timeout_s, pool=timeout_s)
            if timeout_s is not None
            else None
        )
        config = RouterConfig(
            api_keys={provider: api_key} if api_key is not None else None,
            base_urls={provider: api_base} if api_base else None,
            timeouts=timeouts,
            max_connections=max_connections,
        )
        return dspy.LM(
            model,
            engine=PooledEngine(config, reference),
            async_engine=AsyncPooledEngine(config, reference),
            **options,
        )
    except (UnknownModelError, UnsupportedFeatureError) as exc:
        raise ConfigurationError(
            f"RAGBUS_LM_MAX_CONNECTIONS needs a model DSPy's own HTTP engine serves; "
            f"{model!r} is not one ({exc}): unset it to let DSPy choose LiteLLM"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot use LM {model!r}: {exc}") from exc
