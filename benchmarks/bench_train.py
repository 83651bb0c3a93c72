"""Training throughput of HookedNAR: optimizer steps per second (CPU, or ``--device cuda``).

For each processor of the registry (``hooked_nar.model.processors.PROCESSORS``; ``discrete`` in
its stepwise config, ``hooked_nar.train_discrete.discrete_config``), d_model 128 and 64, and
the algorithms bfs and dijkstra: batches of 32 graphs of n = 16 from
``CLRSDataset(algorithm, ..., sizes=(16,), seed=0)`` through ``CLRSLoader(batch_size=32,
shuffle=True, seed=0)``, one training step = ``model(batch, return_type="loss")``, backward,
gradient clipping at 1.0 and an Adam step (as ``hooked_nar.train`` does), default config
otherwise (hint_mode "supervised", 1 layer). Every configuration sees the same batches in the
same order. All configurations are stepped round-robin (the order rotating every round), so
background load hits them alike: 2 warm-up rounds, then ``--steps`` timed rounds (10); the
table shows the median step time and steps/s = 1 / median.

torch runs with one intra-op thread by default (``--threads``): on a shared machine whose
cores are busy, two OpenMP threads spin-wait on each other and a step gets many times slower.

``--modes``: instead, the training modes of the recipe on dijkstra and dfs (mpnn, d_model 64,
batch 32, graphs of n in {4, 7, 11, 13, 16} as ``hooked-nar train`` draws them): recurrent with
supervised hints (the old default), recurrent re-encoding its own soft hints (Ibarz et al.), and
stepwise (every step fed the true previous hints, all steps in one forward;
``hooked_nar.stepwise``), and the discrete processor (``discrete_config``, d_model 16, fed the
true hints as ``hooked-nar train --processor discrete`` trains it): steps/s and trajectories/s
(graphs/s), round-robin as above. ``--device cuda`` times them on a GPU (synchronised).

``--time-to-target RUN_DIR...``: the CPU seconds (validation included) each training run took
to first reach validation scores 0.9, 0.95 and 0.99, from its ``history.json``.

Run (about 2 minutes on 2 busy cores; ``--quick``: d_model 64 only, 5 timed steps):

    .venv/bin/python benchmarks/bench_train.py
    .venv/bin/python benchmarks/bench_train.py --quick
    .venv/bin/python benchmarks/bench_train.py --modes
    .venv/bin/python benchmarks/bench_train.py --time-to-target runs/abl/*/
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from time import perf_counter

import torch

from hooked_nar.data import CLRSDataset, CLRSLoader
from hooked_nar.model import HookedNAR, NARConfig
from hooked_nar.model.processors import PROCESSORS
from hooked_nar.stepwise import stepwise_loss
from hooked_nar.train import TRAIN_SIZES
from hooked_nar.train_discrete import discrete_config

ALGORITHMS = ("bfs", "dijkstra")
BATCH_SIZE = 32
N = 16


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="d_model 64 only, 5 timed steps")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per config (10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per config (2)")
    parser.add_argument("--d-models", default=None, help="comma-separated (default 128,64)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    parser.add_argument("--modes", action="store_true", help="recurrent vs stepwise training")
    parser.add_argument("--time-to-target", nargs="+", metavar="RUN_DIR", default=None)
    parser.add_argument("--device", default="cpu", help="with --modes: cpu (default) or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.time_to_target:
        return time_to_target(args.time_to_target)
    if args.modes:
        return bench_modes(args.steps or 10, args.warmup, torch.device(args.device))
    steps = args.steps or (5 if args.quick else 10)
    if args.d_models:
        d_models = tuple(int(d) for d in args.d_models.split(","))
    else:
        d_models = (64,) if args.quick else (128, 64)
    rounds = args.warmup + steps

    # The same batches, in the same order, for every configuration of an algorithm.
    batches = {}
    for algorithm in ALGORITHMS:
        ds = CLRSDataset(algorithm, BATCH_SIZE * rounds, sizes=(N,), seed=0, progress=False)
        loader = CLRSLoader(ds, batch_size=BATCH_SIZE, shuffle=True, seed=0)
        batches[algorithm] = list(itertools.islice(loader, rounds))

    configs = []
    for algorithm, processor, d_model in itertools.product(ALGORITHMS, PROCESSORS, d_models):
        torch.manual_seed(0)
        if processor == "discrete":
            config = discrete_config(algorithm, d_model=d_model)
        else:
            config = NARConfig(algorithm, d_model=d_model, processor=processor)
        model = HookedNAR(config).train()
        # Build the hook points of every step these batches need, outside the timing.
        model.ensure_steps(max(int(b.length.max()) - 1 for b in batches[algorithm]))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        params = sum(p.numel() for p in model.parameters())
        configs.append({"algorithm": algorithm, "processor": processor, "d_model": d_model,
                        "model": model, "opt": optimizer, "params": params, "times": [],
                        "loss": []})

    def train_step(cfg, batch) -> float:
        model, optimizer = cfg["model"], cfg["opt"]
        t0 = perf_counter()
        loss = model(batch, return_type="loss")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        dt = perf_counter() - t0
        cfg["loss"].append(float(loss.detach()))
        return dt

    t_start = perf_counter()
    for r in range(rounds):
        shift = r % len(configs)
        for cfg in configs[shift:] + configs[:shift]:
            dt = train_step(cfg, batches[cfg["algorithm"]][r])
            if r >= args.warmup:
                cfg["times"].append(dt)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU; batch "
          f"{BATCH_SIZE} graphs x n={N}; {args.warmup} warm-up + {steps} timed steps per "
          "config, round-robin")
    for algorithm in ALGORITHMS:
        S = [int(b.length.max()) - 1 for b in batches[algorithm][args.warmup:]]
        print(f"{algorithm}: processor steps per batch {min(S)}-{max(S)} "
              f"(mean {statistics.fmean(S):.1f})")
    header = (f"{'algorithm':<9} {'processor':<14} {'d_model':>7} {'params':>8} "
              f"{'step ms (median)':>16} {'min ms':>8} {'steps/s':>8} {'graphs/s':>9} "
              f"{'loss first->last':>17}")
    print(header)
    print("-" * len(header))
    for cfg in configs:
        med = statistics.median(cfg["times"])
        print(f"{cfg['algorithm']:<9} {cfg['processor']:<14} {cfg['d_model']:>7d} "
              f"{cfg['params']:>8,d} {1e3 * med:>16.1f} {1e3 * min(cfg['times']):>8.1f} "
              f"{1 / med:>8.2f} {BATCH_SIZE / med:>9.1f} "
              f"{cfg['loss'][0]:>8.3f}->{cfg['loss'][-1]:<8.3f}")
    print(f"total {perf_counter() - t_start:.1f} s of stepping")


#: Training modes of ``--modes``: (config keywords, stepwise); ``None``: the discrete processor.
MODES = {
    "recurrent, supervised hints": ({}, False),
    "recurrent, own soft hints": ({"hint_mode": "encoded"}, False),
    "stepwise (true hints)": (
        {"hint_mode": "encoded", "hidden_recurrence": False, "hint_feedback": "hard"},
        True,
    ),
    "discrete (true hints)": (None, False),
}


def bench_modes(steps: int, warmup: int, device: torch.device) -> None:
    """Steps/s and trajectories/s of each training mode, round-robin over the same batches."""
    rounds = warmup + steps
    runs = []
    for algorithm in ("dijkstra", "dfs"):
        ds = CLRSDataset(algorithm, BATCH_SIZE * rounds, sizes=TRAIN_SIZES, seed=0, progress=False)
        loader = CLRSLoader(ds, BATCH_SIZE, shuffle=True, seed=0, device=device)
        batches = list(itertools.islice(loader, rounds))
        for mode, (kw, stepwise) in MODES.items():
            torch.manual_seed(0)
            config = discrete_config(algorithm) if kw is None else NARConfig(algorithm, 64, **kw)
            model = HookedNAR(config).to(device).train()
            model.ensure_steps(max(int(b.length.max()) - 1 for b in batches))
            runs.append({"algorithm": algorithm, "mode": mode, "model": model, "batches": batches,
                         "stepwise": stepwise, "times": [],
                         "opt": torch.optim.Adam(model.parameters(), lr=1e-3)})
    for r in range(rounds):
        shift = r % len(runs)
        for run in runs[shift:] + runs[:shift]:
            model, batch = run["model"], run["batches"][r]
            t0 = perf_counter()
            loss = stepwise_loss(model, batch) if run["stepwise"] else model(batch, "loss")
            run["opt"].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            run["opt"].step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r >= warmup:
                run["times"].append(perf_counter() - t0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {where}; mpnn "
          f"d_model 64 (discrete 16), batch {BATCH_SIZE} graphs, n in {TRAIN_SIZES}; {warmup} "
          f"warm-up + {steps} timed steps per mode, round-robin")
    header = f"{'algorithm':<9} {'mode':<28} {'step ms (median)':>16} {'steps/s':>8} {'traj/s':>8}"
    print(header)
    print("-" * len(header))
    for run in runs:
        med = statistics.median(run["times"])
        print(f"{run['algorithm']:<9} {run['mode']:<28} {1e3 * med:>16.1f} {1 / med:>8.2f} "
              f"{BATCH_SIZE / med:>8.1f}")


def time_to_target(run_dirs: list[str], targets=(0.9, 0.95, 0.99)) -> None:
    """CPU seconds (and steps) until each run's validation score first reached each target."""
    print(f"{'run':<50} " + " ".join(f"{'>= ' + str(t):>16}" for t in targets))
    for d in run_dirs:
        h = json.loads((Path(d) / "history.json").read_text())
        cpu = h.get("val_cpu_seconds") or [None] * len(h["val_step"])
        cells = []
        for target in targets:
            hit = next((i for i, v in enumerate(h["val_score"]) if v >= target), None)
            if hit is None:
                cells.append(f"{'not reached':>16}")
            else:
                secs = "?" if cpu[hit] is None else f"{cpu[hit]:.0f} s"
                cells.append(f"{secs + ' / ' + str(h['val_step'][hit]) + ' st':>16}")
        print(f"{str(d):<50} " + " ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
