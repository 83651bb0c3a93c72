"""``hooked-nar patch``: causal tests of every concept unit of a checkpoint's SAE.

    hooked-nar patch --algorithm bfs                            # trains the recipe's SAE first
    hooked-nar patch --algorithm dijkstra --sae runs/dijkstra/sae

For every boolean concept of the algorithm its unit (``--unit``: the SAE feature group by
default) is ablated where the concept holds and steered where the algorithm makes it true next,
measured on the concept's own target beside a null of uninformative units and a positive
control (:func:`patching.causal.causal_concept_tests`); verdicts follow the one rule of
:mod:`patching.causal.rule`. Writes ``report.md``, ``results.json`` and PNGs.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable
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
from hooked_nar.atomic import write_json_atomic, write_text_atomic

__all__ = ["HELP", "add_arguments", "causal_data", "load_or_train_sae", "run"]

HELP = (
    "causal tests of concept units: ablation and steering beside a null "
    "(see `hooked-nar patch --help`)"
)
DESCRIPTION = (
    "Causal tests of concept units: ablate each concept's SAE feature group where it holds "
    "and steer it where the algorithm makes it true next, on the concept's own target, "
    "beside a null of uninformative units and a positive control; write report.md, "
    "results.json and PNGs."
)


def load_or_train_sae(
    path: str | None, model, out: Path, seed: int = 0, log: Callable[[str], None] = print
) -> tuple[object, str]:
    """``(sae, description)``: the SAELens directory ``path`` checked against ``model``, or,
    without one, the algorithm's recipe (:data:`hooked_nar.app.sae_study.RECIPES`) trained on 512 ER
    graphs of the training sizes and saved to ``out/sae``."""
    if path is not None:
        sae = load_sae_checked(path, model)
        return sae, (
            f"`{path}` ({sae.cfg.architecture()} d_sae={sae.cfg.d_sae}, "
            f"k={getattr(sae.cfg, 'k', '-')}, hook {sae.cfg.metadata.hook_name})"
        )
    from hooked_nar.app.sae_study import train_recipe_sae
    from hooked_nar.data import TRAIN_SIZES, CLRSDataset
    from sae import ActivationStore, save_sae

    alg = model.cfg.algorithm
    data = CLRSDataset(alg, 512, sizes=TRAIN_SIZES, seed=seed, progress=False)
    store = ActivationStore.from_model(model, data, model_name=alg, progress=False)
    sae, settings = train_recipe_sae(store, alg, seed=seed, log=log)
    save_sae(sae, out / "sae")
    return sae, (
        f"trained here: {settings['architecture']} d_sae={settings['d_sae']} k={settings['k']} "
        f"{settings['options']} on {len(store)} rows of 512 ER graphs (n in {TRAIN_SIZES}, "
        f"seed {seed}); saved to `sae/`"
    )


def causal_data(model, store_graphs: int, num_graphs: int, nodes: int, seed: int = 0):
    """``(store, test_graphs)`` of a causal experiment: an ActivationStore of ``store_graphs``
    ER graphs (seed ``20_000 + seed``), where each concept's best feature is chosen, and
    ``num_graphs`` fresh test graphs (seed ``30_000 + seed``), all with ``nodes`` nodes."""
    from hooked_nar.data import CLRSDataset
    from sae import ActivationStore

    alg = model.cfg.algorithm
    store_data = CLRSDataset(alg, store_graphs, sizes=(nodes,), seed=20_000 + seed, progress=False)
    test = CLRSDataset(alg, num_graphs, sizes=(nodes,), seed=30_000 + seed, progress=False)
    return ActivationStore.from_model(model, store_data, model_name=alg, progress=False), test


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hooked-nar patch``."""
    add_model_arguments(p, "runs/patch/ALGORITHM")
    p.add_argument(
        "--sae",
        default=None,
        metavar="DIR",
        help="SAELens directory trained on the checkpoint's hook_node_out (e.g. the "
        "sae/ folder of `hooked-nar study`); default: train the recipe's SAE",
    )
    p.add_argument(
        "--concepts",
        nargs="+",
        default=None,
        help="concepts to test (default: every boolean concept of the algorithm)",
    )
    p.add_argument("--num-graphs", type=int, default=64, help="test graphs (default: 64)")
    p.add_argument(
        "--store-graphs",
        type=int,
        default=128,
        help="held-out graphs on which each concept's best feature is chosen (default: 128)",
    )
    p.add_argument("--nodes", type=int, default=16, help="nodes per graph (default: 16)")
    p.add_argument(
        "--num-null",
        type=int,
        default=None,
        help="null units per kind (default: enough for the run's Holm correction)",
    )
    p.add_argument(
        "--unit",
        default="group",
        choices=["group", "feature", "direction"],
        help="unit of intervention: the concept's feature group, its best feature, or its "
        "difference-of-means direction (default: group)",
    )
    p.add_argument(
        "--sites-per-graph", type=int, default=2, help="steering sites per test graph (default: 2)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of data, controls and sites (default: 0)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")


