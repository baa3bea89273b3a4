"""The example runner's own parts, without running anything: a harness that let a wrong
example through would make the documentation tests worthless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.docs.conftest import ExampleReport, summary_lines
from tests.docs.markdown import Block, blocks
from tests.docs.needs import GATEWAY_PORT, Needs, needs_of
from tests.docs.outputs import (
    check_event_stream,
    check_program_output,
    check_shown_output,
    simple_commands,
)
from tests.docs.runners import check_json
from tests.docs.sandbox import Sandbox
from tests.docs.shell import split_commands

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_blocks_are_found_with_their_language_line_and_exclusion(tmp_path: Path) -> None:
    page = write(
        tmp_path,
        "# Page\n\n```bash\nragbus ask 'q'\n```\n\n"
        '<!-- skip: next "needs Docker" -->\n```bash\ndocker compose up\n```\n\n'
        '<!-- skip: start "benchmarks" -->\n```bash\nragbus bench\n```\n\n'
        "~~~python\nprint(1)\n~~~\n<!-- skip: end -->\n\n"
        "- in a list:\n\n  ```json\n  {}\n  ```\n\n```\na diagram\n```\n",
    )
    found = blocks(page)
    assert [(block.line, block.language, block.excluded) for block in found] == [
        (3, "bash", None),
        (8, "bash", "needs Docker"),
        (13, "bash", "benchmarks"),
        (17, "python", "benchmarks"),
        (24, "json", None),
        (28, None, None),
    ]
    assert found[4].source == "{}\n"
    assert found[5].is_illustration


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- skip: next -->\n```bash\nls\n```\n", "needs a reason in quotes"),
        ("<!-- skip: next because -->\n```bash\nls\n```\n", "needs a reason in quotes"),
        ('<!-- skip: next "why" -->\n', "no block after it"),
        ('<!-- skip: start "why" -->\n```bash\nls\n```\n', "without 'skip: end'"),
        ("<!-- skip: end -->\n", "without 'skip: start'"),
    ],
)
def test_an_exclusion_must_say_why_and_apply_to_something(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        blocks(write(tmp_path, text))


def test_shell_commands_services_and_shown_output() -> None:
    commands = split_commands(
        "# a comment\n"
        "RAGBUS_STREAM_TOKENS=true ragbus worker --bus rabbitmq --stages generate &\n"
        'curl -X POST localhost:8000/v1/events \\\n  -d \'{"question": "q"}\'\n'
        '# {"id": "…", "type": "query_received"}\n'
        "\n"
        "# not an output: a blank line separates it\n"
        "echo 'a quote\nover two lines'   # trailing comment\n"
        "ragbus serve                      # runs until stopped\n"
    )
    assert [(command.service, command.line) for command in commands] == [
        ("worker", 1),
        (None, 2),
        (None, 7),
        ("serve", 9),
    ]
    worker, curl, echo, _ = commands
    assert worker.text.endswith("--stages generate")
    assert worker.assignments == "RAGBUS_STREAM_TOKENS=true "
    assert worker.program[:2] == ["ragbus", "worker"]
    assert curl.expected == '{"id": "…", "type": "query_received"}'
    assert echo.expected is None
    assert echo.words == ["echo", "a quote\nover two lines"]


def test_a_background_command_must_be_a_ragbus_service() -> None:
    with pytest.raises(ValueError, match="not a ragbus service"):
        split_commands("python -m http.server &\n")


def test_what_an_example_needs_is_read_from_its_text() -> None:
    ask = split_commands('ragbus ask --bus rabbitmq "q"\n')
    assert needs_of("bash", 'ragbus ask --bus rabbitmq "q"\n', ask) == Needs(
        rabbitmq=True, workers=True
    )
    own = "ragbus worker --bus rabbitmq &\nragbus ask --bus rabbitmq q\n"
    assert not needs_of("bash", own, split_commands(own)).workers
    curl = f"curl localhost:{GATEWAY_PORT}/v1/ask\n"
    assert needs_of("bash", curl, split_commands(curl)) == Needs(gateway=True)
    assert needs_of("bash", "ragbus dlq list\n", []).dead_letters
    assert needs_of("javascript", 'import amqp from "amqplib";', []).node


def test_only_names_that_collide_on_a_shared_machine_are_rewritten(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, Needs(rabbitmq=True), amqp_url=AMQP_URL)
    assert sandbox.namespace is not None
    gateway = sandbox.ports[GATEWAY_PORT]
    text = sandbox.rewrite(
        'connect("amqp://guest:guest@localhost:5672/"); publish("ragbus.events", ...)\n'
        "curl localhost:8000/v1/ask; ragbus worker --port 9101; open http://127.0.0.1:8000/\n"
        "ragbus.events.extra ragbus.eventsx ollama at localhost:11434 --lm-latency-ms 200\n"
    )
    worker = sandbox.ports[9101]
    assert text == (
        f'connect("{AMQP_URL}"); publish("{sandbox.namespace.exchange}", ...)\n'
        f"curl localhost:{gateway}/v1/ask; ragbus worker --port {worker}; "
        f"open http://127.0.0.1:{gateway}/\n"
        "ragbus.events.extra ragbus.eventsx ollama at localhost:11434 --lm-latency-ms 200\n"
    )
    assert sandbox.env["RAGBUS_GATEWAY_PORT"] == str(gateway)
    assert sandbox.env["RAGBUS_EXCHANGE"] == sandbox.namespace.exchange
    assert "ragbus.events" in sandbox.rewrites and "localhost:8000" in sandbox.rewrites


def test_a_worker_without_a_port_runs_as_written_with_exec(tmp_path: Path) -> None:
    """It takes 9100 or, when that is taken, a free port it logs: nothing to rewrite."""
    sandbox = Sandbox(tmp_path, Needs())
    (command,) = split_commands("RAGBUS_STREAM_TOKENS=true ragbus worker --bus rabbitmq &\n")
    started = sandbox.service_command(command)
    assert started == "RAGBUS_STREAM_TOKENS=true exec ragbus worker --bus rabbitmq"


def test_the_shown_output_must_match_keys_and_given_values() -> None:
    shown = '{"id": "…", "type": "query_received"}'
    check_shown_output(shown, '{"id": "0b6f", "type": "query_received"}\n')
    with pytest.raises(AssertionError, match="keys"):
        check_shown_output(shown, '{"id": "0b6f", "type": "query_received", "x": 1}')
    with pytest.raises(AssertionError, match="the text shows 'query_received'"):
        check_shown_output(shown, '{"id": "0b6f", "type": "answer_generated"}')
    with pytest.raises(AssertionError, match="not JSON"):
        check_shown_output(shown, "error: no such thing")


def test_what_a_command_prints_is_checked_where_the_docs_say_it() -> None:
    check_program_output(["ragbus", "index", "notes"], "indexed 3 passages from notes into x\n")
    with pytest.raises(AssertionError, match="indexed nothing"):
        check_program_output(["ragbus", "index", "notes"], "indexed 0 passages\n")
    with pytest.raises(AssertionError, match="no sources"):
        check_program_output(
            ["ragbus", "ask", "?"], "Nothing.\n\nSources: none found\n\nModel: m\nStages: s\n"
        )
    with pytest.raises(AssertionError, match="asks first"):
        check_program_output(["ragbus", "dlq", "purge"], "deleted 1 dead letters\n")
    check_program_output(["ragbus", "dlq", "purge", "--yes"], "deleted 1 dead letters\n")
    with pytest.raises(AssertionError, match="replays failed"):
        check_program_output(["ragbus", "dlq", "replay"], "replayed 1, skipped 0, failed 1 of 2")
    with pytest.raises(AssertionError, match="POST /v1/ask answers"):
        check_program_output(
            ["curl", "localhost:1/v1/ask"], '{"error": "invalid_request", "message": "m"}'
        )


def test_only_the_last_command_of_a_pipe_shows_its_output() -> None:
    assert simple_commands(["echo", "x", "|", "ragbus", "publish"]) == [
        (["ragbus", "publish"], True)
    ]
    assert simple_commands(["a", "&&", "b"]) == [(["a"], False), (["b"], False)]


def sse(*events: tuple[str, object]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def test_an_event_stream_must_be_as_the_gateway_docs_show_it() -> None:
    good = [
        ("stage", {"stage": "retrieve", "status": "started"}),
        ("sources", {"sources": []}),
        ("token", {"sequence": 0, "text": "An "}),
        ("token", {"sequence": 1, "text": "answer."}),
        ("answer", {"answer": "An answer."}),
        ("done", {}),
    ]
    check_event_stream(sse(*good))
    with pytest.raises(AssertionError, match="concatenate to the answer"):
        check_event_stream(sse(*good[:3], *good[4:]))
    with pytest.raises(AssertionError, match="ends with answer, done"):
        check_event_stream(sse(*good[:-1]))


def json_block(value: object) -> Block:
    return Block(Path("page.md"), 1, "json", json.dumps(value))


def test_json_events_are_checked_against_the_published_schemas() -> None:
    check_json(json_block({"type": "query_received", "payload": {"question": "q"}}))
    check_json(json_block({"error": "unauthorized", "message": "a bearer token is needed"}))
    broken = [
        ({"type": "query_received", "payload": {"question": "q", "k": 0}}, "payload"),
        ({"type": "query_received", "payload": {"question": "q", "topk": 4}}, "payload"),
        ({"type": "query_received", "payload": {"question": "q"}, "id": "x"}, "id"),
        ({"type": "questions", "payload": {}}, "unknown event type"),
        ({"error": "timeout"}, "follows no schema"),
        ({"error": "timeout", "message": "m", "status": 504}, "follows no schema"),
    ]
    for value, message in broken:
        with pytest.raises(AssertionError, match=message):
            check_json(json_block(value))
    with pytest.raises(AssertionError, match="not valid JSON"):
        check_json(Block(Path("page.md"), 1, "json", '{"type": "query_received",}'))


def test_the_report_counts_runs_per_language_and_lists_exclusions() -> None:
    report = ExampleReport()
    ran = Block(Path("README.md"), 3, "bash", "ragbus ask q\n")
    report.outcomes[ran.name] = (ran, "passed")
    report.rewritten.add("localhost:8000")
    lines = "\n".join(summary_lines(report))
    assert "ran 1: bash 1 — 1 passed" in lines
    assert "README.md:24 (bash): runs the whole test suite" in lines
    assert "instead of: localhost:8000" in lines
