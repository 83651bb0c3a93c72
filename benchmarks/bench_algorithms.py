"""Throughput of the CLRS-exact algorithms: trajectories per second of ``run_many``.

For every algorithm of ``hooked_nar.algorithms.ALGORITHMS`` and n = 16 and n = 64, a fixed
number of graphs is drawn with ``hooked_nar.data.sample_graph`` (not timed) and
``run_many(name, graphs, sources)`` is timed over all of them (validation, the numba kernel,
the ``Trajectory`` and freeing it included). Numba is warmed up first (compiled or loaded
from its cache), so no compilation is timed. Large trajectories (``mst_kruskal`` at n = 64
holds ``in_mst_h`` [T, n, n]: tens to ~130 MB each) are run in chunks of at most
``--chunk-mb`` of hints and dropped as we go, so memory stays bounded.

For bfs, dfs, dijkstra and mst_prim the same run also times a pure-Python baseline: a port of
DeepMind's CLRS reference (``clrs/_src/algorithms/graphs.py``: Python loops over nodes, an
``np.copy`` of every hint at every step, probes stacked at the end), which is not installable
here. It lives in this file only, is used only as a timing baseline, and is checked once, on a
few graphs, to produce exactly the inputs, hints and outputs of our ``run``. The baseline runs
on the same graphs in the same chunks and, like ``run_many`` (and CLRS's own sampler), returns
each chunk's trajectories in a list that is held until the chunk is done. The two variants are
interleaved repeat by repeat (the order alternating) and the speed-up is the median over
repeats of the per-repeat ratio ours / baseline (trajectories per second).

Memory that a trajectory holds may be fresh memory: each of its pages then costs a page fault
on first touch, for both variants alike. Whether glibc hands out fresh pages or reuses the
previous pass's depends on the process's heap (it returns a freed heap top to the OS), so
fault counts (printed per trajectory) vary between runs. On the project's virtual machines a
fault costs ~2-6 us under load, so at n = 64 faults can be most of our time for dfs (~1.1 MB
of hints per trajectory) and dijkstra / mst_prim, and cap the speed-up near 10x whatever the
kernels do. ``--keep-freed-memory`` makes glibc keep freed memory, so that both variants run
without faults after the first pass: the speed-up of the computation alone.

A second table prints the steady-state speed-ups beside the cost of the first call in a fresh
interpreter (the first ``run_many`` minus the second): with numba's on-disk cache as the
warm-up left it, and compiling every kernel from an empty cache (what a new install pays once).

Run (several minutes on 2 busy cores; ``--quick --no-first-call`` about one):

    .venv/bin/python benchmarks/bench_algorithms.py
    .venv/bin/python benchmarks/bench_algorithms.py --quick --algorithms bfs,dijkstra
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from time import perf_counter

import numpy as np

from hooked_nar.algorithms import ALGORITHMS, SPECS, run, run_many
from hooked_nar.data import sample_graph

SIZES = (16, 64)

# Graphs per cell (algorithm, n): each pass of run_many over them takes roughly 0.05-0.2 s.
COUNTS = {
    16: {
        "bfs": 2048, "dfs": 1024, "topological_sort": 1024, "articulation_points": 256,
        "bridges": 256, "strongly_connected_components": 1024, "mst_kruskal": 512,
        "mst_prim": 2048, "bellman_ford": 2048, "dijkstra": 2048, "dag_shortest_paths": 2048,
        "floyd_warshall": 1024,
    },
    64: {
        "bfs": 512, "dfs": 128, "topological_sort": 128, "articulation_points": 32,
        "bridges": 8, "strongly_connected_components": 32, "mst_kruskal": 8,
        "mst_prim": 1024, "bellman_ford": 1024, "dijkstra": 1024, "dag_shortest_paths": 512,
        "floyd_warshall": 32,
    },
}


# ---------------------------------------------------------------------------------------------
# Pure-Python baseline: a port of DeepMind's CLRS reference (probing + four graph algorithms).
# Kept line by line close to clrs/_src/probing.py and clrs/_src/algorithms/graphs.py.


class _Probes:
    """CLRS's ``probing.initialize`` / ``push`` / ``finalize``: lists of copies, stacked."""

    def __init__(self, algorithm: str) -> None:
        self.names = {"input": [], "hint": [], "output": []}
        for name, spec in SPECS[algorithm].items():
            self.names[spec.stage].append(name)
        self.data = {stage: {name: [] for name in names} for stage, names in self.names.items()}

    def push(self, stage: str, next_probe: dict) -> None:
        for name in self.names[stage]:
            if name not in next_probe:
                raise KeyError(f"missing probe {name}")
            if stage == "hint":
                self.data[stage][name].append(next_probe[name])
            else:
                self.data[stage][name] = next_probe[name]

    def finalize(self) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for stage, fields in self.data.items():
            if stage == "hint":
                out[stage] = {k: np.stack(v) for k, v in fields.items()}
            else:
                out[stage] = {k: np.squeeze(np.array(v)) for k, v in fields.items()}
        return out


