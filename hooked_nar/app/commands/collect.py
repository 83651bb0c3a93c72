"""``hooked-nar collect``: store a checkpoint's per-step activations as an ActivationStore.

    hooked-nar collect --checkpoint bfs --output runs/acts/bfs

Writes safetensors shards of the valid (graph, node, step) rows with their concept labels,
and the store's manifest (:class:`sae.ActivationStore`).
"""

from __future__ import annotations

import argparse

from hooked_nar.app.common import PROG, UsageError, load_model, output_dir

HELP = (
    "store a checkpoint's per-step activations with concept labels as safetensors "
    "shards (see `hooked-nar collect --help`)"
)
DESCRIPTION = (
    "Run a checkpoint over generated graphs and store its per-step activations "
    "(valid (graph, node, step) rows with concept labels) as safetensors shards."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar collect``."""
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="NAME_OR_DIR",
        help="shipped checkpoint name (bfs, dijkstra, ...) or checkpoint directory",
    )
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for the store")
    p.add_argument(
        "--hooks",
        nargs="+",
        default=["hook_node_out"],
        help="per-step hook names (default: hook_node_out)",
    )
    p.add_argument(
        "--steps", type=int, nargs="+", default=None, help="processor steps to keep (default: all)"
    )
    p.add_argument("--num-graphs", type=int, default=512, help="graphs (default: 512)")
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="node counts, cycled over graphs (default: the training sizes 4 7 11 13 16)",
    )
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--batch-size", type=int, default=32, help="graphs per forward (default: 32)")


def run(args: argparse.Namespace) -> int:
    """``hooked-nar collect``: store a checkpoint's activations on disk; exit code."""
    from hooked_nar.data import TRAIN_SIZES, CLRSDataset
    from sae.activation_store import ActivationStore

    if args.num_graphs < 1 or args.batch_size < 1:
        raise UsageError("--num-graphs and --batch-size must be >= 1")
    model = load_model(args.checkpoint, None)
    out = output_dir(args.output)
    sizes = tuple(args.sizes or TRAIN_SIZES)
    data = CLRSDataset(model.cfg.algorithm, args.num_graphs, sizes=sizes, seed=args.seed)
    try:
        store = ActivationStore.from_model(
            model,
            data,
            hooks=args.hooks,
            steps=args.steps,
            batch_size=args.batch_size,
            model_name=args.checkpoint,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    store.save(out)
    print(f"{PROG} collect: {len(store)} rows of {', '.join(store.hooks)} -> {out}")
    return 0
