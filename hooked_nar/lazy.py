"""Lazy package exports: ``from sae import train_sae`` imports ``sae.training`` (and so
TransformerLens / SAELens) only when the name is first used, so that ``hooked-nar COMMAND
--help`` and light imports stay fast.

A package lists its exports once, as ordinary imports under ``if TYPE_CHECKING:`` (what type
checkers and IDEs read), and hands its ``__file__`` to :func:`lazy_exports`, which reads those
imports with :mod:`ast` (as ``lazy_loader`` reads stub files) and serves them on first access.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path


def _type_checking_imports(path: str) -> dict[str, str]:
    """``{name: module}`` of the ``from module import name`` lines under ``if TYPE_CHECKING:``."""
    where = {}
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    where.update({a.asname or a.name: stmt.module for a in stmt.names})
    return where


def lazy_exports(
    package: str, init_file: str
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose ``__init__.py`` is
    ``init_file``: every name imported under its ``if TYPE_CHECKING:`` block, imported from
    its module on first access and then kept in the package's namespace; submodules are
    attributes too (``patching.metrics``)."""
    where = _type_checking_imports(init_file)
    if not where:
        raise ValueError(f"{init_file} has no imports under `if TYPE_CHECKING:`")

    def __getattr__(name: str) -> object:
        if name in where:
            value = getattr(importlib.import_module(where[name]), name)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")  # a submodule
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(sys.modules[package])))

    return sorted(where), __getattr__, __dir__
