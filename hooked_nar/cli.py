"""The ``hooked-nar`` command line (also ``python -m hooked_nar``).

    hooked-nar study --algorithm bfs                 # the whole study -> runs/bfs/report.md
    hooked-nar study --algorithm bfs --quick         # a few small graphs, under a minute
    hooked-nar train --algorithm bfs --out ckpt/bfs  # -> hooked_nar.train
    hooked-nar evaluate --checkpoint bfs             # -> hooked_nar.evaluate
    hooked-nar collect --checkpoint bfs -o acts/bfs  # -> sae.cli (an ActivationStore)
    hooked-nar train-sae --algorithm bfs             # -> sae.cli (SAE + concept features)
    hooked-nar patch --algorithm bfs --sae DIR       # -> patching.cli (causal tests)

This module holds the argument parsing, the checks of every argument (one-line errors,
exit code 2, before any long work) and the dispatch to the subcommands; the ``study``
pipeline and its stages live in :mod:`hooked_nar.study`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from hooked_nar.study import (
    CAUSAL_DEFAULTS,
    CAUSAL_QUICK,
    DEFAULTS,
    PROG,
    QUICK,
    SAE_DEFAULTS,
    SAE_QUICK,
    UsageError,
    print_summary,
    run_study,
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``hooked-nar study: error: ...``) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# ---------------------------------------------------------------------------- validation


def _checkpoint(name_or_dir: str) -> tuple[Path, str | None]:
    """``(directory, algorithm)`` of a checkpoint directory or shipped name (reads JSON only)."""
    from hooked_nar.model.checkpoint import checkpoint_config, resolve_checkpoint

    try:
        path = resolve_checkpoint(name_or_dir)
        return path, checkpoint_config(path).get("algorithm")
    except ValueError as e:
        raise UsageError(f"--checkpoint: {e}") from None


def check_output_dir(path: Path) -> None:
    """Create ``path`` if needed and prove it writable by creating a temporary file in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UsageError(
            f"--output {str(path)!r} cannot be created or written ({reason})"
        ) from None


def _validate_study(args: argparse.Namespace) -> None:
    """Fill defaults and check every argument; raises UsageError before any long work."""
    from hooked_nar.algorithms import ALGORITHMS
    from hooked_nar.model.checkpoint import shipped_checkpoints

    if args.algorithm not in ALGORITHMS:
        raise UsageError(
            f"--algorithm {args.algorithm!r} is not a CLRS algorithm; valid: "
            f"{', '.join(ALGORITHMS)}"
        )
    if args.quick:
        preset = {**QUICK, **SAE_QUICK, **CAUSAL_QUICK}
    else:
        preset = {**DEFAULTS, **SAE_DEFAULTS, **CAUSAL_DEFAULTS}
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    checked = (
        "num_graphs",
        "num_nodes",
        "batch_size",
        "sae_graphs",
        "sae_steps",
        "sae_eval_graphs",
        "causal_graphs",
        "num_null",
    )
    for key, low in [("seed", 0)] + [(k, 1) for k in checked]:
        if getattr(args, key) is not None and getattr(args, key) < low:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} must be >= {low}, got {getattr(args, key)}")
    args.checkpoint_path, args.checkpoint_source = None, None
    if args.checkpoint is not None:
        path, ck_alg = _checkpoint(args.checkpoint)
        if ck_alg != args.algorithm:
            raise UsageError(
                f"--checkpoint {args.checkpoint!r} is a {ck_alg} model, not {args.algorithm}"
            )
        args.checkpoint_path, args.checkpoint_source = path, "given"
    elif args.algorithm in shipped_checkpoints():
        path, ck_alg = _checkpoint(args.algorithm)
        if ck_alg == args.algorithm:
            args.checkpoint_path, args.checkpoint_source = path, "shipped"
    args.sae_model = None
    if args.sae is not None:
        if args.checkpoint_path is None:
            raise UsageError(f"--sae needs a checkpoint of {args.algorithm} to run in")
        from hooked_nar.model import HookedNAR
        from sae.cli import load_sae_checked

        model = HookedNAR.from_pretrained(args.checkpoint_path)
        args.sae_model = load_sae_checked(args.sae, model)
    from hooked_nar.data.generators import GENERATORS

    if args.generator not in GENERATORS:
        raise UsageError(
            f"--generator {args.generator!r} is unknown; valid: {', '.join(GENERATORS)}"
        )
    # last, so that a bad argument never leaves an empty folder behind
    args.output = Path(args.output if args.output is not None else Path("runs") / args.algorithm)
    check_output_dir(args.output)


def cmd_study(args: argparse.Namespace) -> int:
    """``hooked-nar study``: validate, run every stage, print the summary; exit code."""
    _validate_study(args)
    ctx = run_study(args)
    if not args.quiet:
        print_summary(ctx)
    return 0


# ----------------------------------------------------------------------------------- main


def _forward(target: str, argv: list[str]) -> int:
    import importlib

    module, _, function = target.partition(":")
    code = getattr(importlib.import_module(module), function)(argv)
    return code if isinstance(code, int) else 0


