"""``sae`` and ``patching`` export their names lazily (hooked_nar/lazy.py): importing them, or
asking a subcommand for ``--help``, must not load TransformerLens; every export must resolve."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PROBE = (
    "import sys, {mods}; "
    "heavy = sorted(m for m in ('transformer_lens', 'sae_lens', 'torch_geometric') "
    "if m in sys.modules); print(heavy)"
)


def _heavy_after(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_importing_the_packages_loads_no_heavy_library():
    assert _heavy_after(PROBE.format(mods="sae, patching")) == "[]"


@pytest.mark.parametrize("command", ["study", "train", "evaluate", "collect", "train-sae", "patch"])
def test_subcommand_help_loads_no_heavy_library(command):
    code = (
        "import sys\nfrom hooked_nar.app.cli import main\ntry:\n"
        f"    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        + PROBE.format(mods="os")
    )
    assert _heavy_after(code) == "[]"


#: core primitives a package re-exports beside what it builds on them
CORE_REEXPORTS = {("bootstrap_ci", "hooked_nar.stats")}


@pytest.mark.parametrize("package", ["sae", "patching"])
def test_every_export_resolves_to_its_module_object(package):
    pkg = importlib.import_module(package)
    assert pkg.__all__ and set(pkg.__all__) <= set(dir(pkg))
    for name in pkg.__all__:
        value = getattr(pkg, name)
        module = getattr(value, "__module__", None)
        if module is not None:  # functions and classes come from the package's submodules
            assert module.startswith(package + ".") or (name, module) in CORE_REEXPORTS
    assert pkg.metrics if package == "patching" else pkg.feature_scores  # submodules too
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pkg.nope