def _mask_one(i, n):
    probe = np.zeros(n)
    probe[i] = 1
    return probe


def _array_cat(A, n):
    probe = np.zeros((A.shape[0], n))
    for i in range(A.shape[0]):
        probe[i, A[i]] = 1
    return probe


def _graph(A):
    return ((A + np.eye(A.shape[0])) != 0) * 1.0


def ref_bfs(A, s):
    probes = _Probes("bfs")
    A_pos = np.arange(A.shape[0])
    probes.push("input", {
        "pos": np.copy(A_pos) * 1.0 / A.shape[0], "s": _mask_one(s, A.shape[0]),
        "A": np.copy(A), "adj": _graph(np.copy(A)),
    })
    reach = np.zeros(A.shape[0])
    pi = np.arange(A.shape[0])
    reach[s] = 1
    while True:
        prev_reach = np.copy(reach)
        probes.push("hint", {"reach_h": np.copy(prev_reach), "pi_h": np.copy(pi)})
        for i in range(A.shape[0]):
            for j in range(A.shape[0]):
                if A[i, j] > 0 and prev_reach[i] == 1:
                    if pi[j] == j and j != s:
                        pi[j] = i
                    reach[j] = 1
        if np.all(reach == prev_reach):
            break
    probes.push("output", {"pi": np.copy(pi)})
    return pi, probes.finalize()


def ref_dfs(A, s=None):
    probes = _Probes("dfs")
    n = A.shape[0]
    A_pos = np.arange(n)
    probes.push("input", {
        "pos": np.copy(A_pos) * 1.0 / n, "A": np.copy(A), "adj": _graph(np.copy(A)),
    })
    color = np.zeros(n, dtype=np.int32)
    pi = np.arange(n)
    d = np.zeros(n)
    f = np.zeros(n)
    s_prev = np.arange(n)
    time = 0

    def hint(s, u, v, s_last):
        return {
            "pi_h": np.copy(pi), "color": _array_cat(color, 3), "d": np.copy(d),
            "f": np.copy(f), "s_prev": np.copy(s_prev), "s": _mask_one(s, n),
            "u": _mask_one(u, n), "v": _mask_one(v, n), "s_last": _mask_one(s_last, n),
            "time": time,
        }

    for s in range(n):
        if color[s] == 0:
            s_last = s
            u = s
            v = s
            probes.push("hint", hint(s, u, v, s_last))
            while True:
                if color[u] == 0 or d[u] == 0.0:
                    time += 0.01
                    d[u] = time
                    color[u] = 1
                    probes.push("hint", hint(s, u, v, s_last))
                for v in range(n):  # CLRS pushes v after the loop too
                    if A[u, v] != 0:
                        if color[v] == 0:
                            pi[v] = u
                            color[v] = 1
                            s_prev[v] = s_last
                            s_last = v
                            probes.push("hint", hint(s, u, v, s_last))
                            break
                if s_last == u:
                    color[u] = 2
                    time += 0.01
                    f[u] = time
                    probes.push("hint", hint(s, u, v, s_last))
                    if s_prev[u] == u:
                        assert s_prev[s_last] == s_last
                        break
                    pr = s_prev[s_last]
                    s_prev[s_last] = s_last
                    s_last = pr
                u = s_last
    probes.push("output", {"pi": np.copy(pi)})
    return pi, probes.finalize()


