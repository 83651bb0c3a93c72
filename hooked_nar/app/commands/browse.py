"""``hooked-nar browse``: the offline feature browser of a study's SAE.

    hooked-nar browse runs/bfs                         # -> runs/bfs/browser/index.html
    hooked-nar browse runs/bfs --sae other/sae --checkpoint bfs

The page (:mod:`hooked_nar.app.browser`) shows every feature on the study's held-out graphs:
an index (firing rate, best concept with its AUROC beside baselines, causal verdict, groups,
dead / dense flags) and per feature its histogram, top and random examples drawn as the graph
at each step, its decoder direction read through the hint heads and its concept AUROCs.
"""

from __future__ import annotations

import argparse
import sys

HELP = "write the offline HTML feature browser of a study's SAE (RUN_DIR/browser/index.html)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar browse``."""
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a `hooked-nar study` output folder (results.json, sae/); its settings give the "
        "held-out graphs",
    )
    parser.add_argument(
        "--sae",
        metavar="DIR",
        default=None,
        help="a SAELens directory to browse instead of RUN_DIR/sae (an SAE at hook_node_out)",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="NAME_OR_DIR",
        default=None,
        help="shipped checkpoint name or checkpoint directory (default: the run's checkpoint)",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        default=None,
        help="folder to write (default: RUN_DIR/browser; replaced atomically)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Check the run folder, SAE and checkpoint (one-line errors), then write the browser."""
    import time
    from pathlib import Path

    from hooked_nar.app.browser import BROWSER_DIR, build_browser
    from hooked_nar.app.browser.run_folder import load_run
    from hooked_nar.app.common import UsageError

    t0 = time.perf_counter()
    try:
        model, sae, eval_data, results, graph_ids, seed = load_run(
            args.run_dir, args.sae, args.checkpoint
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = Path(args.output) if args.output is not None else Path(args.run_dir) / BROWSER_DIR
    info = build_browser(
        model,
        sae,
        eval_data,
        out,
        results,
        graph_ids=graph_ids,
        seed=seed,
        progress=sys.stderr.isatty() and not args.no_progress,
    )
    print(
        f"{info.path / 'index.html'}: {info.features} features, "
        f"{info.bytes / 2**20:.2f} MB, {time.perf_counter() - t0:.1f} s"
    )
    return 0