#: Subcommands whose options live in their own module: name -> ("module:function", help).
FORWARDED = {
    "train": ("hooked_nar.train:main", "train a HookedNAR (see `hooked-nar train --help`)"),
    "evaluate": (
        "hooked_nar.evaluate:main",
        "CLRS metrics of a checkpoint, in and out of distribution "
        "(see `hooked-nar evaluate --help`)",
    ),
    "collect": (
        "sae.cli:collect_main",
        "store a checkpoint's per-step activations with concept labels as safetensors "
        "shards (see `hooked-nar collect --help`)",
    ),
    "train-sae": (
        "sae.cli:train_sae_main",
        "train an SAE through SAELens, evaluate it and find concept features "
        "(see `hooked-nar train-sae --help`)",
    ),
    "patch": (
        "patching.cli:patch_main",
        "causal tests of concept units: ablation and steering beside a null "
        "(see `hooked-nar patch --help`)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``hooked-nar`` parser: ``study`` and the forwarded subcommands."""
    parser = _Parser(
        prog=PROG,
        description="Mechanistic interpretability for neural algorithmic reasoners.",
        epilog="Run `hooked-nar COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    s = sub.add_parser(
        "study",
        help="the whole concept study: data, model, SAE, concept features, causal tests",
        description=(
            "Study one CLRS algorithm end to end. Stages: data (generate graphs, dataset "
            "statistics, a trajectory figure); model (evaluate the checkpoint, describe the "
            "run_with_cache activations, a prediction-vs-truth figure); sae (train an SAE on "
            "hook_node_out through SAELens, evaluate it, find the feature of every concept, "
            "beside linear probes); causal (ablate and steer every concept feature beside "
            "frequency-matched features and random directions). The last three need a "
            "checkpoint (shipped for bfs, dfs, dijkstra, mst_prim, bellman_ford). Writes "
            "OUTPUT/report.md, OUTPUT/results.json, the SAE (OUTPUT/sae) and PNG figures, each "
            "atomically, after every stage."
        ),
    )
    s.add_argument(
        "--algorithm",
        required=True,
        metavar="NAME",
        help="CLRS algorithm: bfs, dfs, topological_sort, articulation_points, bridges, "
        "strongly_connected_components, mst_kruskal, mst_prim, bellman_ford, "
        "dijkstra, dag_shortest_paths, floyd_warshall",
    )
    s.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        default=None,
        help="folder for report.md, results.json and figures (default: runs/ALGORITHM)",
    )
    s.add_argument(
        "--checkpoint",
        metavar="NAME_OR_DIR",
        default=None,
        help="shipped checkpoint name or checkpoint directory; must be a model of "
        "ALGORITHM (default: the shipped checkpoint of ALGORITHM, if any)",
    )
    s.add_argument(
        "--num-graphs",
        "-k",
        type=int,
        default=None,
        metavar="K",
        help=f"graphs to generate (default: {DEFAULTS['num_graphs']}; "
        f"--quick: {QUICK['num_graphs']})",
    )
    s.add_argument(
        "--num-nodes",
        "-n",
        type=int,
        default=None,
        metavar="N",
        help=f"nodes per graph (default: {DEFAULTS['num_nodes']}; --quick: {QUICK['num_nodes']})",
    )
    s.add_argument(
        "--generator",
        default="er",
        help="graph generator: er, ws, delaunay, grid, tree, path, complete (default: er)",
    )
    s.add_argument(
        "--seed",
        type=int,
        default=0,
        help="dataset seed; graph i depends only on (seed, i) (default: 0)",
    )
    s.add_argument(
        "--batch-size", type=int, default=32, help="graphs per evaluation batch (default: 32)"
    )
    s.add_argument(
        "--sae",
        metavar="DIR",
        default=None,
        help="a SAELens SAE directory trained on this checkpoint's hook_node_out, used "
        "instead of training one (default: train one through SAELens)",
    )
    s.add_argument(
        "--sae-steps",
        type=int,
        default=None,
        metavar="STEPS",
        help="SAE optimiser steps (default: the algorithm's recipe, sae.pipeline.RECIPES; "
        f"--quick: {SAE_QUICK['sae_steps']})",
    )
    s.add_argument(
        "--sae-graphs",
        type=int,
        default=None,
        metavar="K",
        help=f"graphs whose activations train the SAE (default: "
        f"{SAE_DEFAULTS['sae_graphs']}; --quick: {SAE_QUICK['sae_graphs']})",
    )
    s.add_argument(
        "--sae-eval-graphs",
        type=int,
        default=None,
        metavar="K",
        help=f"of the study's graphs, how many the SAE is evaluated and analysed on "
        f"(default: {SAE_DEFAULTS['sae_eval_graphs']}; --quick: "
        f"{SAE_QUICK['sae_eval_graphs']})",
    )
    s.add_argument(
        "--causal-graphs",
        type=int,
        default=None,
        metavar="K",
        help=f"fresh graphs the concept features are ablated and steered on (default: "
        f"{CAUSAL_DEFAULTS['causal_graphs']}; --quick: {CAUSAL_QUICK['causal_graphs']})",
    )
    s.add_argument(
        "--num-null",
        type=int,
        default=None,
        metavar="K",
        help="null units per kind (uninformative feature subsets, random subspaces) of each "
        "causal test (default: enough for the run's Holm correction; --quick: "
        f"{CAUSAL_QUICK['num_null']}, too few for a verdict)",
    )
    s.add_argument(
        "--quick", action="store_true", help="few small graphs, for a smoke test in seconds"
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="print nothing but errors (no progress, no summary)",
    )
    s.set_defaults(func=cmd_study)
    for name, (_, helptext) in FORWARDED.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hooked-nar`` and ``python -m hooked_nar``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:
        try:
            return _forward(FORWARDED[argv[0]][0], argv[1:])
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    args.argv = argv
    try:
        return args.func(args)
    except UsageError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
