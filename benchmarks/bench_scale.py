"""Inference time and peak memory of every processor against graph size.

One sparse Erdos-Renyi graph (the library's ``er`` generator) of n nodes, one forward under
``torch.no_grad()`` (as inference should run; ``run_with_cache`` with gradients keeps the
autograd graph, several times the memory). Each (processor, n) runs in a fresh process so
its peak RSS (``benchmarks/peak_rss.py``) is its own; the figure includes Python, torch and
the graph (the ``baseline`` column: RSS before the forward).

    python benchmarks/bench_scale.py                       # bfs, n = 64 .. 1000
    python benchmarks/bench_scale.py --algorithm dijkstra --sizes 64 160 --per-step

``--per-step`` also divides by the number of processor steps (Dijkstra's trajectory has about
n steps, BFS's about the graph's diameter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROCESSOR_D_MODEL = {"mpnn": 128, "triplet_gmpnn": 128, "transformer": 128, "discrete": 16}


def measure(algorithm: str, processor: str, n: int, seed: int) -> dict:
    """One forward of a fresh model on one graph: seconds, steps, peak and baseline RSS."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from peak_rss import peak_rss_kib, reset_peak_rss, status_kib

    from hooked_nar.data import CLRSDataset, collate
    from hooked_nar.model import HookedNAR, NARConfig

    torch.set_num_threads(1)
    batch = collate([CLRSDataset(algorithm, 1, sizes=(n,), seed=seed, progress=False)[0]])
    model = HookedNAR(
        NARConfig(algorithm, d_model=PROCESSOR_D_MODEL[processor], processor=processor)
    ).eval()
    baseline = status_kib("VmRSS") or 0
    reset_peak_rss()
    start = time.perf_counter()
    with torch.no_grad():
        logits = model(batch)
    seconds = time.perf_counter() - start
    return {"processor": processor, "n": n, "edges": int(batch.edge_index.shape[1]),
            "steps": logits.num_processor_steps, "seconds": seconds, "peak_mib": peak_rss_kib() / 1024,
            "baseline_mib": baseline / 1024}


def main() -> None:
    """Print one row per (processor, n), each measured in its own process."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", default="bfs")
    p.add_argument("--processors", nargs="+", default=list(PROCESSOR_D_MODEL))
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 160, 320, 640, 1000])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-step", action="store_true")
    p.add_argument("--one", nargs=2, metavar=("PROCESSOR", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        row = measure(args.algorithm, args.one[0], int(args.one[1]), args.seed)
        print(json.dumps(row))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"{args.algorithm}: one sparse ER graph, torch.no_grad(), one thread")
    head = f"{'processor':<14} {'n':>5} {'edges':>7} {'steps':>5} {'seconds':>9} {'peak MiB':>9}"
    print(head + f" {'baseline':>9}" + (f" {'ms/step':>8}" if args.per_step else ""))
    for processor in args.processors:
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--algorithm", args.algorithm, "--seed",
                   str(args.seed), "--one", processor, str(n)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode:
                err = (done.stderr.strip().splitlines() or ["killed"])[-1]
                print(f"{processor:<14} {n:>5} failed: {err[:100]}", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            line = (f"{processor:<14} {n:>5} {r['edges']:>7} {r['steps']:>5} "
                    f"{r['seconds']:>9.2f} {r['peak_mib']:>9.0f} {r['baseline_mib']:>9.0f}")
            if args.per_step:
                line += f" {1000 * r['seconds'] / r['steps']:>8.1f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
