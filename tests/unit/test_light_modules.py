"""Names moved to light modules (no pydantic) are the same objects where they were, and
the packages that load their heavy parts on first use still offer every name."""

from __future__ import annotations

import re
from types import ModuleType

import pytest

import ragbus.bus
import ragbus.bus.base
import ragbus.config
import ragbus.config.settings
import ragbus.errors
import ragbus.events
from ragbus.bus.reasons import DeadLetterReason
from ragbus.config.kinds import BusKind, RetrieverKind


def test_moved_names_are_the_same_objects_where_they_were() -> None:
    assert ragbus.config.BusKind is ragbus.config.settings.BusKind is BusKind
    assert ragbus.config.RetrieverKind is ragbus.config.settings.RetrieverKind is RetrieverKind
    assert ragbus.bus.DeadLetterReason is ragbus.bus.base.DeadLetterReason is DeadLetterReason
    assert ragbus.events.InvalidEvent is ragbus.errors.InvalidEvent


@pytest.mark.parametrize("package", [ragbus, ragbus.bus, ragbus.config], ids=lambda p: p.__name__)
def test_every_public_name_of_a_lazy_package_resolves(package: ModuleType) -> None:
    for name in vars(package)["__all__"]:
        assert getattr(package, name) is not None, name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=re.escape("'ragbus.bus' has no attribute 'Nothing'")):
        ragbus.bus.Nothing  # noqa: B018
