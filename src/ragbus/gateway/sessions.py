"""Chat sessions: the last turns of each conversation, in bounded memory, each readable
only by its owner.

The gateway issues session ids (unguessable, see :func:`new_session_id`); a client
never picks one. Each session belongs to an owner: the API token when one is set (a
client may continue its conversation on a new connection), else the one connection
that opened it. A client naming a session that is not its own reads nothing.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ragbus.payloads.rag import Turn


class UnknownSession(LookupError):
    """The session does not exist, or belongs to someone else (indistinguishable on
    purpose: a client cannot probe for other clients' session ids)."""


def new_session_id() -> str:
    """A fresh session id: 128 random bits, URL-safe (matches the chat message's
    ``session_id`` pattern)."""
    return f"s-{secrets.token_urlsafe(16)}"


@dataclass
class _Session:
    owner: str
    turns: deque[Turn] = field(default_factory=deque)


class SessionStore:
    """The last ``max_turns`` turns of at most ``max_sessions`` conversations.

    When a new session would exceed ``max_sessions``, the least recently used one is
    forgotten, so memory stays bounded however many clients come and go.

    Parameters:
        max_sessions: sessions kept (default 1000).
        max_turns: turns kept per session, and passed as history (default 6; 0 keeps none).
    """

    def __init__(self, *, max_sessions: int = 1000, max_turns: int = 6) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if max_turns < 0:
            raise ValueError("max_turns must not be negative")
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def owns(self, session_id: str, owner: str) -> bool:
        """Whether ``session_id`` exists and belongs to ``owner``."""
        session = self._sessions.get(session_id)
        return session is not None and secrets.compare_digest(session.owner, owner)

    def history(self, session_id: str, owner: str) -> list[Turn]:
        """The session's kept turns, oldest first (none for a session not started yet);
        marks the session as recently used. Raises :class:`UnknownSession` when the
        session belongs to another owner.

        Parameters:
            session_id: the session.
            owner: who asks (see :mod:`ragbus.gateway.sessions`).
        """
        session = self._sessions.get(session_id)
        if session is None:
            return []
        if not self.owns(session_id, owner):
            raise UnknownSession(session_id)
        self._sessions.move_to_end(session_id)
        return list(session.turns)

    def record(self, session_id: str, owner: str, turn: Turn) -> None:
        """Add ``turn`` to the session (created for ``owner`` if new), dropping its oldest
        turn beyond ``max_turns`` and the least recently used session beyond
        ``max_sessions``. Raises :class:`UnknownSession` when the session belongs to
        another owner."""
        if self.max_turns == 0:
            return
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session(owner, deque(maxlen=self.max_turns))
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        elif not self.owns(session_id, owner):
            raise UnknownSession(session_id)
        else:
            self._sessions.move_to_end(session_id)
        session.turns.append(turn)

    def discard(self, session_id: str) -> None:
        """Forget the session (its connection closed and nobody else may continue it)."""
        self._sessions.pop(session_id, None)
