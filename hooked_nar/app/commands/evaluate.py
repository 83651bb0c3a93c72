"""``hooked-nar evaluate``: CLRS metrics of checkpoints (:func:`hooked_nar.evaluate.evaluate`).

hooked-nar evaluate --checkpoint bfs --generator er --num-nodes 64
hooked-nar evaluate --table          # the README's benchmark table (every shipped checkpoint)
"""

from __future__ import annotations

import argparse

from hooked_nar.app.common import UsageError

HELP = "CLRS metrics of a checkpoint, in and out of distribution (see `hooked-nar evaluate --help`)"
DESCRIPTION = "Evaluate HookedNAR checkpoints with CLRS metrics."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar evaluate``."""
    p.add_argument(
        "--checkpoint",
        action="append",
        help="shipped name (bfs, ...) or directory; repeatable (default with --table: all shipped)",
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="node / whole-graph accuracy of the main output on every benchmark distribution "
        "(CLRS-30's ER p = 0.5 at n = 64, sparse ER 64 / 160, WS, Delaunay, in-distribution)",
    )
    p.add_argument(
        "--split",
        action="append",
        help="with --table: only this benchmark split (repeatable; also the opt-in "
        "'CLRS-30 ER p=0.5 n=160' and 'sparse ER n=1000'; see hooked_nar.evaluate)",
    )
    p.add_argument("--json", help="with --table: also write the results (with intervals) here")
    p.add_argument("--generator", default="er", help="graph generator: er, ws, delaunay, ...")
    p.add_argument("--num-nodes", type=int, default=64, help="nodes per graph (default: 64)")
    p.add_argument("--num-graphs", type=int, default=32, help="graphs (default: 32)")
    p.add_argument("--seed", type=int, default=1234, help="dataset seed (default: 1234)")
    p.add_argument("--batch-size", type=int, default=8, help="graphs per batch (default: 8)")


def run(args: argparse.Namespace) -> int:
    """``hooked-nar evaluate``: validate, evaluate every checkpoint, print JSON; exit code."""
    from hooked_nar.data.generators import GENERATORS
    from hooked_nar.model.checkpoint import (
        checkpoint_config,
        resolve_checkpoint,
        shipped_checkpoints,
    )

    for flag, low in (("num_nodes", 2), ("num_graphs", 1), ("batch_size", 1), ("seed", 0)):
        if getattr(args, flag) < low:
            raise UsageError(
                f"--{flag.replace('_', '-')} must be >= {low}, got {getattr(args, flag)}"
            )
    if args.generator not in GENERATORS:
        raise UsageError(
            f"--generator {args.generator!r} is unknown; valid: {', '.join(GENERATORS)}"
        )
    from hooked_nar.evaluate import BENCHMARK_SPLITS

    for split in args.split or ():
        if split not in BENCHMARK_SPLITS:
            raise UsageError(f"--split {split!r} is unknown; valid: {', '.join(BENCHMARK_SPLITS)}")
    if not args.table and not args.checkpoint:
        raise UsageError("--checkpoint is required without --table")
    names = args.checkpoint or shipped_checkpoints()
    for name in names:
        try:
            checkpoint_config(resolve_checkpoint(name))
        except ValueError as e:
            raise UsageError(f"--checkpoint {name!r}: {e}") from None

    import json

    from hooked_nar.data import CLRSDataset
    from hooked_nar.evaluate import benchmark, benchmark_table, evaluate
    from hooked_nar.model import HookedNAR

    if args.table:
        results = {}
        for name in names:
            model = HookedNAR.from_pretrained(name)
            results[name] = {
                "algorithm": model.cfg.algorithm,
                "splits": benchmark(model, args.num_graphs, args.seed, args.split, progress=True),
            }
        print(benchmark_table(results))
        if args.json:
            from pathlib import Path

            from hooked_nar.atomic import write_text_atomic

            write_text_atomic(Path(args.json), json.dumps(results, indent=2))
        return 0
    for name in names:
        model = HookedNAR.from_pretrained(name)
        data = CLRSDataset(
            model.cfg.algorithm,
            args.num_graphs,
            generator=args.generator,
            sizes=(args.num_nodes,),
            seed=args.seed + args.num_nodes,
        )
        print(
            json.dumps(evaluate(model, data, batch_size=args.batch_size, progress=True), indent=2)
        )
    return 0
