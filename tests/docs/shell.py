"""A shell example read as a reader types it: one command at a time.

A block is split into commands (a line, or several joined by a trailing backslash or an
open quote). ``ragbus worker`` and ``ragbus serve`` lines, and lines ending in ``&``,
are services: they keep running, as in a terminal of their own, while the lines after
them run. A comment line right under a command that shows a JSON object or array
(``# {"id": "…", "type": "query_received"}``) is that command's output, as the text
states it: the test compares the real output with it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S*\s+")
#: ragbus commands that run until they are stopped.
SERVICES = ("worker", "serve")


@dataclass(frozen=True)
class Command:
    """One command of a shell example.

    Parameters:
        text: the command as written (a trailing ``&`` removed from a service).
        service: ``worker`` or ``serve`` for a long-running ragbus service, else None.
        expected: the output shown in a comment under it (JSON), or None.
        line: its first line within the block (0-based).
    """

    text: str
    service: str | None = None
    expected: str | None = None
    line: int = 0

    @property
    def assignments(self) -> str:
        """The ``NAME=value`` words it starts with, as written (with their spaces)."""
        match = re.match(rf"(?:{_ASSIGNMENT.pattern})*", self.text)
        return match[0] if match else ""

    @property
    def words(self) -> list[str]:
        """Its words, comments dropped, quotes resolved."""
        return shlex.split(self.text, comments=True)

    @property
    def program(self) -> list[str]:
        """Its words after the leading ``NAME=value`` assignments."""
        words = self.words
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]
        return words


def _complete(text: str) -> bool:
    """Whether ``text`` is a whole command (no continuation, no open quote)."""
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def _service(words: list[str]) -> str | None:
    if len(words) >= 2 and words[0] == "ragbus" and words[1] in SERVICES:
        return words[1]
    return None


def split_commands(source: str) -> list[Command]:
    """The commands of a shell block, in order (see the module docstring).

    Raises ``ValueError`` for a background command (``&``) that is not a ragbus service:
    nothing would know when it is ready or how to stop it.
    """
    commands: list[Command] = []
    pending: list[str] = []
    start = 0
    after_command = False  # the previous line ended a command (no blank line since)
    for number, line in enumerate(source.splitlines()):
        stripped = line.strip()
        if not pending:
            if not stripped:
                after_command = False
                continue
            if stripped.startswith("#"):
                shown = stripped[1:].strip()
                if after_command and commands and shown[:1] in ("{", "["):
                    commands[-1] = Command(
                        commands[-1].text, commands[-1].service, shown, commands[-1].line
                    )
                continue
            start = number
        pending.append(line)
        text = "\n".join(pending)
        if not _complete(text):
            continue
        pending = []
        commands.append(_command(text, start))
        after_command = True
    if pending:
        raise ValueError(f"unfinished command at the end of the block: {pending[0]!r}")
    return commands


def _command(text: str, line: int) -> Command:
    code = shlex.split(text, comments=True)
    background = bool(code) and code[-1] == "&"
    probe = Command(text)
    service = _service(probe.program)
    if background:
        if service is None:
            raise ValueError(f"a background command that is not a ragbus service: {text!r}")
        text = re.sub(r"\s*&(\s*#.*)?$", r"\1", text.rstrip())
    return Command(text, service, None, line)
