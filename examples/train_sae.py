"""Train, evaluate and analyse an SAE on a shipped HookedNAR checkpoint, on CPU in minutes.

    python examples/train_sae.py --algorithm bfs --output runs/sae/bfs
    python examples/train_sae.py --algorithm dijkstra --output runs/sae/dijkstra --sweep

The same as ``hooked-nar train-sae`` (see ``--help``): collect ``hook_node_out`` at every step
over training graphs (valid rows only) -> train SAELens SAEs (the algorithm's recipe, or the
short sweep of :mod:`sae.sweep`) -> on held-out graphs: reconstruction, downstream accuracy
recovered against mean ablation, feature x concept AUROC / F1, linear probes with shuffled
controls, top examples -> ``report.md``, ``results.json``, the SAE (a SAELens directory,
``sae/``), and PNGs (AUROC heatmap; every concept's best feature on a graph, step by step).
"""

import sys
from pathlib import Path

# run from a checkout without (re)installing: the repository root comes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hooked_nar.app.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["train-sae", *sys.argv[1:]]))
