"""Chat sessions: the last turns of each conversation, in bounded memory."""

from __future__ import annotations

from collections import OrderedDict, deque

from ragbus.payloads.rag import Turn


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
        self._sessions: OrderedDict[str, deque[Turn]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def history(self, session_id: str) -> list[Turn]:
        """The session's kept turns, oldest first (none for an unknown session); marks
        the session as recently used."""
        turns = self._sessions.get(session_id)
        if turns is None:
            return []
        self._sessions.move_to_end(session_id)
        return list(turns)

    def record(self, session_id: str, turn: Turn) -> None:
        """Add ``turn`` to the session (created if new), dropping its oldest turn beyond
        ``max_turns`` and the least recently used session beyond ``max_sessions``."""
        if self.max_turns == 0:
            return
        turns = self._sessions.get(session_id)
        if turns is None:
            turns = self._sessions[session_id] = deque(maxlen=self.max_turns)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        turns.append(turn)
