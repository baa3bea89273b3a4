"""Every fenced example of README.md and docs/*.md runs as written, or says why not.

A block is an example unless it is an illustration (no language, or ``text``). Each
example is run by the runner of its language (:mod:`tests.docs.runners`) in a sandbox
of its own (:mod:`tests.docs.sandbox`), against the real services it names; an example
that cannot run here carries ``<!-- skip: next "reason" -->`` and is listed, with its
reason, in the report printed after the tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.docs.conftest import ExampleReport
from tests.docs.markdown import LANGUAGES, Block, all_blocks
from tests.docs.needs import Needs, needs_of
from tests.docs.node import node_modules
from tests.docs.runners import check_json, run_javascript, run_python, run_shell
from tests.docs.sandbox import Sandbox
from tests.docs.shell import split_commands

BLOCKS = list(all_blocks())


def _needs(block: Block) -> Needs:
    commands = split_commands(block.source) if block.language == "bash" else []
    return needs_of(block.language or "", block.source, commands)


def _marks(block: Block) -> list[pytest.MarkDecorator]:
    if block.language == "json":
        return []
    needs = _needs(block)
    marks = [pytest.mark.slow]  # each starts processes: a python, a node, services
    if needs.rabbitmq:
        marks.append(pytest.mark.rabbitmq)
    if needs.redis:
        marks.append(pytest.mark.redis)
    return marks


EXAMPLES = [
    pytest.param(block, id=block.name, marks=_marks(block))
    for block in BLOCKS
    if not block.is_illustration and block.excluded is None
]


@pytest.mark.parametrize("block", EXAMPLES)
async def test_example_runs_as_written(
    block: Block,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    example_report: ExampleReport,
) -> None:
    assert block.language is not None, (
        f"{block.name}: no runner for ```{block.fence_language} blocks (known: "
        f"{', '.join(sorted(LANGUAGES))}); write it as one of those, or exclude it with "
        '<!-- skip: next "why it cannot run" -->'
    )
    if block.language == "json":
        check_json(block)
        return
    needs = _needs(block)
    modules = None
    if needs.node:
        try:
            modules = node_modules()
        except FileNotFoundError as exc:
            unavailable(f"the JavaScript example needs Node.js: {exc}")
    sandbox = Sandbox(
        tmp_path,
        needs,
        amqp_url=request.getfixturevalue("amqp_url") if needs.rabbitmq else None,
        redis_url=request.getfixturevalue("redis_url") if needs.redis else None,
    )
    try:
        await sandbox.provide()
        if block.language == "bash":
            await run_shell(block, sandbox)
        elif block.language == "python":
            await run_python(block, sandbox)
        else:
            assert modules is not None
            await run_javascript(block, sandbox, modules)
        if needs.redis:
            assert await sandbox.cache_keys(), f"{block.name} uses Redis, yet wrote nothing there"
    finally:
        example_report.rewritten.update(sandbox.rewrites)
        await sandbox.close()


def test_every_block_is_an_example_an_illustration_or_excluded_with_a_reason() -> None:
    """Nothing in the docs escapes the run: each block has a runner, or is plainly an
    illustration, or names why it is excluded."""
    unknown = [
        block.name
        for block in BLOCKS
        if not block.is_illustration and block.language is None and block.excluded is None
    ]
    assert unknown == [], f"blocks in a language no runner knows: {unknown}"
    assert all(block.excluded is None or block.excluded.strip() for block in BLOCKS)
    assert len([block for block in BLOCKS if block.language is not None]) >= 20
