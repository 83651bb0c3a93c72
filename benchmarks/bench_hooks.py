"""Cost of HookedNAR's hook points: forward overhead, ``run_with_cache`` overhead, cache memory.

Models: a fresh ``HookedNAR(NARConfig("bfs"))`` and ``HookedNAR(NARConfig("dijkstra"))``
(default config, d_model 128), in eval mode under ``torch.no_grad()``, on CPU. Batches: 32
graphs of n = 16 and 4 graphs of n = 64 (``CLRSDataset(..., seed=0)`` + ``collate``). On the
same batch, in one run, interleaved repeat by repeat (the order rotating to cancel drift):

(a) ``model(batch)`` with no hooks attached vs the same model with its hook points bypassed:
    every ``HookPoint`` module object (encoder, decoder, every ``steps.{t}`` and their
    layer / attn / decoder submodules) is temporarily replaced by a plain identity callable,
    then restored (target: ratio <= 1.05);
(b) ``model.run_with_cache(batch)`` (every hook) vs a plain ``model(batch)``
    (target: ratio <= 1.5);
(c) the cache's memory: number of cached tensors, the sum of their ``nbytes``, the bytes of
    distinct storages (``steps.{t+1}.hook_node_in`` is the tensor of ``steps.{t}.hook_node_out``),
    the bytes of a ``NARCache.stack("hook_node_out")`` copy, and, measured in a fresh
    subprocess per case (``MALLOC_MMAP_THRESHOLD_=65536`` so that freed blocks go back to
    the OS and RSS tracks live memory), the growth of the process's peak RSS from plain
    forwards to ``run_with_cache`` (``VmHWM``, reset after the imports through
    ``/proc/self/clear_refs``; tracemalloc does not see torch allocations) and the RSS growth
    of the ``stack`` call.

Times are medians over repeats; ratios are medians of the per-repeat ratios. torch runs
with one intra-op thread by default (``--threads``): on a shared machine whose cores are
busy, two OpenMP threads spin-wait on each other and a forward gets ~40x slower.

Run (about 4 minutes on 2 busy cores, ~1.5 with --quick):

    .venv/bin/python benchmarks/bench_hooks.py
    .venv/bin/python benchmarks/bench_hooks.py --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter

import torch
from peak_rss import peak_rss_kib, reset_peak_rss, status_kib
from transformer_lens.hook_points import HookPoint

from hooked_nar.data import CLRSDataset, collate
from hooked_nar.model import HookedNAR, NARConfig

ALGORITHMS = ("bfs", "dijkstra")
BATCHES = ((32, 16), (4, 64))  # (graphs, n)


def _identity(x):
    return x


@contextmanager
def hook_points_bypassed(model: torch.nn.Module):
    """Replace every HookPoint child of every submodule by a plain identity callable."""
    saved = []
    for module in list(model.modules()):
        names = [name for name, child in module._modules.items() if isinstance(child, HookPoint)]
        if not names:
            continue
        saved.append((module, dict(module._modules), names))
        for name in names:
            del module._modules[name]
            object.__setattr__(module, name, _identity)
    try:
        yield sum(len(names) for _, _, names in saved)
    finally:
        for module, children, names in saved:
            for name in names:
                object.__delattr__(module, name)
            module._modules.clear()
            module._modules.update(children)  # original objects, original order


def make_batch(algorithm: str, graphs: int, n: int):
    ds = CLRSDataset(algorithm, graphs, sizes=(n,), seed=0, progress=False)
    return collate([ds[i] for i in range(len(ds))])


def make_model(algorithm: str, d_model: int | None) -> HookedNAR:
    cfg = NARConfig(algorithm) if d_model is None else NARConfig(algorithm, d_model=d_model)
    return HookedNAR(cfg).eval()


def _flat(logits) -> dict[str, torch.Tensor]:
    return {**{f"out.{k}": v for k, v in logits.outputs.items()},
            **{f"hint.{k}": v for k, v in logits.hints.items()}}


def _timed(fn, k: int) -> float:
    """Seconds per call of ``fn``, over ``k`` back-to-back calls."""
    t0 = perf_counter()
    for _ in range(k):
        fn()
    return (perf_counter() - t0) / k


def cache_bytes(cache) -> tuple[int, int, int]:
    """(number of tensors, summed nbytes, bytes of distinct storages)."""
    tensors = list(cache.cache_dict.values())
    storages = {}
    for t in tensors:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
    return len(tensors), sum(t.nbytes for t in tensors), sum(storages.values())


@torch.no_grad()
def bench_case(algorithm: str, graphs: int, n: int, repeats: int, target_s: float,
               d_model: int | None) -> dict:
    model = make_model(algorithm, d_model)
    batch = make_batch(algorithm, graphs, n)
    model(batch)  # builds the hook points of every step this batch needs
    num_hooks = len(model.hook_dict)
    num_steps = model(batch).num_processor_steps

    # Sanity: bypassing changes nothing but the hook points.
    plain_out = _flat(model(batch))
    with hook_points_bypassed(model) as bypassed:
        assert not any(isinstance(m, HookPoint) for m in model.modules())
        bypass_out = _flat(model(batch))
    assert bypassed == num_hooks, (bypassed, num_hooks)
    assert all(torch.equal(plain_out[k], bypass_out[k]) for k in plain_out)
    assert sum(isinstance(m, HookPoint) for m in model.modules()) == num_hooks
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())

    def plain():
        model(batch)

    def bypassed_forward():
        with hook_points_bypassed(model):
            t0 = perf_counter()
            for _ in range(k):
                model(batch)
            return (perf_counter() - t0) / k

    def cached():
        _, cache = model.run_with_cache(batch)
        del cache

    t1 = _timed(plain, 1)
    k = max(1, round(target_s / max(t1, 1e-6)))
    variants = ("plain", "bypassed", "cache")
    times = {v: [] for v in variants}
    for rep in range(repeats):
        gc.collect()
        order = variants[rep % 3:] + variants[: rep % 3]
        for v in order:
            if v == "plain":
                times[v].append(_timed(plain, k))
            elif v == "bypassed":
                times[v].append(bypassed_forward())  # (un)patching is outside the timing
            else:
                times[v].append(_timed(cached, k))
    pairs = zip(times["plain"], times["bypassed"], times["cache"], strict=True)
    hook_ratio = statistics.median(p / b for p, b, _ in pairs)
    pairs = zip(times["plain"], times["cache"], strict=True)
    cache_ratio = statistics.median(c / p for p, c in pairs)

    _, cache = model.run_with_cache(batch)
    count, nbytes, unique = cache_bytes(cache)
    stacked = cache.stack("hook_node_out")
    return {
        "algorithm": algorithm, "graphs": graphs, "n": n, "nodes": batch.num_nodes,
        "edges": batch.edge_index.shape[1], "steps": num_steps, "hooks": num_hooks, "k": k,
        "plain_ms": 1e3 * statistics.median(times["plain"]),
        "bypassed_ms": 1e3 * statistics.median(times["bypassed"]),
        "cache_ms": 1e3 * statistics.median(times["cache"]),
        "hook_ratio": hook_ratio, "cache_ratio": cache_ratio,
        "tensors": count, "nbytes": nbytes, "unique_bytes": unique,
        "stack_bytes": stacked.values.nbytes,
    }


@torch.no_grad()
def rss_child(algorithm: str, graphs: int, n: int, d_model: int | None) -> dict:
    """Run in a fresh process: peak-RSS growth caused by one ``run_with_cache``.

    The baseline is the peak over plain forwards only (the peak mark is reset after the
    imports and the dataset, where the kernel allows it; else ``ru_maxrss`` is used and
    the growth can read 0 when the imports peaked higher).
    """
    model = make_model(algorithm, d_model)
    batch = make_batch(algorithm, graphs, n)
    model(batch)
    gc.collect()
    reset = reset_peak_rss()
    for _ in range(3):  # plain forwards: their peak is the baseline
        model(batch)
    peak0 = peak_rss_kib()
    _, cache = model.run_with_cache(batch)
    peak1 = peak_rss_kib()
    rss1 = status_kib("VmRSS") or 0
    stacked = cache.stack("hook_node_out")
    rss2 = status_kib("VmRSS") or 0
    _, nbytes, unique = cache_bytes(cache)
    del stacked
    return {"cache_peak_growth": (peak1 - peak0) * 1024, "stack_rss_growth": (rss2 - rss1) * 1024,
            "nbytes": nbytes, "unique_bytes": unique, "peak_reset": reset}


def _mb(b: float) -> str:
    return f"{b / 2**20:8.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter timings")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (15)")
    parser.add_argument("--d-model", type=int, default=None, help="default: NARConfig's")
    parser.add_argument("--no-rss", action="store_true", help="skip the RSS subprocesses")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared, busy machine "
                             "2 threads spin-wait on each other and run ~40x slower)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.rss_child:
        algorithm, graphs, n = args.rss_child.split(",")
        print(json.dumps(rss_child(algorithm, int(graphs), int(n), args.d_model)))
        return
    repeats = args.repeats or (6 if args.quick else 15)
    target_s = 0.04 if args.quick else 0.1
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, eval, no_grad; "
          f"repeats={repeats} interleaved, medians")

    results = []
    for algorithm in ALGORITHMS:
        for graphs, n in BATCHES:
            results.append(bench_case(algorithm, graphs, n, repeats, target_s, args.d_model))

    print("\n(a) hook points with no hooks vs bypassed; (b) run_with_cache (all hooks) vs plain")
    header = (f"{'model':<9} {'batch':<8} {'steps':>5} {'hooks':>5} {'plain ms':>9} "
              f"{'bypass ms':>9} {'(a) ratio':>9} {'cache ms':>9} {'(b) ratio':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['algorithm']:<9} {str(r['graphs']) + 'x' + str(r['n']):<8} {r['steps']:>5d} "
              f"{r['hooks']:>5d} {r['plain_ms']:>9.2f} {r['bypassed_ms']:>9.2f} "
              f"{r['hook_ratio']:>9.3f} {r['cache_ms']:>9.2f} {r['cache_ratio']:>9.3f}")
    worst_a = max(r["hook_ratio"] for r in results)
    worst_b = max(r["cache_ratio"] for r in results)
    print(f"worst (a) {worst_a:.3f} (target <= 1.05: {'met' if worst_a <= 1.05 else 'NOT met'}); "
          f"worst (b) {worst_b:.3f} (target <= 1.5: {'met' if worst_b <= 1.5 else 'NOT met'})")

    rss = {}
    if not args.no_rss:
        for r in results:
            cmd = [sys.executable, str(Path(__file__).resolve()),
                   f"--rss-child={r['algorithm']},{r['graphs']},{r['n']}",
                   f"--threads={args.threads}"]
            if args.d_model is not None:
                cmd.append(f"--d-model={args.d_model}")
            # Large blocks straight from / back to the OS, so that RSS tracks live memory
            # (else glibc keeps the plain forwards' freed memory resident and the cache reuses it).
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                 env=env).stdout
            rss[(r["algorithm"], r["graphs"], r["n"])] = json.loads(out.strip().splitlines()[-1])

    print("\n(c) cache memory (MiB): every hook of one run_with_cache")
    header = (f"{'model':<9} {'batch':<8} {'nodes':>5} {'edges':>6} {'tensors':>7} "
              f"{'sum nbytes':>10} {'distinct':>8} {'RSS peak+':>9} {'stack copy':>10} "
              f"{'RSS +':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        key = (r["algorithm"], r["graphs"], r["n"])
        growth = _mb(rss[key]["cache_peak_growth"]) if key in rss else f"{'-':>8}"
        stack_growth = _mb(rss[key]["stack_rss_growth"]) if key in rss else f"{'-':>8}"
        print(f"{r['algorithm']:<9} {str(r['graphs']) + 'x' + str(r['n']):<8} {r['nodes']:>5d} "
              f"{r['edges']:>6d} {r['tensors']:>7d} {_mb(r['nbytes']):>10} "
              f"{_mb(r['unique_bytes'])} {growth:>9} {_mb(r['stack_bytes']):>10} "
              f"{stack_growth:>9}")
    print("sum nbytes counts a tensor shared by two hooks twice; distinct = bytes of distinct "
          "storages;\nstack copy = NARCache.stack('hook_node_out').values; measured in a fresh "
          "process\n(glibc returning frees to the OS: MALLOC_MMAP_THRESHOLD_=65536): RSS peak+ "
          "= peak RSS of\nrun_with_cache minus that of plain forwards; RSS + = RSS growth of "
          "the stack call")


if __name__ == "__main__":
    sys.exit(main())
