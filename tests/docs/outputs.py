"""What the documentation says a command prints, checked against what it printed.

Two sources: the output a block shows under a command (a JSON comment, see
:mod:`tests.docs.shell`), and what the text says of each ragbus command and gateway
route wherever it is used (``ragbus ask`` prints the answer, its sources and each
stage's time; ``ragbus ask --json`` the ``answer_generated`` event; a stream from
``/v1/ask/stream`` is ``stage``, ``sources``, ``token``..., ``answer``, ``done`` with
tokens that add up to the answer; ...). Each check raises ``AssertionError`` saying
which statement the output broke.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tests.docs.schemas import validate_event
from tests.gateway.conftest import parse_sse

#: Values in a shown output that stand for "any value".
ANY_VALUE = frozenset({"…", "...", "<id>"})
#: Words that separate the simple commands of one command line.
_SEPARATORS = frozenset({"&&", "||", ";", "|"})


def matches_shown(shown: Any, actual: Any, where: str = "output") -> None:
    """``actual`` has the shape of the ``shown`` output: the same keys, equal values
    where the text gives one (``…`` stands for any)."""
    if isinstance(shown, str) and shown in ANY_VALUE:
        return
    if isinstance(shown, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        assert set(actual) == set(shown), (
            f"{where}: keys {sorted(actual)}, the text shows {sorted(shown)}"
        )
        for key, value in shown.items():
            matches_shown(value, actual[key], f"{where}.{key}")
        return
    if isinstance(shown, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(shown), f"{where}: {len(actual)} items, shown {len(shown)}"
        for index, (item, got) in enumerate(zip(shown, actual, strict=True)):
            matches_shown(item, got, f"{where}[{index}]")
        return
    assert actual == shown, f"{where}: {actual!r}, the text shows {shown!r}"


def check_shown_output(shown: str, stdout: str) -> None:
    """The command printed the JSON the text shows under it."""
    expected = json.loads(shown)
    actual = _json(stdout, "the output")
    matches_shown(expected, actual)


def simple_commands(words: list[str]) -> list[tuple[list[str], bool]]:
    """The simple commands of a command line whose output reaches the terminal, each
    with whether it is the only one (so its output is the whole output): in ``a | b``
    only ``b``'s does."""
    commands: list[list[str]] = [[]]
    piped: list[bool] = [False]
    for word in words:
        if word in _SEPARATORS:
            piped[-1] = word == "|"
            commands.append([])
            piped.append(False)
        else:
            commands[-1].append(word)
    visible = [command for command, to_pipe in zip(commands, piped, strict=True) if not to_pipe]
    visible = [command for command in visible if command]
    return [(command, len(visible) == 1) for command in visible]


def check_program_output(words: list[str], stdout: str) -> None:
    """What the docs say each simple command of ``words`` prints, found in ``stdout``."""
    for command, sole in simple_commands(words):
        program = _program(command)
        check = _CHECKS.get(tuple(program[:3])) or _CHECKS.get(tuple(program[:2]))
        check = check or _CHECKS.get(tuple(program[:1]))
        if check is not None:
            check(program, stdout, sole)


def _program(words: list[str]) -> list[str]:
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]
    return words


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise AssertionError(f"{what} is not JSON: {text[:500]!r}") from None


def _json_lines(text: str, what: str) -> list[Any]:
    return [_json(line, what) for line in text.splitlines() if line.strip()]


def _options(program: list[str]) -> set[str]:
    return {word.split("=", 1)[0] for word in program if word.startswith("-")}


def _arguments(program: list[str], after: int) -> list[str]:
    """The words after the first ``after`` that are neither options nor their values
    (good enough for the commands checked here, whose options in the docs are flags or
    take one value)."""
    found, skip = [], False
    for word in program[after:]:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = "=" not in word and word not in _FLAGS
        else:
            found.append(word)
    return found


_FLAGS = frozenset({"--json", "--dry-run", "--yes", "-y", "--verbose", "-v", "-N", "-s"})


def _ask(program: list[str], stdout: str, sole: bool) -> None:
    if "--file" in program or "-f" in program:
        rows = _json_lines(stdout, "a line `ragbus ask --file` printed") if sole else []
        assert [row["index"] for row in rows] == list(range(len(rows))), "in the file's order"
        for row in rows:
            assert "answer" in row or "error" in row, f"each line has an answer or error: {row}"
        return
    if "--json" in program:
        if sole:
            event = _json(stdout, "`ragbus ask --json`'s output")
            validate_event(event)
            assert event["type"] == "answer_generated", "--json prints the answer_generated event"
            assert event["payload"]["answer"].strip(), "the answer is empty"
            assert event["payload"]["sources"], "an answer from no sources: ask what the docs hold"
        return
    # "printing the answer, its sources and each stage's time"
    for part in ("Sources:", "Model:", "Stages:"):
        assert part in stdout, f"`ragbus ask` prints the answer with {part!r}: {stdout[-800:]}"
    assert stdout.split("Sources:")[0].strip(), "`ragbus ask` printed no answer"
    assert "Sources: none found" not in stdout, "an answer from no sources: ask what the docs hold"


