"""Dependencies are bounded, and the image installs exact pins that fit those bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONSTRAINTS = ROOT / "constraints.txt"


def requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = [*project["dependencies"], *PYPROJECT["build-system"]["requires"]]
    for extra in project.get("optional-dependencies", {}).values():
        listed += extra
    return [Requirement(text) for text in listed]


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;]*)", line.strip())
        assert match, f"constraints.txt line {number} is not an exact pin: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in found, f"constraints.txt pins {name} twice"
        found[name] = Version(match[2])
    return found


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_dependency_has_an_upper_bound(requirement: Requirement) -> None:
    assert any(spec.operator in {"<", "<=", "==", "~="} for spec in requirement.specifier), (
        f"{requirement} has no upper bound"
    )


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_dependency_is_pinned_within_its_range(requirement: Requirement) -> None:
    pinned = pins().get(canonicalize_name(requirement.name))
    assert pinned is not None, f"constraints.txt does not pin {requirement.name}"
    assert requirement.specifier.contains(pinned, prereleases=True), (
        f"constraints.txt pins {requirement.name}=={pinned}, outside {requirement.specifier}"
    )


def test_ragbus_itself_is_not_pinned() -> None:
    assert "ragbus" not in pins()


def test_the_image_installs_from_the_constraints() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY [^\n]*\bconstraints\.txt\b", dockerfile, re.M)
    install = next(line for line in dockerfile.splitlines() if "pip install" in line)
    assert "PIP_CONSTRAINT=/app/constraints.txt" in install or "-c constraints.txt" in install