def _ref_greedy_tree(algorithm, A, s):
    """CLRS's mst_prim (key = edge weight) and dijkstra (d = d[u] + weight), unshared there."""
    probes = _Probes(algorithm)
    key_name = "d" if algorithm == "dijkstra" else "key"
    A_pos = np.arange(A.shape[0])
    probes.push("input", {
        "pos": np.copy(A_pos) * 1.0 / A.shape[0], "s": _mask_one(s, A.shape[0]),
        "A": np.copy(A), "adj": _graph(np.copy(A)),
    })
    key = np.zeros(A.shape[0])
    mark = np.zeros(A.shape[0])
    in_queue = np.zeros(A.shape[0])
    pi = np.arange(A.shape[0])
    key[s] = 0
    in_queue[s] = 1
    probes.push("hint", {
        "pi_h": np.copy(pi), key_name: np.copy(key), "mark": np.copy(mark),
        "in_queue": np.copy(in_queue), "u": _mask_one(s, A.shape[0]),
    })
    for _ in range(A.shape[0]):
        u = np.argsort(key + (1.0 - in_queue) * 1e9)[0]  # drop-in for extract-min
        if in_queue[u] == 0:
            break
        mark[u] = 1
        in_queue[u] = 0
        for v in range(A.shape[0]):
            if A[u, v] != 0:
                if algorithm == "dijkstra":
                    if mark[v] == 0 and (in_queue[v] == 0 or key[u] + A[u, v] < key[v]):
                        pi[v] = u
                        key[v] = key[u] + A[u, v]
                        in_queue[v] = 1
                elif mark[v] == 0 and (in_queue[v] == 0 or A[u, v] < key[v]):
                    pi[v] = u
                    key[v] = A[u, v]
                    in_queue[v] = 1
        probes.push("hint", {
            "pi_h": np.copy(pi), key_name: np.copy(key), "mark": np.copy(mark),
            "in_queue": np.copy(in_queue), "u": _mask_one(u, A.shape[0]),
        })
    probes.push("output", {"pi": np.copy(pi)})
    return pi, probes.finalize()


def ref_dijkstra(A, s):
    return _ref_greedy_tree("dijkstra", A, s)


def ref_mst_prim(A, s):
    return _ref_greedy_tree("mst_prim", A, s)


BASELINES = {"bfs": ref_bfs, "dfs": ref_dfs, "dijkstra": ref_dijkstra, "mst_prim": ref_mst_prim}


def check_baselines(names, seed: int = 123) -> int:
    """Assert the baseline equals our ``run`` (every input, hint and output) on a few graphs."""
    rng = np.random.default_rng(seed)
    checked = 0
    for name in names:
        for n in (2, 5, 8, 16, 16, 16, 64):
            A, s = sample_graph(name, n, rng=rng)
            ours = run(name, A, s)
            _, ref = BASELINES[name](A, s)
            for stage, got in (("input", ours.inputs), ("hint", ours.hints),
                               ("output", ours.outputs)):
                assert set(got) == set(ref[stage]), (name, n, stage)
                for field, value in got.items():
                    np.testing.assert_array_equal(
                        value, ref[stage][field], err_msg=f"{name} n={n} {stage}.{field}"
                    )
            checked += 1
    return checked


# ---------------------------------------------------------------------------------------------
# Timing


