"""Size and generation time of the feature browser for the study's 128-feature SAEs.

For each algorithm, the run folder ``RUNS/<algorithm>`` of a full study (``hooked-nar study
--algorithm <algorithm> --output RUNS/<algorithm>``: 64 held-out graphs of n = 16, the
recipe's matryoshka SAE with 128 features) is browsed as ``hooked-nar browse`` does: load the
checkpoint and the SAE, regenerate the held-out graphs, collect and encode their activations,
gather every feature and write the folder. Times, wall clock: ``cli``, the whole command
``python -m hooked_nar browse RUN --output TMP`` in a fresh process (interpreter start,
imports and numba's compilation of the algorithm included: what a user waits for); ``first``,
the first build in this process (loading to the last file written); ``warm``, the median of
``--repeats`` more. Torch on one thread. Size: every file of the folder. Targets (issue 15):
under 20 MB and under 30 s.

    .venv/bin/python benchmarks/bench_browser.py                  # runs/bfs, runs/dijkstra, ...
    .venv/bin/python benchmarks/bench_browser.py --runs /tmp/runs --algorithms bfs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import torch

from hooked_nar.app.browser import build_browser
from hooked_nar.app.browser.run_folder import load_run

ALGORITHMS = ("bfs", "dijkstra", "mst_prim")
ROOT = Path(__file__).resolve().parents[1]


def measure(run_dir: Path, out: Path) -> tuple[float, int, int, int]:
    """``(seconds, bytes, features, rows)`` of one browse of ``run_dir`` into ``out``."""
    t0 = perf_counter()
    model, sae, eval_data, results, graph_ids, seed = load_run(run_dir)
    info = build_browser(model, sae, eval_data, out, results, graph_ids=graph_ids, seed=seed)
    return perf_counter() - t0, info.bytes, info.features, len(eval_data)


def cli_seconds(run_dir: Path, out: Path) -> float:
    """Wall time of ``python -m hooked_nar browse run_dir --output out`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hooked_nar", "browse", str(run_dir), "--output", str(out)]
    t0 = perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
    return perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of the study runs")
    p.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    p.add_argument("--repeats", type=int, default=2, help="warm builds after the first")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    missing = [alg for alg in a.algorithms if not (a.runs / alg / "results.json").is_file()]
    if missing:
        cmds = "; ".join(f"hooked-nar study --algorithm {m} --output {a.runs / m}" for m in missing)
        print(f"no study run for {', '.join(missing)}; first run: {cmds}", file=sys.stderr)
        return 2
    print("algorithm  features  graphs  size MB   cli s  first s  warm s (median)")
    for alg in a.algorithms:
        with tempfile.TemporaryDirectory() as tmp:
            cli = cli_seconds(a.runs / alg, Path(tmp) / "cli")
            runs = [measure(a.runs / alg, Path(tmp) / "browser") for _ in range(1 + a.repeats)]
        secs = [r[0] for r in runs]
        _, size, features, graphs = runs[-1]
        warm = statistics.median(secs[1:]) if a.repeats else float("nan")
        print(
            f"{alg:<10} {features:>8} {graphs:>7} {size / 2**20:>8.2f} {cli:>7.1f} "
            f"{secs[0]:>8.1f} {warm:>7.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
