"""Names of a package imported on first use (PEP 562), so that importing the package
for one light name does not load the heavy modules behind the others."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name of ``where`` from
    its module when it is first asked for.

    Parameters:
        package: the package's name, for the error of an unknown attribute.
        where: each public name and the module it lives in.
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
