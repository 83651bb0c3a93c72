"""Training throughput of HookedNAR on CPU: optimizer steps per second.

For each processor (``mpnn``, ``triplet_gmpnn``, ``transformer``), d_model 128 and 64, and
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

Run (about 2 minutes on 2 busy cores; ``--quick``: d_model 64 only, 5 timed steps):

    .venv/bin/python benchmarks/bench_train.py
    .venv/bin/python benchmarks/bench_train.py --quick
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from time import perf_counter

import torch

from hooked_nar.data import CLRSDataset, CLRSLoader
from hooked_nar.model import HookedNAR, NARConfig

PROCESSORS = ("mpnn", "triplet_gmpnn", "transformer")
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
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
        model = HookedNAR(NARConfig(algorithm, d_model=d_model, processor=processor)).train()
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


if __name__ == "__main__":
    sys.exit(main())
