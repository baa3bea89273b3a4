"""Caps on work in progress: asks, streams and WebSockets open at once, in all and per
client."""

from __future__ import annotations

from collections import Counter

from ragbus.gateway.errors import RequestError

#: Seconds a refused client is told to wait (``Retry-After``): a slot frees as soon as
#: any answer ends, so there is no better estimate than "shortly".
RETRY_AFTER_S = 1


class Slot:
    """One held slot of :class:`Slots`; :meth:`release` it exactly when the work ends
    (releasing twice is harmless)."""

    def __init__(self, slots: Slots, client: str) -> None:
        self._slots = slots
        self._client: str | None = client

    def release(self) -> None:
        """Give the slot back."""
        if self._client is not None:
            self._slots._give_back(self._client)
            self._client = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class Slots:
    """At most ``total`` pieces of one kind of work at once, at most ``per_client`` of
    them for one client. Taking a slot beyond either raises :class:`RequestError` 429
    with ``Retry-After``.

    Parameters:
        kind: what is counted, for the refusal's message (``asks``, ``streams``, ...).
        total: the cap in all (a setting such as ``RAGBUS_GATEWAY_MAX_ASKS``).
        per_client: the cap per client (``RAGBUS_GATEWAY_MAX_PER_CLIENT``).
        setting: the environment variable of ``total``, named in the refusal.
    """

    def __init__(self, kind: str, *, total: int, per_client: int, setting: str) -> None:
        if total < 1 or per_client < 1:
            raise ValueError("caps must be at least 1")
        self.kind = kind
        self.total = total
        self.per_client = per_client
        self.setting = setting
        self._held: Counter[str] = Counter()
        self._count = 0

    def __len__(self) -> int:
        """Slots held now."""
        return self._count

    def held_by(self, client: str) -> int:
        """Slots ``client`` holds now."""
        return self._held[client]

    def take(self, client: str) -> Slot:
        """A slot for ``client``; raises :class:`RequestError` (429) when none is free."""
        if self._count >= self.total:
            raise self._refusal(f"the gateway has {self.total} {self.kind} open ({self.setting})")
        if self._held[client] >= self.per_client:
            raise self._refusal(
                f"this client has {self.per_client} {self.kind} open "
                "(RAGBUS_GATEWAY_MAX_PER_CLIENT)"
            )
        self._held[client] += 1
        self._count += 1
        return Slot(self, client)

    def _give_back(self, client: str) -> None:
        self._count -= 1
        self._held[client] -= 1
        if not self._held[client]:
            del self._held[client]

    def _refusal(self, why: str) -> RequestError:
        return RequestError(
            429,
            "too_many_requests",
            f"too many {self.kind} at once: {why}; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
