"""Steer and ablate concept representations of a shipped HookedNAR checkpoint at several doses,
three units side by side, on CPU in minutes.

    python examples/steering.py --algorithm bfs
    python examples/steering.py --algorithm mst_prim --sae runs/mst_prim/sae

For every boolean concept (``hooked_nar.concept_labels.CONCEPTS``) and each unit - the concept's
SAE feature group, its single best feature, its difference-of-means direction - the unit is
ablated where the concept holds and steered at sites where the algorithm makes the concept
true next, at doses in the unit's natural scale (quantiles of its activation where the concept
is true, then multiples of its largest value, off-distribution), each beside a null of
uninformative units of the same size and the concept's positive control
(:func:`patching.causal.causal_concept_tests`). Writes ``report.md`` (one table per unit, the
verdicts of the one rule), ``results.json`` and a dose-response PNG per unit and concept to
``runs/steering/<algorithm>``.

``--sae PATH`` opens a saved SAELens SAE; without it the algorithm's recipe SAE
(``hooked_nar.app.sae_study.RECIPES``) is trained first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

# run from a checkout without (re)installing: the repository root comes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

UNITS = ("group", "feature", "direction")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the three units' tests and write the report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", default="bfs", help="shipped checkpoint (bfs, dijkstra, ...)")
    p.add_argument("--sae", default=None, help="saved SAE directory (default: train one)")
    p.add_argument("--output", default=None, help="default runs/steering/<algorithm>")
    p.add_argument("--num-graphs", type=int, default=32, help="test graphs (n = --nodes)")
    p.add_argument("--store-graphs", type=int, default=128, help="graphs for units and nulls")
    p.add_argument("--nodes", type=int, default=16)
    p.add_argument("--num-null", type=int, default=None, help="null units per kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hooked_nar.app.commands.patch import causal_data, load_or_train_sae
    from hooked_nar.atomic import write_json_atomic, write_text_atomic
    from hooked_nar.model import HookedNAR
    from patching.causal import CausalOptions, causal_concept_tests, concept_tests_table
    from patching.plots import dose_response
    from patching.report import rule_text

    out = Path(args.output or f"runs/steering/{args.algorithm}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    say = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731

    model = HookedNAR.from_pretrained(args.algorithm, algorithm=args.algorithm)
    sae, sae_text = load_or_train_sae(args.sae, model, out, args.seed, say)
    store, test_data = causal_data(model, args.store_graphs, args.num_graphs, args.nodes, args.seed)
    lines = [
        f"# Concept units at several doses: {args.algorithm}",
        "",
        f"`python examples/steering.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"SAE: {sae_text}; {len(test_data)} test graphs (n = {args.nodes}); store "
        f"{len(store)} rows. {rule_text()}",
        "",
    ]
    results = {}
    for unit in UNITS:
        options = CausalOptions(unit=unit, num_null=args.num_null, seed=args.seed)
        tests = causal_concept_tests(model, sae, None, test_data, store=store, options=options)
        results[unit] = tests
        say(f"unit {unit}: " + ", ".join(f"{t.concept} {t.verdict}" for t in tests))
        lines += [f"## Unit: {unit}", "", concept_tests_table(tests, markdown=True), ""]
        for t in tests:
            png = f"dose_{unit}_{t.concept}.png"
            dose_response(t, out / png)
            lines += [f"![{t.concept}, {unit}]({png})", ""]
    lines.append(f"Wall time {time.perf_counter() - t_start:.0f} s.")
    write_text_atomic(out / "report.md", "\n".join(lines))
    write_json_atomic(out / "results.json", {"sae": sae_text, "tests": results})
    say(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
