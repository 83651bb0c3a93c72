"""Stepwise training of a ``processor="discrete"`` model (DNAR's recipe) and its evaluation on
CLRS-30's out-of-distribution graphs.

Every step of a trajectory reads the true hints of its step and is supervised with the next
(``teacher_forcing = 1``), so the steps train independently. Training graphs: n in 4..16,
Erdos-Renyi with the edge probability drawn per graph from U(0.05, 0.9) half of the time and
the library's sparse ER otherwise. The best weights (by whole-graph accuracy on a held-out
mix of small sparse and n = 32 CLRS-dense graphs, then by loss) are written to ``OUT/best``;
``OUT/last`` lets a killed run resume (weights and step; the optimiser restarts).

    python -m hooked_nar.train_discrete --algorithm bfs --steps 500 --out runs/discrete/bfs
    python -m hooked_nar.train_discrete --evaluate bfs-discrete --num-nodes 64 160
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hooked_nar.algorithms import get_algorithm, run
from hooked_nar.data import CLRSDataset, collate
from hooked_nar.data.convert import trajectory_to_data
from hooked_nar.data.generators import GRAPH_CONVENTIONS, erdos_renyi
from hooked_nar.evaluate import evaluate
from hooked_nar.model import HookedNAR, NARConfig


def er_graphs(algorithm: str, num_graphs: int, n: int | tuple[int, ...], p, seed: int) -> list:
    """``num_graphs`` trajectories on Erdos-Renyi graphs with CLRS's conventions for
    ``algorithm`` and the ordered-pair probability ``p`` (a float or a range ``(lo, hi)``).

    CLRS-30's out-of-distribution test is ``p = 0.5``: it draws every ordered pair (the
    diagonal included) with probability p and, for undirected algorithms, keeps ``A *= A.T``;
    so an undirected edge exists with probability ``p**2`` and a self-loop with ``p``, which is
    what this draws. Weights are uniform in (0, 1] (CLRS: [0, 1)); sources uniform.
    """
    conv = GRAPH_CONVENTIONS[algorithm]
    needs_source = get_algorithm(algorithm).needs_source
    rng = np.random.default_rng(seed)
    sizes = (n,) if isinstance(n, int) else n
    out = []
    for _ in range(num_graphs):
        size = int(rng.choice(sizes))
        q = float(rng.uniform(*p)) if isinstance(p, tuple) else float(p)
        pair = q if conv.directed else q * q
        A = erdos_renyi(size, pair, directed=conv.directed, weighted=conv.weighted,
                        self_loops=q, rng=rng)
        source = int(rng.integers(size)) if needs_source else None
        out.append(trajectory_to_data(run(algorithm, A, source)))
    return out


def sparse_graphs(algorithm: str, num_graphs: int, n, seed: int) -> list:
    """The library's sparse ER graphs (``p ~ U(ln n / n, 3 ln n / n)``), as a list."""
    sizes = (n,) if isinstance(n, int) else tuple(n)
    ds = CLRSDataset(algorithm, num_graphs, sizes=sizes, seed=seed, progress=False)
    return [ds[i] for i in range(len(ds))]


def pointer_accuracy(model: HookedNAR, data: list, batch_size: int) -> tuple[float, float]:
    """(node accuracy of the output pointer, whole-graph accuracy) from ``evaluate``."""
    res = evaluate(model, data, batch_size=batch_size)
    (name,) = res["outputs"]
    return res["outputs"][name]["value"], res["graph_accuracy"]