def _minor_faults() -> int:
    """Minor page faults of this process so far: first touches of fresh memory pages."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse (no trimming of the heap, no mmap below 32 MiB),
    so that repeated passes of either variant reuse the pages of the previous one instead of
    faulting fresh ones in: the speed-up of the computation alone."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameters
    if not (libc.mallopt(m_trim_threshold, 2**30) and libc.mallopt(m_mmap_threshold, 2**25)):
        raise SystemExit("--keep-freed-memory needs glibc's mallopt")


def _hint_bytes(traj) -> int:
    return sum(v.nbytes for v in traj.hints.values())


def _run_baseline(name, graphs, sources) -> list:
    """The baseline over ``graphs``, returned in a list as ``run_many`` returns trajectories."""
    fn = BASELINES[name]
    return [fn(A, None if sources is None else sources[i]) for i, A in enumerate(graphs)]


def _time(run_chunk, name, graphs, sources, chunk: int) -> tuple[float, int]:
    """Seconds and page faults of ``run_chunk(name, graphs, sources)`` over ``graphs`` in chunks
    of ``chunk`` graphs, each chunk's results held until it is done, then dropped."""
    f0, t0 = _minor_faults(), perf_counter()
    for lo in range(0, len(graphs), chunk):
        out = run_chunk(name, graphs[lo : lo + chunk],
                        None if sources is None else sources[lo : lo + chunk])
        del out
    return perf_counter() - t0, _minor_faults() - f0


