"""Train, evaluate and analyse an SAE on a shipped HookedNAR checkpoint, on CPU in minutes.

    python examples/train_sae.py --algorithm bfs --output runs/sae/bfs
    python examples/train_sae.py --algorithm dijkstra --output runs/sae/dijkstra --sweep

Steps: collect ``hook_node_out`` at every step over training graphs (valid rows only) ->
train SAELens SAEs (one config, or the short sweep of :mod:`sae.sweep`) -> on held-out
graphs: reconstruction, downstream accuracy recovered against mean ablation, feature x
concept AUROC / F1, linear probes with shuffled controls, top examples -> ``report.md``,
``results.json``, the SAE (a SAELens directory, ``sae/``), and PNGs (AUROC heatmap, and for
every concept its best feature drawn on a graph beside the concept, step by step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

# run from a checkout without (re)installing: the repository root comes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if hasattr(x, "as_dict"):
        return _jsonable(x.as_dict())
    return x


def _pick_graph(index, min_steps: int = 3) -> int:
    """A held-out graph with several steps and few nodes (readable pictures)."""
    best, key = int(index.graph[0]), None
    for g in index.graph.unique().tolist():
        sel = index.graph == g
        steps, nodes = int(index.step[sel].unique().numel()), int(index.node[sel].max()) + 1
        k = (steps >= min_steps, -abs(nodes - 9), min(steps, 8))
        if key is None or k > key:
            best, key = g, k
    return best


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--algorithm", default="bfs", help="shipped checkpoint name (bfs, dijkstra, ...)"
    )
    p.add_argument(
        "--checkpoint", default=None, help="checkpoint directory (default: the shipped one)"
    )
    p.add_argument("--output", default=None, help="output directory (default runs/sae/<algorithm>)")
    p.add_argument(
        "--sweep", action="store_true", help="run the short sweep and keep the chosen SAE"
    )
    p.add_argument("--architecture", default="topk")
    p.add_argument(
        "--normalize",
        default="none",
        choices=["none", "layer_norm"],
        help="SAELens normalize_activations of the single SAE",
    )
    p.add_argument("--d-sae", type=int, default=512)
    p.add_argument("--k", type=float, default=16)
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps per SAE")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--num-graphs", type=int, default=512, help="training graphs for the store")
    p.add_argument("--eval-graphs", type=int, default=64, help="held-out graphs (n = --eval-nodes)")
    p.add_argument("--eval-nodes", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is fastest for these small matrices on a busy CPU)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hooked_nar.data import TRAIN_SIZES, CLRSDataset
    from hooked_nar.model import HookedNAR
    from sae import ActivationStore, analyse_sae, evaluate_sae, save_sae, train_sae, write_report
    from sae.plots import auroc_heatmap, feature_on_graph, graph_values
    from sae.sweep import DEFAULT_GRID, choose, describe, meets_targets, run_sweep

    out = Path(args.output or f"runs/sae/{args.algorithm}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    say = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731

    model = HookedNAR.from_pretrained(args.checkpoint or args.algorithm, algorithm=args.algorithm)
    train_data = CLRSDataset(
        args.algorithm, args.num_graphs, sizes=TRAIN_SIZES, seed=args.seed, progress=False
    )
    eval_data = CLRSDataset(
        args.algorithm,
        args.eval_graphs,
        sizes=(args.eval_nodes,),
        seed=args.seed + 10_000,
        progress=False,
    )
    name = args.checkpoint or args.algorithm
    store = ActivationStore.from_model(model, train_data, model_name=name)
    eval_store = ActivationStore.from_model(model, eval_data, model_name=name)
    say(f"stores: {len(store)} training rows, {len(eval_store)} held-out rows")

    sweep = None
    if args.sweep:
        sweep, saes = run_sweep(
            store,
            model,
            eval_data,
            DEFAULT_GRID,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            eval_store=eval_store,
        )
        for r in sweep:
            rec, d = r["reconstruction"], r["downstream"]["recovered"]
            say(
                f"sweep {describe(r)}: L0={rec['l0']:.2f} "
                f"EV={rec['explained_variance']:.4f} recovered out={d['output_accuracy']:.4f} "
                f"hint={d['hint_accuracy']:.4f} targets={'met' if r['meets_targets'] else 'missed'}"
            )
        chosen = choose(sweep)
        sae, evaluation = saes[chosen], sweep[chosen]
        config = describe(sweep[chosen])
    else:
        sae = train_sae(
            store,
            args.architecture,
            d_sae=args.d_sae,
            k=args.k,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            normalize_activations=args.normalize,
        )
        evaluation = evaluate_sae(sae, eval_store, model, eval_data)
        evaluation["meets_targets"] = meets_targets(evaluation)
        evaluation.update(
            architecture=args.architecture,
            d_sae=args.d_sae,
            k=args.k,
            options={"normalize_activations": args.normalize},
        )
        config = describe(evaluation)
    say(f"SAE {config}: {json.dumps(_jsonable(evaluation['reconstruction']))}")
    say(f"recovered: {json.dumps(evaluation['downstream']['recovered'])}")
    save_sae(sae, out / "sae")

    analysis = analyse_sae(sae, eval_store, seed=args.seed)
    scores = analysis["scores"]
    images = {"Feature x concept AUROC": "auroc_heatmap.png"}
    auroc_heatmap(scores, out / "auroc_heatmap.png", title=f"{args.algorithm}: {config}")
    rows, index, labels = eval_store.for_analysis()
    graph = _pick_graph(index)
    for c in scores.bool_concepts:
        f = analysis["best"][c]["feature"]
        fv, cv, steps = graph_values(index, analysis["acts"], graph, f, c, labels)
        png = f"feature_{f}_{c}.png"
        feature_on_graph(
            eval_data[graph],
            fv[:8],
            cv[:8],
            steps[:8],
            out / png,
            f,
            c,
            title=f"{args.algorithm}, held-out graph {graph}: feature {f} "
            f"(AUROC {analysis['best'][c]['auroc']:.3f}) vs {c}",
        )
        images[f"Feature {f} vs `{c}` on held-out graph {graph}"] = png
    say(
        f"concepts with a feature at AUROC >= 0.95: {analysis['covered']} of {scores.bool_concepts}"
    )

    command = "python examples/train_sae.py " + " ".join(sys.argv[1:] if argv is None else argv)
    setup = {
        "checkpoint": name,
        "d_model": model.cfg.d_model,
        "hook": "hook_node_out, every step",
        "training store": f"{args.num_graphs} ER graphs, n in {TRAIN_SIZES}, seed {args.seed}: "
        f"{len(store)} valid rows",
        "held-out store": f"{args.eval_graphs} ER graphs, n = {args.eval_nodes}: {len(eval_store)} "
        "valid rows (all figures below are on these graphs)",
        "SAE": f"{config}, {args.steps} steps x {args.batch_size} rows, lr {args.lr}, SAELens "
        f"SAETrainer; saved to `sae/` (open with sae_lens.SAE.load_from_disk)",
        "targets met": "yes" if evaluation["meets_targets"] else "no",
        "wall time": f"{time.perf_counter() - t_start:.0f} s on {args.threads} CPU thread(s)",
    }
    write_report(
        out / "report.md",
        title=f"SAE on the {args.algorithm} HookedNAR",
        setup=setup,
        evaluation=evaluation,
        analysis=analysis,
        sweep=sweep,
        images=images,
        commands=[command],
    )
    summary = {
        "algorithm": args.algorithm,
        "config": config,
        "evaluation": evaluation,
        "best": analysis["best"],
        "covered": analysis["covered"],
        "monosemantic": analysis["monosemantic"],
        "probe_only": analysis["probe_only"],
        "probes": analysis["probes"],
        "sweep": sweep,
    }
    (out / "results.json").write_text(json.dumps(_jsonable(summary), indent=1))
    say(f"wrote {out / 'report.md'}")
    return summary


if __name__ == "__main__":
    main()
