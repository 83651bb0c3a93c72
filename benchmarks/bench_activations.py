"""Cost of collecting an ``ActivationStore``: rows per second, and peak memory vs bytes stored.

Models: the shipped checkpoints ``HookedNAR.from_pretrained("bfs")`` and ``("dijkstra")``,
on CPU. Datasets: 256 graphs of n = 16 and 64 graphs of n = 64 (``CLRSDataset(..., seed=0)``,
generated before any timing). Four ways to collect ``hook_node_out`` at every step over
the same dataset, in one run, interleaved repeat by repeat (the order rotating to cancel
drift), each with ``batch_size=32``:

- ``loop``: the baseline, a plain loop over ``CLRSLoader(dataset, batch_size=32)`` of
  ``model.run_with_cache(batch, names_filter=<hook_node_out of every step>)`` keeping the
  valid rows of ``cache.stack("hook_node_out")`` (no labels, no index) and concatenating
  them at the end: what a user would write without the store;
- ``memory``: ``ActivationStore.from_model(model, dataset)`` (rows, graph / node / step
  index and the concept labels of both states, kept in memory);
- ``disk``: the same with ``path=`` (safetensors shards of the default ``shard_rows`` =
  65536 rows + manifest, streamed to a temporary directory, deleted after each repeat);
- ``disk8k``: the same with ``shard_rows=8192``: the default shard holds more rows than
  most of these datasets, so only this mode shows streaming bounding the memory.

For each: rows / s (median over repeats; ``ratio`` = the median of the per-repeat ratios
of the store's rows / s to the loop's, 1.0 = no overhead); bytes stored (activations
``rows x d_in x 4`` plus index and labels, as the store holds them; on disk the size of the
shard files); and, in a fresh subprocess per model (``MALLOC_MMAP_THRESHOLD_=65536`` so that
freed blocks go back to the OS and RSS tracks live memory), every dataset and way one after
the other, each result dropped before the next: the growth of the process's peak RSS during
the collection over its RSS just before (``VmHWM``, reset before each collection through
``/proc/self/clear_refs``; tracemalloc does not see torch allocations), and
``peak / stored``. Every way holds, one batch at a time, the forward's own transients (the
``[edges, d_model]`` messages dominate at n = 64, whatever is stored), the cache of every
step and its ``stack`` copy; in memory, also every chunk and then their concatenation;
streamed to disk, the chunks of one pending shard and their concatenation.

torch runs with one intra-op thread by default (``--threads``): on a shared machine whose
cores are busy, two OpenMP threads spin-wait on each other and run ~40x slower.

Run (about 3 minutes on one busy core, 1.5 with --quick):

    .venv/bin/python benchmarks/bench_activations.py
    .venv/bin/python benchmarks/bench_activations.py --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peak_rss import peak_rss_kib, reset_peak_rss, status_kib  # noqa: E402

from hooked_nar.data import CLRSDataset, CLRSLoader  # noqa: E402
from hooked_nar.model import HookedNAR  # noqa: E402
from sae import ActivationStore  # noqa: E402

ALGORITHMS = ("bfs", "dijkstra")
DATASETS = ((256, 16), (64, 64))  # (graphs, n)
QUICK_DATASETS = ((64, 16), (16, 64))
HOOK = "hook_node_out"
MODES = ("loop", "memory", "disk", "disk8k")
SMALL_SHARD = 8192  # shard_rows of "disk8k"


def make_dataset(algorithm: str, graphs: int, n: int) -> CLRSDataset:
    return CLRSDataset(algorithm, graphs, sizes=(n,), seed=0, progress=False)


def make_model(algorithm: str, dataset) -> HookedNAR:
    model = HookedNAR.from_pretrained(algorithm).eval()
    model.ensure_steps(max(int(d.length.max()) for d in dataset))  # build every step's hooks
    return model


@torch.no_grad()
def collect_loop(model, dataset, batch_size: int = 32) -> torch.Tensor:
    """The baseline: ``run_with_cache`` per batch, valid rows of ``hook_node_out`` only."""
    rows = []
    for batch in CLRSLoader(dataset, batch_size=batch_size, shuffle=False):
        _, cache = model.run_with_cache(
            batch, names_filter=lambda n: n.startswith("steps.") and n.endswith("." + HOOK)
        )
        st = cache.stack(HOOK)
        rows.append(st.values[st.mask].float())
    return torch.cat(rows)


def collect(mode: str, model, dataset, tmp: Path):
    """Run one way of collecting; returns ``(rows, bytes stored)``."""
    if mode == "loop":
        rows = collect_loop(model, dataset)
        return rows.shape[0], rows.nbytes
    if mode == "memory":
        store = ActivationStore.from_model(model, dataset, hooks=HOOK, progress=False)
        acts, index = store._all()
        return len(store), _index_bytes(index) + sum(a.nbytes for a in acts.values())
    path = tmp / "store"
    shards = {"shard_rows": SMALL_SHARD} if mode == "disk8k" else {}
    store = ActivationStore.from_model(
        model, dataset, hooks=HOOK, path=path, progress=False, **shards
    )
    size = sum(f.stat().st_size for f in path.iterdir() if f.suffix == ".safetensors")
    n = len(store)
    shutil.rmtree(path)
    return n, size


def _index_bytes(index) -> int:
    tensors = [index.graph, index.node, index.step]
    tensors += list(index.concepts.values()) + list(index.concepts_read.values())
    return sum(t.nbytes for t in tensors)


def bench_case(algorithm: str, graphs: int, n: int, repeats: int) -> dict:
    dataset = make_dataset(algorithm, graphs, n)
    model = make_model(algorithm, dataset)
    tmp = Path(tempfile.mkdtemp(prefix="bench_acts_"))
    try:
        out = {m: collect(m, model, dataset, tmp) for m in MODES}  # warm-up, and the sizes
        rows = {m: out[m][0] for m in MODES}
        assert len(set(rows.values())) == 1, rows  # every way keeps the same valid rows
        times = {m: [] for m in MODES}
        for rep in range(repeats):
            order = MODES[rep % len(MODES) :] + MODES[: rep % len(MODES)]
            for m in order:
                gc.collect()
                t0 = perf_counter()
                collect(m, model, dataset, tmp)
                times[m].append(perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r = rows["loop"]
    res = {
        "algorithm": algorithm,
        "graphs": graphs,
        "n": n,
        "rows": r,
        "d_in": model.cfg.d_model,
        "steps": max(int(d.length.max()) for d in dataset) - 1,
    }
    for m in MODES:
        res[f"{m}_rows_s"] = r / statistics.median(times[m])
        res[f"{m}_bytes"] = out[m][1]
        if m != "loop":
            pairs = zip(times["loop"], times[m], strict=True)
            res[f"{m}_ratio"] = statistics.median(t_loop / t for t_loop, t in pairs)
    return res


def rss_child(algorithm: str, datasets) -> dict:
    """Run in a fresh process: per dataset and mode, peak-RSS growth of one collection.

    The collections run one after the other; each result is dropped and the peak mark
    reset before the next (freed blocks go back to the OS under ``MALLOC_MMAP_THRESHOLD_``),
    and the growth is counted from the RSS just before each.
    """
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_acts_"))
    try:
        for graphs, n in datasets:
            dataset = make_dataset(algorithm, graphs, n)
            model = make_model(algorithm, dataset)
            for mode in MODES:  # warm-up: lazy imports, first-call allocations
                collect(mode, model, dataset[:2], tmp)
            for mode in MODES:
                gc.collect()
                reset = reset_peak_rss()
                rss0 = status_kib("VmRSS") or 0
                peak0 = peak_rss_kib()
                _, stored = collect(mode, model, dataset, tmp)
                peak1 = peak_rss_kib()
                base = rss0 if reset else peak0
                growth = (peak1 - base) * 1024
                out[f"{graphs},{n},{mode}"] = {"peak_growth": growth, "reset": reset}
            del model, dataset
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _mb(b: float) -> str:
    return f"{b / 2**20:.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller datasets, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (3)")
    parser.add_argument("--no-rss", action="store_true", help="skip the RSS subprocesses")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared, busy machine "
        "2 threads spin-wait on each other and run ~40x slower)",
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    repeats = args.repeats or (2 if args.quick else 3)
    datasets = QUICK_DATASETS if args.quick else DATASETS
    if args.rss_child:
        print(json.dumps(rss_child(args.rss_child, datasets)))
        return
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {HOOK} at every "
        f"step, batch_size 32; repeats={repeats} interleaved, medians"
    )

    results = []
    for algorithm in ALGORITHMS:
        for graphs, n in datasets:
            results.append(bench_case(algorithm, graphs, n, repeats))

    rss = {}
    if not args.no_rss:
        for algorithm in ALGORITHMS:
            cmd = [sys.executable, str(Path(__file__).resolve()), f"--rss-child={algorithm}"]
            cmd += [f"--threads={args.threads}"] + (["--quick"] if args.quick else [])
            # Large blocks straight from / back to the OS, so that RSS tracks live memory.
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            child = json.loads(out.stdout.strip().splitlines()[-1])
            for key, v in child.items():
                graphs, n, mode = key.split(",")
                rss[(algorithm, int(graphs), int(n), mode)] = v

    print("\nrows / s collected (ratio = store rows/s / loop rows/s, median of per-repeat ratios)")
    header = f"{'model':<9} {'dataset':<8} {'steps':>5} {'rows':>7} {'loop':>7}" + "".join(
        f" {m:>7} {'ratio':>6}" for m in MODES[1:]
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['algorithm']:<9} {str(r['graphs']) + 'x' + str(r['n']):<8} {r['steps']:>5d} "
            f"{r['rows']:>7d} {r['loop_rows_s']:>7.0f}"
            + "".join(f" {r[f'{m}_rows_s']:>7.0f} {r[f'{m}_ratio']:>6.3f}" for m in MODES[1:])
        )

    print("\nmemory (MiB): bytes stored vs growth of peak RSS during the collection")
    header = (
        f"{'model':<9} {'dataset':<8} {'mode':<7} {'acts':>8} {'stored':>8} "
        f"{'peak RSS+':>9} {'peak/stored':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        acts = r["rows"] * r["d_in"] * 4
        for mode in MODES:
            key = (r["algorithm"], r["graphs"], r["n"], mode)
            stored = r[f"{mode}_bytes"]
            if key in rss:
                peak = rss[key]["peak_growth"]
                peak_s, ratio_s = _mb(peak), f"{peak / stored:.2f}"
            else:
                peak_s = ratio_s = "-"
            print(
                f"{r['algorithm']:<9} {str(r['graphs']) + 'x' + str(r['n']):<8} {mode:<7} "
                f"{_mb(acts):>8} {_mb(stored):>8} {peak_s:>9} {ratio_s:>11}"
            )
    if rss and not all(v["reset"] for v in rss.values()):
        print("(VmHWM could not be reset: peak RSS+ is over the peak before the collection)")
    print(
        "acts = rows x d_in x 4; stored: loop = its rows tensor, memory = rows + index + labels "
        "held,\ndisk = the shard files (disk8k: shard_rows=8192); peak RSS+ = VmHWM during the "
        "collection\nminus VmRSS "
        "before it, in a fresh process per model with MALLOC_MMAP_THRESHOLD_=65536"
    )


if __name__ == "__main__":
    sys.exit(main())
