"""``hooked-nar study``: one CLRS algorithm end to end (the stages: :mod:`hooked_nar.app.study`).

    hooked-nar study --algorithm bfs                 # the whole study -> runs/bfs/report.md
    hooked-nar study --algorithm bfs --quick         # a few small graphs, under a minute

This module holds the options and the checks of every argument (one-line errors, exit code
2, before any long work).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hooked_nar.app.common import (
    UsageError,
    check_output_dir,
    load_sae_checked,
    resolve_algorithm,
    run_name,
)
from hooked_nar.app.study import (
    CAUSAL_DEFAULTS,
    CAUSAL_QUICK,
    DEFAULTS,
    QUICK,
    SAE_DEFAULTS,
    SAE_QUICK,
)

HELP = "the whole concept study: data, model, SAE, concept features, causal tests"
DESCRIPTION = (
    "Study one CLRS algorithm end to end. Stages: data (generate graphs, dataset "
    "statistics, a trajectory figure); model (evaluate the checkpoint, describe the "
    "run_with_cache activations, a prediction-vs-truth figure); sae (train an SAE on "
    "hook_node_out through SAELens, evaluate it, find the feature of every concept, "
    "beside linear probes); causal (ablate and steer every concept feature beside "
    "frequency-matched features and random directions); with --circuit, circuit "
    "(hooked-nar circuit --quick on the checkpoint). The model, sae, causal and circuit stages need a "
    "checkpoint (shipped for bfs, dfs, dijkstra, mst_prim, bellman_ford, and the discrete "
    "processor's ALGORITHM-discrete ones, e.g. --checkpoint dijkstra-discrete). Writes "
    "OUTPUT/report.md, OUTPUT/results.json, the SAE (OUTPUT/sae) and PNG figures, each "
    "atomically, after every stage."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar study``."""
    parser.add_argument(
        "--algorithm",
        default=None,
        metavar="NAME",
        help="(required unless --checkpoint names a model: its algorithm is the default) "
        "CLRS algorithm: bfs, dfs, topological_sort, articulation_points, bridges, "
        "strongly_connected_components, mst_kruskal, mst_prim, bellman_ford, "
        "dijkstra, dag_shortest_paths, floyd_warshall",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        default=None,
        help="folder for report.md, results.json and figures (default: runs/ALGORITHM, or "
        "runs/NAME for a shipped checkpoint NAME); "
        "an earlier study's report, results, figures and SAE there are replaced",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="NAME_OR_DIR",
        default=None,
        help="shipped checkpoint name or checkpoint directory; must be a model of "
        "ALGORITHM (default: the best shipped checkpoint of ALGORITHM, if any: its discrete "
        "one where shipped)",
    )
    parser.add_argument(
        "--num-graphs",
        "-k",
        type=int,
        default=None,
        metavar="K",
        help=f"graphs to generate (default: {DEFAULTS['num_graphs']}; "
        f"--quick: {QUICK['num_graphs']})",
    )
    parser.add_argument(
        "--num-nodes",
        "-n",
        type=int,
        default=None,
        metavar="N",
        help=f"nodes per graph (default: {DEFAULTS['num_nodes']}; --quick: {QUICK['num_nodes']})",
    )
    parser.add_argument(
        "--generator",
        default="er",
        help="graph generator: er, ws, delaunay, grid, tree, path, complete (default: er)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="dataset seed; graph i depends only on (seed, i) (default: 0)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="graphs per evaluation batch (default: 32)"
    )
    parser.add_argument(
        "--sae",
        metavar="DIR",
        default=None,
        help="a SAELens SAE directory trained on this checkpoint's hook_node_out, used "
        "instead of training one (default: train one through SAELens)",
    )
    parser.add_argument(
        "--sae-steps",
        type=int,
        default=None,
        metavar="STEPS",
        help="SAE optimiser steps (default: the algorithm's recipe, hooked_nar.app.sae_study.RECIPES; "
        f"--quick: {SAE_QUICK['sae_steps']})",
    )
    parser.add_argument(
        "--sae-graphs",
        type=int,
        default=None,
        metavar="K",
        help=f"graphs whose activations train the SAE (default: "
        f"{SAE_DEFAULTS['sae_graphs']}; --quick: {SAE_QUICK['sae_graphs']})",
    )
    parser.add_argument(
        "--sae-eval-graphs",
        type=int,
        default=None,
        metavar="K",
        help=f"of the study's graphs, how many the SAE is evaluated and analysed on "
        f"(default: {SAE_DEFAULTS['sae_eval_graphs']}; --quick: "
        f"{SAE_QUICK['sae_eval_graphs']})",
    )
    parser.add_argument(
        "--causal-graphs",
        type=int,
        default=None,
        metavar="K",
        help=f"fresh graphs the concept units are ablated and steered on (default: "
        f"{CAUSAL_DEFAULTS['causal_graphs']}; --quick: {CAUSAL_QUICK['causal_graphs']})",
    )
    parser.add_argument(
        "--num-null",
        type=int,
        default=None,
        metavar="K",
        help="null units per kind (uninformative feature subsets, random subspaces) of each "
        "causal test (default: enough for the run's Holm correction; --quick: "
        f"{CAUSAL_QUICK['num_null']}, too few for a verdict)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="few small graphs, for a smoke test in seconds"
    )
    parser.add_argument(
        "--circuit",
        action="store_true",
        help="after the causal tests, find and judge circuits of the checkpoint as "
        "`hooked-nar circuit --quick` does (EAP, EAP-IG, exact patching, faithfulness); "
        "its report and PNGs in OUTPUT/circuit",
    )
    parser.add_argument(
        "--browser",
        action="store_true",
        help="at the end, write the feature browser to OUTPUT/browser/index.html "
        "(as `hooked-nar browse OUTPUT`)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="print nothing but errors (no progress, no summary)",
    )


