"""Causal tests of concept units on a shipped HookedNAR checkpoint, on CPU in minutes.

    python examples/feature_ablation.py --algorithm bfs
    python examples/feature_ablation.py --algorithm dijkstra --sae runs/dijkstra/sae

The same as ``hooked-nar patch`` (see ``--help``), writing to ``runs/feature_ablation/<algorithm>``.
For every boolean concept of the algorithm (``hooked_nar.concept_labels.CONCEPTS``): its unit (the
SAE feature group; ``--unit feature`` / ``direction`` for the best feature or the
difference-of-means direction) is ablated where the concept holds and steered at sites where
the algorithm makes it true next, measured on the concept's own target beside a null of
uninformative units and a positive control (:func:`patching.causal.causal_concept_tests`).
Verdicts follow the one rule of :mod:`patching.causal.rule`. Writes ``report.md``,
``results.json`` and PNGs (effects beside the null; a dose-response curve per concept).

``--sae PATH`` opens a saved SAELens SAE (e.g. the ``sae/`` folder of ``hooked-nar study``);
without it the algorithm's recipe SAE (``hooked_nar.app.sae_study.RECIPES``) is trained first.
"""

import sys
from pathlib import Path

# run from a checkout without (re)installing: the repository root comes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hooked_nar.app.cli import main  # noqa: E402


def _with_default_output(argv: list[str]) -> list[str]:
    """``argv`` with ``--output runs/feature_ablation/ALGORITHM`` unless it names one."""
    if any(a in ("--output", "-o") or a.startswith("--output=") for a in argv):
        return argv
    algorithm = "bfs"
    for i, a in enumerate(argv):
        if a == "--algorithm" and i + 1 < len(argv):
            algorithm = argv[i + 1]
        elif a.startswith("--algorithm="):
            algorithm = a.split("=", 1)[1]
    return [*argv, "--output", f"runs/feature_ablation/{algorithm}"]


if __name__ == "__main__":
    raise SystemExit(main(["patch", *_with_default_output(sys.argv[1:])]))