def train(args: argparse.Namespace) -> Path:
    """Train (or resume) and return ``OUT/best``."""
    torch.set_num_threads(1)
    out = Path(args.out)
    cfg = NARConfig(args.algorithm, d_model=args.d_model, processor="discrete",
                    hint_mode="supervised", teacher_forcing=1.0, seed=args.seed)
    model = HookedNAR(cfg)
    step, seconds, best_key = 0, 0.0, (-1.0, -float("inf"))
    if (out / "last" / "config.json").is_file():
        last = HookedNAR.from_pretrained(str(out / "last"), processor="discrete",
                                         algorithm=args.algorithm, d_model=args.d_model)
        model.load_state_dict(last.state_dict())
        step, seconds = last.metadata["step"], last.metadata["train_seconds"]
        best_key = tuple(last.metadata["best_key"])
        print(f"resumed at step {step}")
    half = args.pool // 2
    pool = (er_graphs(args.algorithm, half, tuple(range(4, 17)), (0.05, 0.9), args.seed)
            + sparse_graphs(args.algorithm, args.pool - half, range(4, 17), args.seed + 1))
    held_out = (sparse_graphs(args.algorithm, 64, 16, 10_000 + args.seed)
                + er_graphs(args.algorithm, 16, 32, 0.5, 20_000 + args.seed))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed + step)
    bar = tqdm(total=args.steps, initial=step, desc=f"train {args.algorithm}-discrete", mininterval=10)
    while step < args.steps:
        start = time.perf_counter()
        model.train()
        batch = collate([pool[i] for i in rng.choice(len(pool), args.batch_size, replace=False)])
        loss = model(batch, return_type="loss")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seconds += time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if step % args.eval_every == 0 or step == args.steps:
            node_acc, graph_acc = pointer_accuracy(model, held_out, 16)
            key = (graph_acc, -loss.item())
            meta = {"step": step, "train_seconds": round(seconds, 1), "loss": loss.item(),
                    "held_out_node_accuracy": node_acc, "held_out_graph_accuracy": graph_acc,
                    "train_command": "python -m hooked_nar.train_discrete "
                    f"--algorithm {args.algorithm} --steps {args.steps} --out {args.out}"}
            tqdm.write(json.dumps(meta))
            if key > best_key:
                best_key = key
                model.save_pretrained(out / "best", {**meta, "best_key": list(best_key)})
            model.save_pretrained(out / "last", {**meta, "best_key": list(best_key)})
    bar.close()
    return out / "best"


DISTRIBUTIONS = ("clrs", "sparse")


def evaluate_checkpoint(name: str, sizes: list[int], num_graphs: int, seed: int,
                        distributions=DISTRIBUTIONS) -> dict:
    """Pointer node / graph accuracy of checkpoint ``name`` on CLRS's ER p = 0.5 (``clrs``)
    and the library's sparse ER (``sparse``)."""
    torch.set_num_threads(1)
    model = HookedNAR.from_pretrained(name)
    alg = model.cfg.algorithm
    makers = {
        "clrs": ("ER p=0.5", lambda n: er_graphs(alg, num_graphs, n, 0.5, seed + n)),
        "sparse": ("sparse ER", lambda n: sparse_graphs(alg, num_graphs, n, seed + n)),
    }
    results = {}
    for n in sizes:
        for dist, make in (makers[d] for d in distributions):
            start = time.perf_counter()
            node_acc, graph_acc = pointer_accuracy(model, make(n), 1 if n > 200 else 4)
            results[f"{dist} n={n}"] = (node_acc, graph_acc)
            print(f"{name} {dist} n={n}: node {node_acc:.2%} graph {graph_acc:.2%} "
                  f"({num_graphs} graphs, {time.perf_counter() - start:.0f} s)", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    """Command line: train, or ``--evaluate CHECKPOINT``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", default="bfs")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=16)
    p.add_argument("--pool", type=int, default=2000, help="training graphs drawn up front")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--evaluate", metavar="CHECKPOINT", default=None)
    p.add_argument("--num-nodes", type=int, nargs="+", default=[64, 160])
    p.add_argument("--num-graphs", type=int, default=32)
    p.add_argument("--distributions", nargs="+", choices=DISTRIBUTIONS, default=DISTRIBUTIONS)
    args = p.parse_args(argv)
    if args.evaluate:
        evaluate_checkpoint(args.evaluate, args.num_nodes, args.num_graphs, 4321,
                            args.distributions)
        return
    if args.steps <= 0 or args.batch_size <= 0 or args.pool < 2 * args.batch_size:
        p.error("--steps and --batch-size must be positive and --pool >= 2 * --batch-size")
    args.out = args.out or f"runs/discrete/{args.algorithm}"
    train(args)


if __name__ == "__main__":
    main()