def bench_cell(name: str, n: int, count: int, repeats: int, chunk_mb: float, seed: int) -> dict:
    rng = np.random.default_rng([seed, n, ALGORITHMS.index(name)])
    pairs = [sample_graph(name, n, rng=rng) for _ in range(count)]
    graphs = [A for A, _ in pairs]
    sources = None if pairs[0][1] is None else [s for _, s in pairs]
    # Hint steps and hint bytes per trajectory, from up to 16 graphs, one at a time.
    lengths, sizes = [], []
    for A, s in pairs[:16]:
        traj = run(name, A, s)
        lengths.append(traj.length)
        sizes.append(_hint_bytes(traj))
        del traj
    chunk = max(1, int(chunk_mb * 1e6 // max(max(sizes), 1)))
    variants = {"ours": run_many}
    if name in BASELINES:
        variants["base"] = _run_baseline
    rate = {v: [] for v in variants}
    faults = {v: [] for v in variants}
    ratios = []
    for rep in range(repeats):
        gc.collect()
        for variant in sorted(variants, reverse=rep % 2 == 1):
            seconds, flt = _time(variants[variant], name, graphs, sources, chunk)
            rate[variant].append(count / seconds)
            faults[variant].append(flt / count)
        if "base" in variants:
            ratios.append(rate["ours"][-1] / rate["base"][-1])

    def median(values):
        return statistics.median(values) if values else None

    return {
        "name": name, "n": n, "count": count, "T": statistics.fmean(lengths),
        "mb": statistics.fmean(sizes) / 1e6, "ours": median(rate["ours"]),
        "base": median(rate.get("base", [])), "speedup": median(ratios),
        "faults_ours": median(faults["ours"]), "faults_base": median(faults.get("base", [])),
    }


# The first run_many call of a fresh interpreter, minus the second: numba loading its on-disk
# cache (or compiling) and first-call set-up. Printed in seconds.
_FIRST_CALL = """
import time
from hooked_nar.algorithms import run_many
from hooked_nar.data import sample_graph
A, s = sample_graph({name!r}, 16, seed=0)
sources = None if s is None else [s]
t0 = time.perf_counter(); run_many({name!r}, [A], sources)
t1 = time.perf_counter(); run_many({name!r}, [A], sources)
t2 = time.perf_counter()
print((t1 - t0) - (t2 - t1))
"""


def first_call_seconds(name: str, compile_: bool) -> float:
    """Extra seconds of the first ``run_many(name, ...)`` call in a fresh interpreter: with
    numba's on-disk cache as the warm-up left it (``compile_=False``), or compiling every
    kernel from an empty cache directory (``compile_=True``)."""
    with tempfile.TemporaryDirectory() as empty:
        env = dict(os.environ, **({"NUMBA_CACHE_DIR": empty} if compile_ else {}))
        done = subprocess.run([sys.executable, "-c", _FIRST_CALL.format(name=name)], env=env,
                              capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def _fmt(value, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def _row(r: dict) -> str:
    return (f"{r['name']:<30} {r['n']:>3d} {r['count']:>6d} {r['T']:>7.1f} {r['mb']:>8.2f} "
            f"{_fmt(r['ours'], ',.1f', 12)} {_fmt(r['base'], ',.1f', 12)} "
            f"{_fmt(r['speedup'], ',.1f', 8)}x {_fmt(r['faults_ours'], ',.0f', 11)} "
            f"{_fmt(r['faults_base'], ',.0f', 11)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/8 of the graphs, 5 repeats")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS),
                        help="comma-separated subset of: " + ", ".join(ALGORITHMS))
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (7)")
    parser.add_argument("--chunk-mb", type=float, default=256.0,
                        help="at most this many MB of hints alive at once (default 256)")
    parser.add_argument("--no-first-call", action="store_true",
                        help="skip the first-call (numba cache load / compile) measurements")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc keeps freed memory (see keep_freed_memory): no page faults "
                             "after the first pass, for both variants")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.keep_freed_memory:
        keep_freed_memory()

    names = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = [a for a in names if a not in ALGORITHMS]
    if unknown or not names:
        parser.error(f"unknown algorithms {unknown}; valid: {', '.join(ALGORITHMS)}")
    repeats = args.repeats or (5 if args.quick else 7)
    scale = 8 if args.quick else 1

    t_start = perf_counter()
    # Warm numba up: compile (or load from the on-disk cache) every kernel before timing.
    t0 = perf_counter()
    for name in names:
        for n in (1, 4, 16):
            A, s = sample_graph(name, n, seed=n)
            run_many(name, [A], None if s is None else [s])
    warm = perf_counter() - t0
    checked = check_baselines([a for a in names if a in BASELINES])

    print(f"numba warm-up {warm:.1f} s; baseline == run on {checked} graphs "
          "(all inputs, hints, outputs)")
    print(f"repeats={repeats} (interleaved, medians); ours = run_many, baseline = pure-Python "
          "CLRS port, over the same graphs and chunks; faults = minor page faults per trajectory; "
          f"freed memory {'kept by glibc' if args.keep_freed_memory else 'as glibc defaults'}")
    header = (f"{'algorithm':<30} {'n':>3} {'graphs':>6} {'T mean':>7} {'MB/traj':>8} "
              f"{'ours traj/s':>12} {'base traj/s':>12} {'speed-up':>9} "
              f"{'faults ours':>11} {'faults base':>11}")
    print(header)
    print("-" * len(header))
    speedups: dict[tuple[str, int], float | None] = {}
    for n in SIZES:
        for name in names:
            count = max(2, COUNTS[n][name] // scale)
            r = bench_cell(name, n, count, repeats, args.chunk_mb, args.seed)
            speedups[name, n] = r["speedup"]
            print(_row(r), flush=True)

    # Steady-state speed-up beside what the first call of a fresh interpreter costs.
    print()
    header = (f"{'algorithm':<30} {'speed-up n=16':>13} {'speed-up n=64':>13} "
              f"{'first call, cached (ms)':>24} {'first call, compiling (s)':>26}")
    print(header)
    print("-" * len(header))
    for name in names:
        cached = compiling = None
        if not args.no_first_call:
            cached = 1e3 * first_call_seconds(name, compile_=False)
            compiling = first_call_seconds(name, compile_=True)
        print(f"{name:<30} {_fmt(speedups[name, 16], '.1f', 12)}x "
              f"{_fmt(speedups[name, 64], '.1f', 12)}x {_fmt(cached, '.0f', 24)} "
              f"{_fmt(compiling, '.1f', 26)}", flush=True)
    print(f"total {perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
