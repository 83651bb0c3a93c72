"""``hooked-nar train``: train a HookedNAR into a folder (resumable; :func:`hooked_nar.train.train`,
or :func:`hooked_nar.train_discrete.train_discrete` for ``--processor discrete``).

    hooked-nar train --algorithm bfs --steps 2000 --out runs/train/bfs
    hooked-nar train --processor discrete --algorithm bfs --steps 600 --out runs/discrete/bfs

Writes ``OUT/best`` and ``OUT/last`` (safetensors + JSON), ``OUT/history.json`` and
``OUT/learning_curve.png``; prints the best validation score as JSON.
"""

from __future__ import annotations

import argparse

from hooked_nar.app.common import UsageError, output_dir

HELP = "train a HookedNAR (see `hooked-nar train --help`)"
DESCRIPTION = "Train a HookedNAR on a CLRS algorithm (CPU friendly)."

#: Defaults of the options that depend on the processor: (other processors, ``discrete``).
PROCESSOR_DEFAULTS = {
    "d_model": (128, 16),
    "steps": (2000, 600),
    "lr": (1e-3, 3e-3),
    "num_train": (4000, 2000),
    "eval_every": (250, 100),
}
#: Options of the recurrent recipe that a discrete model (trained stepwise on true hints)
#: does not take, with their defaults.
NOT_DISCRETE = {
    "hint_mode": "encoded",
    "teacher_forcing": 0.0,
    "global_readout": False,
    "generator": "mixed",
    "stepwise": False,
    "no_hidden_recurrence": False,
    "hint_feedback": None,
    "xavier_scalars": False,
    "randomise_positions": False,
    "grad_clip": 1.0,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar train``."""
    p.add_argument("--algorithm", required=True, help="CLRS algorithm (bfs, dijkstra, ...)")
    p.add_argument(
        "--processor",
        default="mpnn",
        help="a processor of hooked_nar.model.processors (default: mpnn; discrete: DNAR's "
        "discrete states, trained stepwise on the true hints, without the recipe options)",
    )
    p.add_argument(
        "--d-model", type=int, default=None, help="hidden size (default: 128; discrete 16)"
    )
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
    p.add_argument(
        "--steps", type=int, default=None, help="optimiser steps (default: 2000; discrete 600)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="graphs per step (default: 32)")
    p.add_argument(
        "--lr", type=float, default=None, help="Adam learning rate (default: 1e-3; discrete 3e-3)"
    )
    p.add_argument(
        "--num-train", type=int, default=None, help="training graphs (default: 4000; discrete 2000)"
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="steps between validations (default: 250; discrete 100)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of model and data (default: 0)")
    p.add_argument(
        "--device",
        default="cpu",
        help="where to train: cpu (default), cuda, cuda:1, ... (checkpoints load anywhere)",
    )
    p.add_argument(
        "--out", required=True, help="output directory (best/, last/, learning_curve.png)"
    )
    p.add_argument("--no-resume", action="store_true", help="start over even if out/last exists")


def _validate(args: argparse.Namespace) -> None:
    """One-line UsageError for the first bad argument, before any work; fills in the
    defaults that depend on ``--processor``."""
    import math

    from hooked_nar.algorithms import ALGORITHMS
    from hooked_nar.model.processors import PROCESSORS

    if args.algorithm not in ALGORITHMS:
        raise UsageError(
            f"--algorithm {args.algorithm!r} is not a CLRS algorithm; valid: {', '.join(ALGORITHMS)}"
        )
    if args.processor not in PROCESSORS:
        raise UsageError(
            f"--processor {args.processor!r} is unknown; valid: {', '.join(PROCESSORS)}"
        )
    discrete = args.processor == "discrete"
    if discrete:
        for flag, default in NOT_DISCRETE.items():
            if getattr(args, flag) != default:
                raise UsageError(
                    f"--{flag.replace('_', '-')} does not apply to --processor discrete "
                    "(it trains stepwise on the true hints)"
                )
    for flag, defaults in PROCESSOR_DEFAULTS.items():
        if getattr(args, flag) is None:
            setattr(args, flag, defaults[discrete])
    for flag in ("d_model", "steps", "batch_size", "num_train", "eval_every"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    _check_device(args.device)
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


def _check_device(device: str) -> None:
    """UsageError unless ``device`` names a torch device this machine has."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, ...)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device!r}: this machine has no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device!r}: only cpu and cuda are supported")


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

    common = {  # the loop's options every processor shares
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "num_train": args.num_train,
        "eval_every": args.eval_every,
        "out": out,
        "resume": not args.no_resume,
        "data_seed": args.seed,
        "device": args.device,
    }
    if args.processor == "discrete":
        from hooked_nar.train_discrete import discrete_config, train_discrete

        config = discrete_config(args.algorithm, d_model=args.d_model, seed=args.seed)
        _, history = train_discrete(config, **common)
        return history
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
        **common,
        generator=args.generator,
        stepwise=args.stepwise,
        randomise_positions=args.randomise_positions,
        grad_clip=args.grad_clip,
    )
    return history
