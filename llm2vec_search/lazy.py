"""Packages whose public names import on first use (PEP 562), so that importing a light module of a package
does not import its heavy ones (torch, FAISS)."""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A package's `__getattr__`: each name in `homes` is read from its module (relative to `package`)."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            return getattr(import_module(f"{package}.{homes[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
