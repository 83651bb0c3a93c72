"""``hooked-nar train``: train a HookedNAR into a folder (resumable; :func:`hooked_nar.train.train`).

    hooked-nar train --algorithm bfs --steps 2000 --out runs/train/bfs

Writes ``OUT/best`` and ``OUT/last`` (safetensors + JSON), ``OUT/history.json`` and
``OUT/learning_curve.png``; prints the best validation score as JSON.
"""

from __future__ import annotations

import argparse

from hooked_nar.app.common import UsageError, output_dir

HELP = "train a HookedNAR (see `hooked-nar train --help`)"
DESCRIPTION = "Train a HookedNAR on a CLRS algorithm (CPU friendly)."
PROCESSORS = ("mpnn", "triplet_gmpnn", "transformer")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar train``."""
    p.add_argument("--algorithm", required=True, help="CLRS algorithm (bfs, dijkstra, ...)")
    p.add_argument("--processor", default="mpnn", choices=PROCESSORS)
    p.add_argument("--d-model", type=int, default=128, help="hidden size (default: 128)")
    p.add_argument(
        "--hint-mode",
        default="encoded",
        choices=["none", "supervised", "encoded"],
        help="encoded (default): hints decoded, supervised and re-encoded from the model's own "
        "soft predictions (no teacher forcing unless --teacher-forcing); supervised: decoded "
        "and supervised only",
    )
    p.add_argument(
        "--teacher-forcing",
        type=float,
        default=0.0,
        help="probability of feeding true hints (default: 0)",
    )
    p.add_argument(
        "--global-readout",
        action="store_true",
        help="feed each step the max-pooled hidden state of its graph",
    )
    recipe = p.add_argument_group("recipe (see NARConfig and hooked_nar.train.train)")
    recipe.add_argument(
        "--generator",
        default="mixed",
        help="training graphs (a hooked_nar.data generator; default mixed: CLRS-30's sampler "
        "with p in 0.1..0.9, and sparse ER)",
    )
    recipe.add_argument(
        "--stepwise",
        action="store_true",
        help="all steps in parallel, each fed the true previous hints (implies --hint-mode "
        "encoded --no-hidden-recurrence --hint-feedback hard)",
    )
    recipe.add_argument(
        "--no-hidden-recurrence", action="store_true", help="steps do not carry a hidden state"
    )
    recipe.add_argument(
        "--hint-feedback", default=None, choices=["soft", "hard"], help="re-encoded hints"
    )
    recipe.add_argument(
        "--xavier-scalars", action="store_true", help="Xavier init of scalar hint encoders"
    )
    recipe.add_argument(
        "--randomise-positions", action="store_true", help="random position scalars per graph"
    )
    recipe.add_argument(
        "--grad-clip", type=float, default=1.0, help="gradient-norm clip (0: none; default 1)"
    )
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps (default: 2000)")
    p.add_argument("--batch-size", type=int, default=32, help="graphs per step (default: 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--num-train", type=int, default=4000, help="training graphs (default: 4000)")
    p.add_argument(
        "--eval-every", type=int, default=250, help="steps between validations (default: 250)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of model and data (default: 0)")
    p.add_argument(
        "--out", required=True, help="output directory (best/, last/, learning_curve.png)"
    )
    p.add_argument("--no-resume", action="store_true", help="start over even if out/last exists")


def _validate(args: argparse.Namespace) -> None:
    """One-line UsageError for the first bad argument, before any work."""
    import math

    from hooked_nar.algorithms import ALGORITHMS

    if args.algorithm not in ALGORITHMS:
        raise UsageError(
            f"--algorithm {args.algorithm!r} is not a CLRS algorithm; valid: {', '.join(ALGORITHMS)}"
        )
    for flag in ("d_model", "steps", "batch_size", "num_train", "eval_every"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive finite number, got {args.lr}")
    from hooked_nar.data.generators import GENERATORS

    if args.generator not in GENERATORS:
        raise UsageError(
            f"--generator {args.generator!r} is unknown; valid: {', '.join(GENERATORS)}"
        )
    if not (math.isfinite(args.grad_clip) and args.grad_clip >= 0):
        raise UsageError(f"--grad-clip must be a finite number >= 0, got {args.grad_clip}")
    if not 0.0 <= args.teacher_forcing <= 1.0:
        raise UsageError(f"--teacher-forcing must be in [0, 1], got {args.teacher_forcing}")


def run(args: argparse.Namespace) -> int:
    """``hooked-nar train``: validate, train, print the best validation score; exit code."""
    _validate(args)
    out = output_dir(args.out, "--out")

    import json

    try:
        history = _train(args, out)
    except ValueError as e:  # a refused resume (changed config or options) or a bad option
        raise UsageError(str(e)) from None
    best = max(history["val_score"], default=None)
    print(
        json.dumps(
            {
                "best_validation_score": best,
                "seconds": history["seconds"],
                "cpu_seconds": history.get("cpu_seconds"),
            }
        )
    )
    return 0


def _train(args: argparse.Namespace, out):
    """Train the config of ``args`` into ``out``; the training history."""
    from hooked_nar.model import NARConfig
    from hooked_nar.train import train

    cfg = NARConfig(
        args.algorithm,
        d_model=args.d_model,
        processor=args.processor,
        hint_mode="encoded" if args.stepwise else args.hint_mode,
        teacher_forcing=args.teacher_forcing,
        seed=args.seed,
        global_readout=args.global_readout,
        hidden_recurrence=not (args.stepwise or args.no_hidden_recurrence),
        hint_feedback=args.hint_feedback or ("hard" if args.stepwise else "soft"),
        xavier_scalars=args.xavier_scalars,
    )
    _, history = train(
        cfg,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        num_train=args.num_train,
        eval_every=args.eval_every,
        out=out,
        resume=not args.no_resume,
        data_seed=args.seed,
        generator=args.generator,
        stepwise=args.stepwise,
        randomise_positions=args.randomise_positions,
        grad_clip=args.grad_clip,
    )
    return history
