"""The layers run one way and no module imports itself back.

Every ``import`` of the three libraries and the application layer is read with :mod:`ast`,
wherever it stands (module level, inside functions). Imports under ``if TYPE_CHECKING:``
count in package ``__init__`` files, whose lazy exports (:mod:`hooked_nar.lazy`) execute them,
and nowhere else: there they only name types for annotations and never run.

- the core (``hooked_nar`` outside ``hooked_nar.app`` and ``__main__``) imports neither ``sae``, ``patching``
  nor ``hooked_nar.app``;
- ``sae`` and ``patching`` never import ``hooked_nar.app``; ``sae`` never imports ``patching``;
- the graph of imports between modules has no cycle.

``from package import name`` counts as an import of the module that defines ``name`` when
the package's ``__init__`` re-exports it (eagerly or lazily), else of the package itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hooked_nar", "sae", "patching")


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


MODULES = _module_files()


def _is_package(module: str) -> bool:
    return MODULES.get(module, Path()).name == "__init__.py"


def _raw_imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(module, name or None, line)`` of every import in ``module``, relative ones resolved."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if _is_package(module) else module.rpartition(".")[0]
    typing_only = set()
    if not _is_package(module):
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
                typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(base, a.name, node.lineno) for a in node.names]
    return found


def _reexports(package: str) -> dict[str, str]:
    """``{name: module}`` re-exported by ``package``'s ``__init__`` from its own modules."""
    out = {}
    for base, name, _ in _raw_imports(package):
        if name is not None and base in MODULES and base != package:
            out[name] = base
    return out


def _targets(module: str) -> list[tuple[str, int]]:
    """The project modules ``module`` imports, each with the line of the import."""
    targets = []
    for base, name, line in _raw_imports(module):
        if base.split(".")[0] not in PACKAGES:
            continue
        if name is not None and f"{base}.{name}" in MODULES:
            target = f"{base}.{name}"
        elif name is not None and _is_package(base) and name in _reexports(base):
            target = _reexports(base)[name]
        else:
            target = base
            while target not in MODULES:  # `import a.b.c` of a name, not a module
                target = target.rpartition(".")[0]
        if target != module:
            targets.append((target, line))
    return targets


GRAPH = {m: _targets(m) for m in MODULES}


def _layer(module: str) -> str:
    if module in ("hooked_nar.app", "hooked_nar.__main__") or module.startswith("hooked_nar.app."):
        return "app"  # ``python -m hooked_nar`` is the command line
    return module.split(".")[0]


#: layer -> the layers it may import (besides itself)
ALLOWED = {
    "hooked_nar": set(),
    "sae": {"hooked_nar"},
    "patching": {"hooked_nar", "sae"},
    "app": {"hooked_nar", "sae", "patching"},
}


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_imports_run_one_way(layer):
    bad = [
        f"{m}:{line} imports {t}"
        for m, edges in GRAPH.items()
        if _layer(m) == layer
        for t, line in edges
        if _layer(t) != layer and _layer(t) not in ALLOWED[layer]
    ]
    assert not bad, "\n".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_the_walk_sees_imports_inside_functions():
    """The checks above are only as good as the walk: it must see the function-level imports
    the application layer makes (``run`` imports its heavy modules lazily)."""
    patch = dict(GRAPH["hooked_nar.app.commands.patch"])
    assert any(m.startswith("patching.causal.") for m in patch) and "hooked_nar.app.common" in patch
    assert "hooked_nar.app.commands.patch" in dict(GRAPH["hooked_nar.app.cli"])