def run(args: argparse.Namespace) -> int:
    """``hooked-nar patch``: causal tests of every concept feature, report; exit code."""
    import torch

    from hooked_nar.algorithms import ALGORITHMS
    from hooked_nar.concept_labels import CONCEPTS
    from patching.causal import (
        CAUSAL_RULE,
        CausalOptions,
        causal_concept_tests,
        concept_tests_table,
    )
    from patching.report import causal_sections

    args.algorithm = resolve_algorithm(args.algorithm, args.checkpoint, default="bfs")
    if args.algorithm not in ALGORITHMS:
        raise UsageError(f"--algorithm {args.algorithm!r} is not a CLRS algorithm")
    unknown = [c for c in args.concepts or [] if c not in CONCEPTS[args.algorithm]]
    if unknown:
        raise UsageError(
            f"--concepts {unknown} are not concepts of {args.algorithm}; valid: "
            f"{', '.join(CONCEPTS[args.algorithm])}"
        )
    for flag in ("num_graphs", "store_graphs", "nodes", "num_null", "sites_per_graph"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1")
    torch.set_num_threads(args.threads)
    from hooked_nar.model.checkpoint import default_checkpoint

    args.checkpoint = args.checkpoint or default_checkpoint(args.algorithm)
    model = load_model(args.checkpoint, args.algorithm)
    out = output_dir(args.output or Path("runs/patch") / run_name(args.checkpoint, args.algorithm))
    t_start = time.perf_counter()
    say = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731

    sae, sae_text = load_or_train_sae(args.sae, model, out, args.seed, say)
    store, test_data = causal_data(model, args.store_graphs, args.num_graphs, args.nodes, args.seed)
    say(f"store: {len(store)} rows; causal tests on {len(test_data)} graphs")
    options = CausalOptions(
        unit=args.unit,
        num_null=args.num_null,
        sites_per_graph=args.sites_per_graph,
        seed=args.seed,
    )
    tests = causal_concept_tests(
        model, sae, args.concepts, dataset=test_data, store=store, options=options
    )
    print(concept_tests_table(tests))
    sections, images = causal_sections(tests, out)
    wall = time.perf_counter() - t_start
    command = " ".join(shlex.quote(x) for x in [PROG, *args.argv])
    lines = [
        f"# Causal tests of concept features: {args.algorithm}",
        "",
        "```",
        command,
        "```",
        "",
        "## Setup",
        "",
        f"- checkpoint: `{args.checkpoint}` (d_model {model.cfg.d_model})",
        f"- SAE: {sae_text}",
        f"- unit per concept ({args.unit}), AUROCs, nulls and natural scales from "
        f"{len(store)} valid rows of {args.store_graphs} held-out ER graphs (n = {args.nodes}, "
        f"seed {20_000 + args.seed}), labels at the state each step computes (hint t + 1)",
        f"- test graphs: {len(test_data)} ER graphs (n = {args.nodes}, seed "
        f"{30_000 + args.seed}); intervals: 95% bootstrap over graphs (and null units)",
        "- ablation where the concept holds; steering at up to "
        f"{args.sites_per_graph} sites per graph where the algorithm makes the concept true "
        "next; null units and the positive control run the same way",
        f"- seed {args.seed}; wall time {wall:.0f} s on {args.threads} CPU thread(s)",
        "",
        *sections,
    ]
    write_text_atomic(out / "report.md", "\n".join(lines))
    summary = {
        "algorithm": args.algorithm,
        "command": command,
        "sae": sae_text,
        "rule": CAUSAL_RULE,
        "wall_seconds": wall,
        "tests": tests,
        "figures": images,
    }
    write_json_atomic(out / "results.json", summary)
    say(f"wrote {out / 'report.md'}")
    return 0