def _schema(program: list[str], stdout: str, sole: bool) -> None:
    if not sole:
        return
    schemas = _json(stdout, "`ragbus schema`'s output")
    assert {"envelope", "payloads"} <= set(schemas), "prints the envelope's and payloads' schemas"
    wanted = _arguments(program, 2)
    if wanted:
        assert list(schemas["payloads"]) == wanted, f"`ragbus schema {wanted[0]}` prints one"


def _index(program: list[str], stdout: str, sole: bool) -> None:
    match = re.search(r"indexed (\d+) passages", stdout)
    assert match and int(match[1]) > 0, f"`ragbus index` indexed nothing: {stdout!r}"


def _optimize(program: list[str], stdout: str, sole: bool) -> None:
    scores = re.search(r"score before: (\d\.\d+)[\s\S]*score after: +(\d\.\d+)", stdout)
    assert scores, f"`ragbus optimize` prints the score before and after: {stdout!r}"
    assert re.search(r"^wrote ", stdout, re.M), f"`ragbus optimize` writes the program: {stdout!r}"


def _publish(program: list[str], stdout: str, sole: bool) -> None:
    if not sole:
        return
    printed = _json_lines(stdout, "a line `ragbus publish` printed")
    assert printed, "`ragbus publish` prints each event's id"
    for line in printed:
        assert set(line) == {"id", "type"}, f"each line is the event's id and type: {line}"


def _dlq(program: list[str], stdout: str, sole: bool) -> None:
    verb = program[2] if len(program) > 2 else ""
    options = _options(program)
    if verb == "list":
        if "--json" in options and sole:
            assert all("id" in letter for letter in _json_lines(stdout, "a dead letter"))
        elif "--json" not in options:
            assert re.search(r"\d+ dead letters?|no dead letters", stdout), stdout
    elif verb == "show" and sole:
        letter = _json(stdout, "`ragbus dlq show`'s output")
        prefix = _arguments(program, 3)[0]
        assert str(letter["id"]).startswith(prefix), f"shows the dead letter {prefix}"
        assert "envelope" in letter and "reason" in letter, "the whole dead letter"
    elif verb == "replay":
        verb_done = "would replay" if "--dry-run" in options else "replayed"
        match = re.search(rf"{verb_done} (\d+), skipped (\d+), failed (\d+)", stdout)
        assert match, f"`ragbus dlq replay` says what it did: {stdout!r}"
        assert match[3] == "0", f"replays failed: {stdout!r}"
    elif verb == "purge":
        if not ({"--yes", "-y"} & options):
            assert "[y/N]" in stdout, f"`ragbus dlq purge` asks first: {stdout!r}"
        assert re.search(r"deleted \d+ dead letters|no dead letters match", stdout), stdout
    elif verb == "export":
        assert re.search(r"exported \d+ dead letters", stdout), stdout
    elif verb == "import":
        assert re.search(r"imported \d+ dead letters", stdout), stdout


def _bench(program: list[str], stdout: str, sole: bool) -> None:
    if "--json" in program and sole:
        result = _json(stdout, "`ragbus bench --json`'s output")
        assert result["answered"] == result["requests"] and not result["errors"], stdout
    elif "--json" not in program:
        assert "requests/s" in stdout and "p99" in stdout, (
            f"`ragbus bench` reports requests/s, p99: {stdout}"
        )


def _curl(program: list[str], stdout: str, sole: bool) -> None:
    urls = [word for word in program[1:] if "localhost" in word or "127.0.0.1" in word]
    if not urls or not sole:
        return
    path = urlsplit(urls[0] if "://" in urls[0] else f"http://{urls[0]}").path
    if path == "/v1/ask":
        answer = _json(stdout, "the answer of POST /v1/ask")
        assert answer.get("answer", "").strip(), f"POST /v1/ask answers: {answer}"
        assert answer.get("sources"), f"with its sources: {answer}"
    elif path == "/v1/ask/stream":
        check_event_stream(stdout)
    elif path == "/v1/events":
        event = _json(stdout, "the reply of POST /v1/events")
        assert {"id", "type", "correlation_id"} <= set(event), f"202 with the event's id: {event}"


def check_event_stream(text: str) -> None:
    """A ``/v1/ask/stream`` body as docs/gateway.md shows it: ``stage`` events,
    ``sources``, ``token``..., ``answer``, ``done``; the tokens add up to the answer."""
    events = parse_sse(text)
    names = [name for name, _ in events]
    assert names and names[0] == "stage", f"a stream starts with a stage event: {names}"
    assert names[-2:] == ["answer", "done"], f"and ends with answer, done: {names}"
    assert "sources" in names and "token" in names, f"with sources and tokens: {names}"
    tokens = "".join(data["text"] for name, data in events if name == "token")
    answer = next(data for name, data in events if name == "answer")
    assert tokens == answer["answer"], "the token texts, in order, concatenate to the answer"


_CHECKS: dict[tuple[str, ...], Callable[[list[str], str, bool], None]] = {
    ("ragbus", "ask"): _ask,
    ("scripts/ask",): _ask,
    ("ragbus", "schema"): _schema,
    ("ragbus", "index"): _index,
    ("ragbus", "optimize"): _optimize,
    ("ragbus", "publish"): _publish,
    ("ragbus", "dlq"): _dlq,
    ("ragbus", "bench"): _bench,
    ("curl",): _curl,
}
