"""``hooked-nar train-sae``: train an SAE on a checkpoint, evaluate it, find concept features.

    hooked-nar train-sae --algorithm bfs --output runs/sae/bfs          # train, evaluate, analyse
    hooked-nar train-sae --algorithm dijkstra --sweep                   # the short sweep
    hooked-nar train-sae --algorithm bfs --sae runs/sae/bfs/sae         # analyse a saved SAE

Writes ``report.md``, ``results.json``, the SAE (``sae/``, a SAELens directory) and PNGs.
Every argument is checked before any long work; errors are one line with exit code 2.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from hooked_nar.app.common import (
    PROG,
    UsageError,
    add_model_arguments,
    load_model,
    load_sae_checked,
    output_dir,
    resolve_algorithm,
    run_name,
)
from hooked_nar.app.sae_study import DEFAULT_RECIPE
from hooked_nar.atomic import write_json_atomic

HELP = (
    "train an SAE through SAELens, evaluate it and find concept features "
    "(see `hooked-nar train-sae --help`)"
)
DESCRIPTION = (
    "Train an SAE through SAELens on a checkpoint's hook_node_out (every step), "
    "evaluate it (reconstruction; accuracy recovered against mean ablation), find the "
    "feature of every concept (AUROC, F1, probes with shuffled controls), and write "
    "report.md, results.json, PNGs and the SAE (a SAELens directory)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar train-sae``."""
    add_model_arguments(p, "runs/sae/ALGORITHM")
    p.add_argument(
        "--sae",
        default=None,
        metavar="DIR",
        help="analyse this saved SAE (SAELens directory) instead of training one",
    )
    p.add_argument("--sweep", action="store_true", help="train the short sweep, keep its choice")
    p.add_argument(
        "--architecture",
        default=None,
        help=f"SAELens architecture (default: the algorithm's recipe, else "
        f"{DEFAULT_RECIPE['architecture']})",
    )
    p.add_argument("--d-sae", type=int, default=None, help="dictionary size (default: recipe)")
    p.add_argument(
        "--k", type=float, default=None, help="active features per row (default: recipe)"
    )
    p.add_argument(
        "--normalize",
        default=None,
        choices=["none", "layer_norm"],
        help="SAELens normalize_activations (default: recipe)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimiser steps per SAE (default: the recipe's, else 1000)",
    )
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: the recipe's, else 3e-3)"
    )
    p.add_argument("--batch-size", type=int, default=512, help="rows per step (default: 512)")
    p.add_argument("--num-graphs", type=int, default=512, help="training graphs (default: 512)")
    p.add_argument("--eval-graphs", type=int, default=64, help="held-out graphs (default: 64)")
    p.add_argument(
        "--eval-nodes", type=int, default=16, help="nodes per held-out graph (default: 16)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data and training (default: 0)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: fastest for these small matrices on a busy CPU)",
    )


def _recipe(args) -> dict:
    from hooked_nar.app.sae_study import recipe_for

    r = recipe_for(args.algorithm)
    for key, value in (
        ("architecture", args.architecture),
        ("d_sae", args.d_sae),
        ("k", args.k),
        ("normalize_activations", args.normalize),
    ):
        if value is not None:
            r[key] = int(value) if key == "k" and float(value).is_integer() else value
    if r.get("normalize_activations") == "none":
        r.pop("normalize_activations")
    return r


def run(args: argparse.Namespace) -> int:
    """``hooked-nar train-sae``: train (or sweep), evaluate, analyse and report; exit code."""
    import torch

    from hooked_nar.algorithms import ALGORITHMS
    from hooked_nar.app.sae_study import sae_study
    from hooked_nar.data import TRAIN_SIZES, CLRSDataset
    from sae.report import write_report
    from sae.training import ARCHITECTURES

    args.algorithm = resolve_algorithm(args.algorithm, args.checkpoint, default="bfs")
    if args.algorithm not in ALGORITHMS:
        raise UsageError(f"--algorithm {args.algorithm!r} is not a CLRS algorithm")
    recipe = _recipe(args)
    if recipe["architecture"] not in ARCHITECTURES:
        raise UsageError(
            f"--architecture {recipe['architecture']!r}; valid: {', '.join(ARCHITECTURES)}"
        )
    for flag, value in (
        ("--steps", 1 if args.steps is None else args.steps),
        ("--num-graphs", args.num_graphs),
        ("--eval-graphs", args.eval_graphs),
        ("--batch-size", args.batch_size),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    torch.set_num_threads(args.threads)
    from hooked_nar.model.checkpoint import default_checkpoint

    args.checkpoint = args.checkpoint or default_checkpoint(args.algorithm)
    model = load_model(args.checkpoint, args.algorithm)
    sae = None if args.sae is None else load_sae_checked(args.sae, model)
    out = output_dir(args.output or Path("runs/sae") / run_name(args.checkpoint, args.algorithm))

    t_start = time.perf_counter()
    say = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731
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
    name = args.checkpoint
    result = sae_study(
        model,
        train_data,
        eval_data,
        out,
        sae=sae,
        sweep=args.sweep,
        recipe=recipe,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        model_name=name,
        log=say,
    )
    ev = result.evaluation
    if result.sweep:
        from sae.sweep import describe

        for r in result.sweep:
            rec, d = r["reconstruction"], r["downstream"]["recovered"]
            say(
                f"sweep {describe(r)}: L0={rec['l0']:.2f} EV={rec['explained_variance']:.4f} "
                f"recovered out={d['output_accuracy']:.4f} hint={d['hint_accuracy']:.4f} "
                f"targets={'met' if r['meets_targets'] else 'missed'}"
            )
    rec, d = ev["reconstruction"], ev["downstream"]["recovered"]
    say(
        f"SAE {result.config}: EV {rec['explained_variance']:.4f}, L0 {rec['l0']:.2f}, recovered "
        f"output {d['output_accuracy']:.4f} / hint {d['hint_accuracy']:.4f}"
    )
    say(
        f"concepts with a feature at AUROC >= 0.95: {result.analysis['covered']} of "
        f"{result.analysis['scores'].bool_concepts}"
    )

    trained = (
        "given"
        if sae is not None
        else (
            f"{result.config}, {result.sae.cfg.metadata.training_steps} steps x "
            f"{args.batch_size} rows, SAELens SAETrainer"
        )
    )
    setup = {
        "checkpoint": name,
        "d_model": model.cfg.d_model,
        "hook": "hook_node_out, every step",
        "training store": "none (SAE given)"
        if result.store is None
        else f"{args.num_graphs} ER graphs, n in {TRAIN_SIZES}, seed {args.seed}: {len(result.store)} valid rows",
        "held-out store": f"{args.eval_graphs} ER graphs, n = {args.eval_nodes}: "
        f"{len(result.eval_store)} valid rows (all figures below are on these graphs)",
        "SAE": f"{trained}; saved to `sae/` (open with sae_lens.SAE.load_from_disk)",
        "targets met": "yes" if ev["meets_targets"] else "no",
        "wall time": f"{time.perf_counter() - t_start:.0f} s on {args.threads} CPU thread(s)",
    }
    write_report(
        out / "report.md",
        title=f"SAE on the {args.algorithm} HookedNAR",
        setup=setup,
        evaluation=ev,
        analysis=result.analysis,
        sweep=result.sweep,
        images=result.images,
        commands=[" ".join(shlex.quote(x) for x in [PROG, *args.argv])],
    )
    summary = {"algorithm": args.algorithm, **result.summary()}
    write_json_atomic(out / "results.json", summary)
    say(f"wrote {out / 'report.md'}")
    return 0
