"""The documentation's examples as tests, and the report of what ran after the session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field

import pytest

from tests.docs.markdown import Block, all_blocks, documents


@dataclass
class ExampleReport:
    """The outcome of each example test of the session, and the names it ran with."""

    outcomes: dict[str, tuple[Block, str]] = field(default_factory=dict)
    rewritten: set[str] = field(default_factory=set)


REPORT = pytest.StashKey[ExampleReport]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REPORT] = ExampleReport()


@pytest.fixture
def example_report(request: pytest.FixtureRequest) -> ExampleReport:
    """Where an example test notes the names it changed (see ``Sandbox.rewrites``)."""
    return request.config.stash[REPORT]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Note each example's outcome: its call's, or its setup's when that did not pass."""
    report = yield
    callspec = getattr(item, "callspec", None)
    block = callspec.params.get("block") if callspec is not None else None
    decided = report.when == "call" or (report.when == "setup" and not report.passed)
    if isinstance(block, Block) and decided:
        outcome = "skipped" if report.skipped else report.outcome
        item.config.stash[REPORT].outcomes[block.name] = (block, outcome)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many examples ran, per language, and which are excluded and why."""
    report = terminalreporter.config.stash.get(REPORT, None)
    if report is None or not report.outcomes:
        return
    for line in summary_lines(report):
        terminalreporter.write_line(line)


def summary_lines(report: ExampleReport) -> list[str]:
    """The report's lines (see :func:`pytest_terminal_summary`)."""
    blocks = list(all_blocks())
    examples = [block for block in blocks if not block.is_illustration]
    excluded = [block for block in examples if block.excluded is not None]
    ran = [(block, outcome) for block, outcome in report.outcomes.values() if outcome != "skipped"]
    by_language = Counter(block.fence_language for block, _ in ran)
    outcomes = Counter(outcome for _, outcome in ran)
    lines = [
        "",
        "documentation examples (README.md, docs/*.md)",
        f"  {len(blocks)} fenced blocks in {len(documents())} documents: {len(examples)} "
        f"examples, {len(blocks) - len(examples)} illustrations (diagrams, layouts, shapes of "
        "output: not run)",
        f"  ran {len(ran)}: "
        + ", ".join(f"{language} {count}" for language, count in by_language.most_common())
        + " — "
        + ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())),
    ]
    not_run = len(examples) - len(excluded) - len(ran)
    if not_run:
        lines.append(f"  not run in this session (deselected or skipped): {not_run}")
    lines.append(f"  excluded {len(excluded)}:")
    lines += [f"    {block.name} ({block.fence_language}): {block.excluded}" for block in excluded]
    if report.rewritten:
        names = ", ".join(sorted(report.rewritten))
        lines.append(f"  run with this machine's own ports and names instead of: {names}")
    return lines
