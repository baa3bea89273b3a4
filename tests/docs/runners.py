"""Running one example of each language as a reader would, in its :class:`Sandbox`.

- ``bash``: each command in order, as typed in a terminal (the environment and folder a
  command leaves are the next one's); services (``ragbus worker``, ``ragbus serve``)
  start in the background and must be ready before the next line, and exit 0 on SIGTERM
  at the end. A command that asks a question is answered ``y``. The quick start's
  ``scripts/...`` run in the clone itself (the repository root).
- ``python``: the block saved as ``example.py`` and run with ``python``.
- ``javascript``: the block saved as ``example.mjs`` (it imports) or ``example.cjs``
  (it requires) and run with ``node``, the npm packages of :mod:`tests.docs.node` beside.
- ``json``: an event, validated against the schemas ``ragbus schema`` prints.

Every command must exit 0 without a traceback, and print what the text says it prints
(:mod:`tests.docs.outputs`): the output shown under it if the block shows one, else what
the docs say of that command.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.docs.markdown import ROOT, Block
from tests.docs.outputs import check_program_output, check_shown_output
from tests.docs.sandbox import Sandbox
from tests.docs.schemas import gateway_bodies, validate_event
from tests.docs.shell import split_commands

#: Longest a command of an example may take.
COMMAND_TIMEOUT_S = 300.0
#: What a command that asks for confirmation reads: the reader's "y".
ANSWER = "y\n"


@dataclass(frozen=True)
class Completed:
    """A finished command: what ran, its exit code and output."""

    command: str
    code: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"$ {self.command}\nexit code {self.code}\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


async def run_process(
    argv: list[str], *, env: dict[str, str], cwd: Path, shown: str, timeout: float
) -> Completed:
    """Run ``argv`` to its end (killed after ``timeout`` seconds: a failure)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate(ANSWER.encode())
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"still running after {timeout:g}s: {shown}") from None
    assert process.returncode is not None
    return Completed(shown, process.returncode, out.decode(errors="replace"), err.decode())


def _succeeded(result: Completed, sandbox: Sandbox) -> None:
    context = f"{result.describe()}\n{sandbox.describe()}"
    assert result.code == 0, f"the command failed\n{context}"
    assert "Traceback (most recent call last)" not in result.stderr, f"a traceback\n{context}"


async def run_shell(block: Block, sandbox: Sandbox) -> None:
    """Run a shell example command by command (see the module docstring)."""
    env, cwd = dict(sandbox.env), sandbox.workdir
    state = sandbox.logs / f"state-{uuid.uuid4().hex[:8]}"
    for command in split_commands(block.source):
        if command.service is not None:
            await sandbox.start_service(command)
            continue
        text = sandbox.rewrite(command.text)
        script = (
            f"{text}\n__status=$?\nenv -0 > '{state}.env'\npwd > '{state}.pwd'\nexit $__status\n"
        )
        program = command.program
        here = ROOT if program and program[0].startswith("scripts/") else cwd
        result = await run_process(
            ["bash", "-c", script], env=env, cwd=here, shown=text, timeout=COMMAND_TIMEOUT_S
        )
        _succeeded(result, sandbox)
        if here is cwd:
            env, cwd = _state_after(state, env, cwd)
        try:
            if command.expected is not None:  # the text's own statement of the output
                check_shown_output(command.expected, result.stdout)
            else:
                check_program_output(shlex.split(text, comments=True), result.stdout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{result.describe()}") from None
    problems = await sandbox.stop_services()
    assert not problems, "\n".join([*problems, sandbox.describe()])


def _state_after(state: Path, env: dict[str, str], cwd: Path) -> tuple[dict[str, str], Path]:
    """The environment and folder a command left (as they were if it exited early)."""
    try:
        raw = Path(f"{state}.env").read_bytes()
        folder = Path(Path(f"{state}.pwd").read_text().strip())
    except FileNotFoundError:
        return env, cwd
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    left = {key.decode(): value.decode(errors="replace") for key, value in pairs}
    left.pop("_", None)
    return left, folder


def _printed_something(result: Completed, block: Block) -> None:
    """An example that prints (an answer) printed something real."""
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"{block.name} printed nothing\n{result.describe()}"
    assert not {"None", "undefined", "null"} & set(lines), f"printed a null\n{result.describe()}"


async def _run_file(block: Block, sandbox: Sandbox, name: str, program: str, prints: str) -> None:
    """Save the block (rewritten) as ``name`` in the sandbox, run ``program name``, and
    check that it printed something when its source calls the ``prints`` function."""
    path = sandbox.workdir / name
    path.write_text(sandbox.rewrite(block.source))
    result = await run_process(
        [program, name],
        env=sandbox.env,
        cwd=sandbox.workdir,
        shown=f"{program} {name}",
        timeout=COMMAND_TIMEOUT_S,
    )
    _succeeded(result, sandbox)
    if re.search(rf"\b{re.escape(prints)}\(", block.source):
        _printed_something(result, block)


async def run_python(block: Block, sandbox: Sandbox) -> None:
    """Save the block as ``example.py`` and run it with ``python``."""
    await _run_file(block, sandbox, "example.py", "python", "print")


async def run_javascript(block: Block, sandbox: Sandbox, modules: Path) -> None:
    """Save the block as a module of its kind and run it with ``node``."""
    is_module = re.search(r"^\s*(import|export)\b", block.source, re.MULTILINE)
    os.symlink(modules, sandbox.workdir / "node_modules")
    name = "example.mjs" if is_module else "example.cjs"
    await _run_file(block, sandbox, name, "node", "console.log")


def check_json(block: Block) -> None:
    """A JSON block is valid JSON and follows a schema ragbus publishes: an event
    (``type`` and ``payload``) the ``ragbus schema`` one, anything else one of the
    gateway's OpenAPI bodies."""
    try:
        value = json.loads(block.source)
    except ValueError as exc:
        raise AssertionError(f"{block.name} is not valid JSON: {exc}") from None
    if isinstance(value, dict) and {"type", "payload"} <= set(value):
        validate_event(value)
        return
    assert gateway_bodies(value), (
        f"{block.name}: this JSON follows no schema ragbus publishes (`ragbus schema` for "
        "events, /openapi.json for the gateway's bodies)"
    )
