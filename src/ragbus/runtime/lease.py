"""Coalescing leases across worker processes, in Redis: held while the holder works,
gone a few seconds after it dies.

A lease is a Redis key, set only if absent (``SET NX``), with a short time to live
(``ttl_s``, default 3 s) and a token unique to this acquisition. While a holder works,
one background task per process renews every lease the process holds, every
``ttl_s / 3``, in one round trip, each only if the key still holds its token. A holder
that is killed stops renewing, so its lease ends at most ``ttl_s`` after its last
renewal, and the workers waiting for it take over. Release deletes the key only if it
still holds the token, so a holder whose lease lapsed (a stalled process) never deletes
the lease of the worker that took over.

aiocache's ``RedLock`` waits on an in-process event (it coordinates one process only)
and aiocache has no compare-and-delete, so this talks to Redis directly (redis-py,
Lua scripts for the two compare-and-act steps).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from enum import Enum
from typing import Any, Final

logger = logging.getLogger(__name__)

#: Default time to live of a lease: how long it outlives a holder that died (seconds).
DEFAULT_LEASE_TTL_S: Final = 3.0
#: Renewals per time to live: a lease survives two missed renewals.
RENEWALS_PER_TTL: Final = 3
#: Longest wait for the renewal task and the connections when closing (seconds).
_CLOSE_TIMEOUT_S: Final = 2.0

# KEYS[1]: the lease, ARGV[1]: the holder's token, ARGV[2]: time to live in ms.
_RENEW: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LeaseOutcome(Enum):
    """What trying to take a lease came to."""

    #: this caller holds it: compute, and it is renewed until released
    TAKEN = "taken"
    #: another holder has it: wait for its result
    HELD = "held"
    #: the lease store is down: compute without coalescing
    UNAVAILABLE = "unavailable"


class RedisLeases:
    """Leases in one Redis, renewed while held.

    Parameters:
        url: ``redis://[:password@]host:port/db`` (a secret: never logged).
        namespace: prefix of every lease key (default ``ragbus``).
        ttl_s: time to live of a lease, renewed every ``ttl_s / 3`` while held
            (default :data:`DEFAULT_LEASE_TTL_S`).
        timeout_s: time limit of one Redis call (default 0.5).
        on_error: told of each failed renewal round (default: a warning each time);
            the shared cache counts them and warns at most every 30 s.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "ragbus",
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        timeout_s: float = 0.5,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self._on_error = on_error
        self.ttl_s = ttl_s
        import redis.asyncio as redis  # here: a process without Redis never loads its client

        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._renew_script = self._client.register_script(_RENEW)
        self._release_script = self._client.register_script(_RELEASE)
        self._held: dict[str, str] = {}  # key -> token, the leases this process holds
        self._renewing: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def held(self) -> int:
        """How many leases this process holds now."""
        return len(self._held)

    def _key(self, name: str) -> str:
        return f"{self.namespace}{name}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    async def acquire(self, name: str, *, owner: str = "") -> str | None:
        """Take the lease ``name``: its token if taken (renewed from now on until
        :meth:`release`), None if another holder has it. Raises Redis's errors.

        Parameters:
            name: the lease's name (namespaced here).
            owner: who takes it, written into the token for whoever inspects Redis.
        """
        key = self._key(name)
        token = f"{owner}:{uuid.uuid4().hex}"
        if not await self._client.set(key, token, nx=True, px=self._ttl_ms):
            return None
        self._held[key] = token
        if self._renewing is None and not self._closing:
            self._renewing = asyncio.create_task(self._keep_renewing(), name="ragbus:leases")
        return token

    async def is_held(self, name: str) -> bool:
        """Whether anyone holds the lease ``name``. Raises Redis's errors."""
        return bool(await self._client.exists(self._key(name)))

    async def release(self, name: str, token: str) -> None:
        """Let go of the lease ``name`` if ``token`` still holds it. Raises Redis's
        errors (the lease then ends by itself within its time to live)."""
        key = self._key(name)
        if self._held.get(key) == token:
            del self._held[key]
        await self._release_script(keys=[key], args=[token])

    async def _keep_renewing(self) -> None:
        """Renew every held lease each ``ttl_s / RENEWALS_PER_TTL``, in one round trip;
        end when none is held (the next :meth:`acquire` starts it again)."""
        while not self._closing:
            await asyncio.sleep(self.ttl_s / RENEWALS_PER_TTL)
            if not self._held or self._closing:
                self._renewing = None  # in the same step as the check: no lease missed
                return
            held = list(self._held.items())
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, token in held:
                        await self._renew_script(
                            keys=[key], args=[token, self._ttl_ms], client=pipe
                        )
                    renewed = await pipe.execute()
            except Exception as exc:  # Redis down: the leases may lapse, nothing worse
                if self._closing:  # redis-py may turn the cancellation into an error
                    return
                if self._on_error is not None:
                    self._on_error(exc)
                else:
                    logger.warning("renewing %d coalescing leases failed: %r", len(held), exc)
                continue
            for (key, token), kept in zip(held, renewed, strict=True):
                if not kept and self._held.get(key) == token:
                    del self._held[key]
                    logger.warning(
                        "coalescing lease %s ended before its holder finished (a stall?): "
                        "another worker may compute the same result",
                        key,
                    )

    async def close(self) -> None:
        """Stop renewing and close the connections (held leases then end by themselves)."""
        self._closing = True
        task, self._renewing = self._renewing, None
        if task is not None:
            task.cancel()
            # bounded: a stop never hangs on the client library's own cleanup
            await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT_S)
        self._held.clear()
        import redis.asyncio as redis  # loaded already: __init__ imported it

        try:
            await asyncio.wait_for(self._client.aclose(), _CLOSE_TIMEOUT_S)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            logger.debug("closing the lease store's connections failed: %r", exc)
