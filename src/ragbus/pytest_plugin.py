"""The pytest plugin ragbus installs: the ``ragbus_harness`` fixture.

It is registered under the ``pytest11`` entry point, so any project that has ragbus and
pytest installed gets the fixture without a ``conftest.py`` entry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ragbus.pipeline import Pipeline
    from ragbus.testing import PipelineHarness


@pytest.fixture
def ragbus_harness(tmp_path: Path) -> Callable[..., PipelineHarness]:
    """Builds :class:`~ragbus.testing.PipelineHarness` objects whose files live in the
    test's ``tmp_path``: ``async with ragbus_harness(pipeline, **settings) as harness``."""

    # imported here, not at plugin load: every pytest run in an environment with ragbus
    # loads this plugin, and most never use the fixture
    from ragbus.testing import PipelineHarness

    def make(pipeline: Pipeline, **overrides: Any) -> PipelineHarness:
        return PipelineHarness(pipeline, directory=tmp_path, **overrides)

    return make
