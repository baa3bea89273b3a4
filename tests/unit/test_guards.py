"""The guards around a handler, one at a time, with no I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from ragbus.errors import PermanentError, TransientError
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import DocumentsRetrieved, QueryReceived, RagEvent
from ragbus.runtime.cache import SharedCache, input_key, result_key
from ragbus.runtime.circuit import BreakerConfig, BreakerState
from ragbus.runtime.classify import BreakerOpenError
from ragbus.runtime.guards.breaker import BreakerBoard, BreakerGuard
from ragbus.runtime.guards.cache import KEY_SUFFIX, ResultCacheGuard
from ragbus.runtime.guards.dedup import ProcessedEvents
from ragbus.runtime.guards.retry import RetryGuard, RetryPolicy
from ragbus.runtime.local_cache import LocalCache
from ragbus.runtime.stage import Stage
from tests.fakes import RecordingBus
from tests.polling import wait_until


def query(question: str = "q", **options: object) -> Envelope:
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question), **options)  # type: ignore[arg-type]


def answer_of(event: Envelope) -> list[Envelope]:
    payload = DocumentsRetrieved(question=event.payload["question"], passages=[])
    return [event.derive(RagEvent.DOCUMENTS_RETRIEVED, payload)]


class CountingHandler:
    """Fails ``failures`` times with ``error``, then answers; counts calls."""

    def __init__(self, failures: int = 0, error: Exception | None = None, delay: float = 0) -> None:
        self.failures = failures
        self.error = error or TransientError("flaky")
        self.delay = delay
        self.calls = 0

    async def __call__(self, event: Envelope) -> list[Envelope]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.calls <= self.failures:
            raise self.error
        return answer_of(event)


def stage(handler: Callable[[Envelope], Awaitable[list[Envelope]]], **options: object) -> Stage:
    return Stage(name="retrieve", consumes=(RagEvent.QUERY_RECEIVED,), handler=handler, **options)  # type: ignore[arg-type]


# retries ---------------------------------------------------------------------------------


async def test_retry_recovers_from_transient_failures() -> None:
    handler = CountingHandler(failures=2)
    guard = RetryGuard(RetryPolicy(attempts=3, initial_s=0.001, max_s=0.01))
    outputs = await guard(stage(handler), query(), handler)
    assert handler.calls == 3 and len(outputs) == 1


async def test_retry_gives_up_after_its_attempts() -> None:
    handler = CountingHandler(failures=10)
    guard = RetryGuard(RetryPolicy(attempts=3, initial_s=0.001, max_s=0.01))
    with pytest.raises(TransientError):
        await guard(stage(handler), query(), handler)
    assert handler.calls == 3


async def test_retry_never_retries_a_permanent_error() -> None:
    handler = CountingHandler(failures=10, error=PermanentError("bad input"))
    guard = RetryGuard(RetryPolicy(attempts=5, initial_s=0.001))
    with pytest.raises(PermanentError):
        await guard(stage(handler), query(), handler)
    assert handler.calls == 1


async def test_retry_never_sleeps_past_the_deadline() -> None:
    # each retry waits 0.7 s (Retry-After): a second call at 0.7 s, and no third, whose
    # wait would end 0.4 s past the deadline
    handler = CountingHandler(failures=1000, error=TransientError("429", retry_after=0.7))
    guard = RetryGuard(RetryPolicy(attempts=1000, initial_s=0.05, max_s=2.0))
    soon = datetime.now(UTC) + timedelta(seconds=1.0)
    with pytest.raises(TransientError):
        await guard(stage(handler), query(deadline=soon), handler)
    assert datetime.now(UTC) < soon + timedelta(seconds=0.2)
    assert handler.calls == 2


async def test_retry_honours_a_short_retry_after_and_leaves_a_long_one() -> None:
    short = CountingHandler(failures=1, error=TransientError("429", retry_after=0.05))
    guard = RetryGuard(RetryPolicy(attempts=3, initial_s=0.001, max_s=1.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await guard(stage(short), query(), short)
    assert loop.time() - started >= 0.05
    long = CountingHandler(failures=1, error=TransientError("429", retry_after=60))
    with pytest.raises(TransientError):
        await guard(stage(long), query(), long)
    assert long.calls == 1  # the redelivery will wait the 60 s, not this worker


# breaker ---------------------------------------------------------------------------------


def board(bus: RecordingBus, **config: object) -> BreakerBoard:
    return BreakerBoard(bus, BreakerConfig(**config))  # type: ignore[arg-type]


class PausingBus(RecordingBus):
    def __init__(self) -> None:
        super().__init__()
        self.paused: list[str] = []
        self.resumed: list[str] = []

    async def pause(self, stage: str) -> None:
        self.paused.append(stage)

    async def resume(self, stage: str) -> None:
        self.resumed.append(stage)


async def test_breaker_opens_pauses_the_stage_and_requeues_the_tripping_event() -> None:
    bus = PausingBus()
    guard = BreakerGuard(board(bus, minimum_calls=2, window_size=2, open_wait_s=0.2))
    handler = CountingHandler(failures=100)
    lm_stage = stage(handler, dependency="lm")
    with pytest.raises(TransientError):
        await guard(lm_stage, query(), handler)
    with pytest.raises(BreakerOpenError):  # this failure opened it: the event goes back
        await guard(lm_stage, query(), handler)
    await wait_until(lambda: bus.paused == ["retrieve"], what="the stage paused")
    with pytest.raises(BreakerOpenError):  # open: the handler is not even called
        await guard(lm_stage, query(), handler)
    assert handler.calls == 2
    # half-open after open_wait_s: take events again, as probes
    await wait_until(lambda: bus.resumed == ["retrieve"], what="the stage resumed")


async def test_half_open_probe_success_closes_and_waiting_calls_go_through() -> None:
    bus = PausingBus()
    the_board = board(bus, minimum_calls=1, window_size=1, open_wait_s=0.05, half_open_calls=1)
    guard = BreakerGuard(the_board)
    failing = CountingHandler(failures=1)
    lm_stage = stage(failing, dependency="lm")
    with pytest.raises(BreakerOpenError):
        await guard(lm_stage, query(), failing)
    await wait_until(
        lambda: the_board.breakers["lm"].state is BreakerState.HALF_OPEN,
        what="the breaker half-open",
    )
    slow_ok = CountingHandler(delay=0.1)
    results = await asyncio.gather(*(guard(lm_stage, query(), slow_ok) for _ in range(5)))
    assert len(results) == 5
    assert the_board.breakers["lm"].state is BreakerState.CLOSED
    assert slow_ok.calls == 5


async def test_permanent_errors_do_not_open_the_breaker() -> None:
    bus = PausingBus()
    the_board = board(bus, minimum_calls=2, window_size=2)
    guard = BreakerGuard(the_board)
    handler = CountingHandler(failures=100, error=PermanentError("bad"))
    for _ in range(5):
        with pytest.raises(PermanentError):
            await guard(stage(handler, dependency="lm"), query(), handler)
    assert the_board.breakers["lm"].state is BreakerState.CLOSED


async def test_stage_without_dependency_has_no_breaker() -> None:
    guard = BreakerGuard(board(PausingBus(), minimum_calls=1, window_size=1))
    handler = CountingHandler(failures=3)
    for _ in range(3):
        with pytest.raises(TransientError):
            await guard(stage(handler), query(), handler)


# cache and coalescing --------------------------------------------------------------------


async def test_identical_concurrent_inputs_share_one_call() -> None:
    handler = CountingHandler(delay=0.05)
    guard = ResultCacheGuard(SharedCache())
    events = [query("What is ragbus?") for _ in range(100)]
    results = await asyncio.gather(*(guard(stage(handler), e, handler) for e in events))
    assert handler.calls == 1
    for event, outputs in zip(events, results, strict=True):
        [output] = outputs
        assert output.causation_id == event.id  # each answer belongs to its own question
        assert output.correlation_id == event.correlation_id


async def test_cache_hit_skips_the_handler_and_keys_normalize_the_question() -> None:
    handler = CountingHandler()
    guard = ResultCacheGuard(SharedCache())
    await guard(stage(handler), query("What  is RAGBUS?"), handler)
    await guard(stage(handler), query("what is ragbus?"), handler)
    await guard(stage(handler, fingerprint="other-model"), query("what is ragbus?"), handler)
    assert handler.calls == 2  # the fingerprint is part of the key


async def test_a_hit_rebuilds_the_outputs_from_their_wire_form() -> None:
    handler = CountingHandler()
    cache = SharedCache()
    guard = ResultCacheGuard(cache)
    first_query = query("What is ragbus?")
    [first] = await guard(stage(handler), first_query, handler)
    second_query = query("What is ragbus?")
    [second] = await guard(stage(handler), second_query, handler)
    assert handler.calls == 1
    assert (second.type, second.payload) == (first.type, first.payload)
    assert second.causation_id == second_query.id and second.id != first.id
    # what is kept is the outputs' JSON text, as published: nothing for the GC to walk
    kept = await cache.get(result_key("retrieve", "", first_query.payload) + KEY_SUFFIX)
    assert isinstance(kept, str) and first.encode().decode() in kept


async def test_results_kept_as_lists_by_an_earlier_version_are_not_read() -> None:
    handler = CountingHandler()
    cache = SharedCache()
    old = query("old")
    # what an earlier ragbus wrote (and reads) under the key without the suffix
    await cache.set(result_key("retrieve", "", old.payload), [{"type": "x", "payload": {}}])
    [output] = await guard_call(cache, handler, old)
    assert handler.calls == 1 and output.type == RagEvent.DOCUMENTS_RETRIEVED
    kept = await cache.get(result_key("retrieve", "", old.payload))
    assert kept == [{"type": "x", "payload": {}}]  # theirs, left for them


async def guard_call(
    cache: SharedCache, handler: CountingHandler, event: Envelope
) -> list[Envelope]:
    return await ResultCacheGuard(cache)(stage(handler), event, handler)


async def test_failed_leader_lets_followers_fail_and_caches_nothing() -> None:
    handler = CountingHandler(failures=1, delay=0.05, error=PermanentError("bad"))
    guard = ResultCacheGuard(SharedCache())
    results = await asyncio.gather(
        *(guard(stage(handler), query("q"), handler) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, PermanentError) for r in results)
    await guard(stage(handler), query("q"), handler)
    assert handler.calls == 2


async def test_cache_outage_degrades_to_no_cache() -> None:
    cache = SharedCache("redis://127.0.0.1:1/0", timeout_s=0.2)  # nothing listens there
    handler = CountingHandler()
    guard = ResultCacheGuard(cache)
    outputs = await guard(stage(handler), query(), handler)
    assert len(outputs) == 1
    errors = cache.metrics.registry.get_sample_value(
        "ragbus_cache_total", {"stage": "retrieve", "result": "error"}
    )
    assert errors is not None and errors >= 1
    await cache.close()


def test_input_key_ignores_timings_and_case() -> None:
    assert input_key({"question": "A  b", "timings_ms": {"x": 1.0}}) == input_key(
        {"question": "a b"}
    )
    assert input_key({"question": "a", "k": 3}) != input_key({"question": "a", "k": 4})


def test_input_key_is_the_same_in_every_version() -> None:
    # Workers of every version share one Redis cache: a key must not change unless
    # KEY_SUFFIX does. This digest was made by the first release of the key (json.dumps
    # with sorted keys and compact separators, ASCII escapes, SHA-256).
    payload = {
        "question": "Où  est-il?",
        "passages": [{"title": "t", "doc_id": "d#0", "score": 0.5}],
        "history": [],
        "timings_ms": {"retrieve": 1.0},
    }
    assert input_key(payload) == "4072bf4039cdb5986af56268e9a22e83bb4def45bd7de3596e3ab38282fcc00b"
    assert KEY_SUFFIX == ":json"


# dedup ------------------------------------------------------------------------------------


async def test_processed_events_are_remembered_per_stage() -> None:
    processed = ProcessedEvents(SharedCache())
    event = query()
    assert not await processed.seen("retrieve", event.id)
    await processed.mark("retrieve", event.id)
    assert await processed.seen("retrieve", event.id)
    assert not await processed.seen("generate", event.id)


async def test_local_cache_entries_expire() -> None:
    now = [100.0]
    cache = LocalCache(clock=lambda: now[0])
    await cache.set("k", 1, ttl=5)
    assert await cache.get("k") == 1
    with pytest.raises(ValueError):
        await cache.add("k", 2, ttl=5)
    now[0] += 5
    assert await cache.get("k") is None
    assert await cache.add("k", 3, ttl=5)
    assert await cache.delete("k") == 1