def _checkpoint(name_or_dir: str) -> tuple[Path, str | None]:
    """``(directory, algorithm)`` of a checkpoint directory or shipped name (reads JSON only)."""
    from hooked_nar.model.checkpoint import checkpoint_config, resolve_checkpoint

    try:
        path = resolve_checkpoint(name_or_dir)
        return path, checkpoint_config(path).get("algorithm")
    except ValueError as e:
        raise UsageError(f"--checkpoint: {e}") from None


def _validate_study(args: argparse.Namespace) -> None:
    """Fill defaults and check every argument; raises UsageError before any long work."""
    from hooked_nar.algorithms import ALGORITHMS
    from hooked_nar.model.checkpoint import default_checkpoint, shipped_checkpoints

    args.algorithm = resolve_algorithm(args.algorithm, args.checkpoint, default=None)
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
    # two graphs at least where a statistic is taken over graphs (held-out SAE rows split by
    # graph, bootstrap intervals), two nodes at least for a trajectory with a processor step
    lows = {"seed": 0, "batch_size": 1, "sae_graphs": 1, "sae_steps": 1, "num_null": 1}
    lows |= {"num_graphs": 2, "num_nodes": 2, "sae_eval_graphs": 2, "causal_graphs": 2}
    for key, low in lows.items():
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
    elif (default := default_checkpoint(args.algorithm)) in shipped_checkpoints():
        path, ck_alg = _checkpoint(default)
        if ck_alg == args.algorithm:
            args.checkpoint_path, args.checkpoint_source = path, "shipped"
    args.sae_model = None
    if args.sae is not None:
        if args.checkpoint_path is None:
            raise UsageError(f"--sae needs a checkpoint of {args.algorithm} to run in")
        from hooked_nar.model import HookedNAR

        model = HookedNAR.from_pretrained(args.checkpoint_path)
        args.sae_model = load_sae_checked(args.sae, model)
    from hooked_nar.data.generators import GENERATORS

    if args.generator not in GENERATORS:
        raise UsageError(
            f"--generator {args.generator!r} is unknown; valid: {', '.join(GENERATORS)}"
        )
    # last, so that a bad argument never leaves an empty folder behind
    default_output = Path("runs") / run_name(args.checkpoint, args.algorithm)
    args.output = Path(args.output if args.output is not None else default_output)
    check_output_dir(args.output)


def run(args: argparse.Namespace) -> int:
    """``hooked-nar study``: validate, run every stage, print the summary; exit code."""
    from hooked_nar.app.study import print_summary, run_study

    _validate_study(args)
    ctx = run_study(args)
    if not args.quiet:
        print_summary(ctx)
    return 0
