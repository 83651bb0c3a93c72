"""``hooked-nar circuit``: circuit discovery on shipped checkpoints (:mod:`patching.circuits`).

    hooked-nar circuit --algorithm dijkstra                       # -> runs/circuit/dijkstra
    hooked-nar circuit --algorithm bellman_ford dijkstra          # both, and their overlap
    hooked-nar circuit --algorithm bfs --ablation mean --quick    # a few graphs, ~30 s

Scores every unit of the processor (message, update, gate, hidden state; tied across steps
and per step) and every message edge with EAP, EAP-IG and exact patching on counterfactual
graph pairs, compares the estimates with exact patching, and measures the sufficiency and
necessity of top-k circuits on held-out pairs beside random circuits: ``report.md``,
``results.json`` and PNGs in ``--output/<algorithm>``.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from hooked_nar.app.common import PROG, UsageError

HELP = "circuit discovery: EAP / EAP-IG / exact patching, faithfulness (see `hooked-nar circuit --help`)"
DESCRIPTION = "Find and judge circuits of the unrolled processor of HookedNAR checkpoints."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar circuit``."""
    p.add_argument(
        "--algorithm",
        nargs="+",
        required=True,
        help="one or more algorithms with a pointer output pi (bfs, bellman_ford, dijkstra, ...)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint name or directory (one algorithm only; default: the shipped continuous "
        "one, as attribution needs gradients, which discrete states do not carry)",
    )
    p.add_argument(
        "--kind",
        default=None,
        choices=["move_source", "perturb_weight", "remove_edge"],
        help="counterfactual edit (default: move_source for bfs/dfs, else perturb_weight)",
    )
    p.add_argument(
        "--ablation",
        default="counterfactual",
        choices=["counterfactual", "mean", "zero"],
        help="what an ablated unit takes, for scores and faithfulness (default: counterfactual)",
    )
    p.add_argument("--nodes", type=int, default=8, help="nodes per graph (default: 8)")
    p.add_argument("--num-graphs", type=int, default=16, help="scoring pairs (default: 16)")
    p.add_argument("--eval-graphs", type=int, default=32, help="held-out pairs (default: 32)")
    p.add_argument(
        "--ig-steps", type=int, default=8, help="EAP-IG interpolation points (default: 8)"
    )
    p.add_argument(
        "--num-random", type=int, default=16, help="random circuits per size (default: 16)"
    )
    p.add_argument(
        "--mask-swaps",
        type=int,
        default=8,
        help="greedy swaps refining the learned mask's 20%% circuit (default: 8; 0: none)",
    )
    p.add_argument(
        "--granularity",
        nargs="+",
        default=["tied", "step"],
        choices=["tied", "step"],
        help="unit components scored and compared with exact (default: tied step)",
    )
    p.add_argument(
        "--judge",
        nargs="+",
        default=["tied"],
        choices=["tied", "step"],
        help="granularities whose circuits get faithfulness curves (default: tied)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="runs/circuit", help="output folder (default: runs/circuit)")
    p.add_argument(
        "--quick", action="store_true", help="a few small graphs: every stage in seconds"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _check_differentiable(checkpoint: str) -> None:
    """UsageError for a checkpoint whose processor carries no gradient (discrete states)."""
    from hooked_nar.model.checkpoint import checkpoint_config

    try:
        processor = checkpoint_config(checkpoint).get("processor")
    except (ValueError, OSError) as e:
        raise UsageError(f"--checkpoint {checkpoint!r}: {e}") from None
    if processor == "discrete":
        raise UsageError(
            f"--checkpoint {checkpoint!r} is a discrete processor: its hard states carry no "
            "gradient for EAP / EAP-IG; `hooked-nar patch` measures its units exactly"
        )


def run(args: argparse.Namespace) -> int:
    """Validate, run every algorithm, write the reports (and the overlap of two); exit code."""
    from hooked_nar.algorithms import SPECS
    from patching.circuits.discovery import has_pointer_output

    algorithms = list(dict.fromkeys(args.algorithm))
    for alg in algorithms:
        if alg not in SPECS:
            raise UsageError(f"--algorithm {alg!r} is unknown; valid: {', '.join(SPECS)}")
        if not has_pointer_output(alg):
            raise UsageError(f"--algorithm {alg!r} has no pointer output pi to score circuits on")
    if args.checkpoint is not None and len(algorithms) != 1:
        raise UsageError("--checkpoint needs exactly one --algorithm")
    if args.checkpoint is not None:
        _check_differentiable(args.checkpoint)
    for flag, low in (
        ("nodes", 3),
        ("num_graphs", 1),
        ("eval_graphs", 1),
        ("ig_steps", 1),
        ("num_random", 1),
        ("mask_swaps", 0),
        ("seed", 0),
    ):
        if getattr(args, flag) < low:
            raise UsageError(
                f"--{flag.replace('_', '-')} must be >= {low}, got {getattr(args, flag)}"
            )
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--output {str(out)!r} cannot be created ({e.strerror})") from None

    import torch
    from tqdm.auto import tqdm

    from hooked_nar.atomic import write_text_atomic
    from hooked_nar.model import HookedNAR
    from patching.circuits.discovery import QUICK_OPTIONS, CircuitOptions, discover_circuit
    from patching.circuits.report import (
        circuit_overlap,
        overlap_markdown,
        same_initial_processor,
        write_report,
    )

    torch.set_num_threads(1)
    command = shlex.join([PROG, *args.argv])
    progress = False if args.no_progress else None
    sizes = {
        "num_graphs": args.num_graphs,
        "eval_graphs": args.eval_graphs,
        "ig_steps": args.ig_steps,
        "num_random": args.num_random,
        "mask_swaps": args.mask_swaps,
    }
    sizes["granularities"] = tuple(dict.fromkeys(args.granularity + args.judge))
    sizes["judged"] = tuple(args.judge)
    if args.quick:
        sizes |= QUICK_OPTIONS
    results, models = {}, {}
    for alg in tqdm(algorithms, desc="circuits", disable=args.no_progress or len(algorithms) == 1):
        try:
            model = HookedNAR.from_pretrained(args.checkpoint or alg, algorithm=alg)
            options = CircuitOptions(
                alg,
                kind=args.kind,
                nodes=args.nodes,
                ablation=args.ablation,
                seed=args.seed,
                **sizes,
            )
        except ValueError as e:
            raise UsageError(str(e)) from None
        start = time.time()
        result = discover_circuit(model, options, progress=progress)
        seconds = time.time() - start
        paths = write_report(result, out / alg, command=command, seconds=seconds)
        results[alg], models[alg] = result, model
        print(f"{alg}: {paths['report']} ({seconds:.0f} s)")
    if len(results) == 2:
        a, b = results.values()
        same = same_initial_processor(*models.values())
        overlaps = [
            circuit_overlap(a, b, method=m, same_initial_processor=same) for m in ("eap_ig", "mask")
        ]
        text = "\n".join(overlap_markdown(x) for x in overlaps)
        path = write_text_atomic(out / "overlap.md", text)
        for x in overlaps:
            print(
                f"overlap ({x['method']}): Jaccard {x['jaccard']:.3f}, chance {x['chance_mean']:.3f}"
            )
        print(f"overlap: {path}")
    return 0
