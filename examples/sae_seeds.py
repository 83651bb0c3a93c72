"""How much of an SAE's concept picture is its training seed? Train the algorithm's recipe SAE
(``hooked_nar.app.sae_study.RECIPES``) with several seeds on the activations ``hooked-nar study
--checkpoint ALGORITHM`` uses (the continuous checkpoint named as the algorithm).

    python examples/sae_seeds.py --algorithm mst_prim --seeds 10    # ~4 min on one CPU thread

Data, as the SAE stage of ``hooked-nar study`` with default settings: training activations of
512 ER graphs with n in ``TRAIN_SIZES`` (seed 1); held out, the first 64 of the study's 256 ER
graphs of n = 16 (seed 0) plus its longest trajectory. Only the SAE's training seed changes.
Per seed: explained variance, L0, accuracy recovered, whether :data:`sae.sweep.TARGETS` are
met, and the best-feature AUROC of every boolean concept; then mean, standard deviation and
minimum. Writes ``report.md``, ``results.json`` and ``auroc_by_seed.png`` (beside the linear
probes' AUROC) to ``runs/sae_seeds/<algorithm>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

# run from a checkout without (re)installing: the repository root comes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def study_data(algorithm: str):
    """``(train, held_out)``: the datasets of ``hooked-nar study``'s SAE stage (defaults)."""
    from hooked_nar.app.study import DEFAULTS, SAE_DEFAULTS, longest_trajectory, sae_eval_indices
    from hooked_nar.data import TRAIN_SIZES, CLRSDataset

    graphs = CLRSDataset(
        algorithm,
        DEFAULTS["num_graphs"],
        generator="er",
        sizes=(DEFAULTS["num_nodes"],),
        seed=0,
        progress=False,
    )
    keep = sae_eval_indices(graphs, SAE_DEFAULTS["sae_eval_graphs"], longest_trajectory(graphs))
    train = CLRSDataset(
        algorithm, SAE_DEFAULTS["sae_graphs"], sizes=TRAIN_SIZES, seed=1, progress=False
    )
    return train, graphs[keep]


def _spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f} [{min(values):.3f}]"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", default="mst_prim", help="shipped continuous checkpoint (default: mst_prim)")
    p.add_argument("--seeds", type=int, default=10, help="SAE training seeds 0..N-1 (default: 10)")
    p.add_argument("--steps", type=int, default=None, help="SAE steps (default: the recipe's)")
    p.add_argument("--output", default=None, help="default runs/sae_seeds/<algorithm>")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    torch.set_num_threads(args.threads)

    from tqdm.auto import tqdm

    from hooked_nar.app.common import check_output_dir
    from hooked_nar.app.sae_study import recipe_for, train_recipe_sae
    from hooked_nar.atomic import write_json_atomic, write_text_atomic
    from hooked_nar.model import HookedNAR
    from sae import ActivationStore, analyse_sae, evaluate_sae
    from sae.plots import auroc_by_seed
    from sae.sweep import TARGETS, meets_targets

    out = Path(args.output or f"runs/sae_seeds/{args.algorithm}")
    check_output_dir(out)
    t_start = time.perf_counter()
    model = HookedNAR.from_pretrained(args.algorithm, algorithm=args.algorithm)
    train, held_out = study_data(args.algorithm)
    store = ActivationStore.from_model(model, train, progress=False)
    eval_store = ActivationStore.from_model(model, held_out, progress=False)

    runs, probes = [], {}
    for seed in tqdm(range(args.seeds), desc=f"{args.algorithm} SAE seeds"):
        sae, options = train_recipe_sae(
            store, args.algorithm, steps=args.steps, seed=seed, progress=False
        )
        ev = evaluate_sae(sae, eval_store, model, held_out)
        analysis = analyse_sae(sae, eval_store, probes=seed == 0, seed=0)
        if seed == 0:
            probes = {c: r.auroc for c, r in analysis["probes"].items()}
        rec, recovered = ev["reconstruction"], ev["downstream"]["recovered"]
        runs.append(
            {
                "seed": seed,
                "explained_variance": rec["explained_variance"],
                "l0": rec["l0"],
                "recovered_output": recovered["output_accuracy"],
                "recovered_hint": recovered["hint_accuracy"],
                "meets_targets": meets_targets(ev),
                "auroc": {c: b["auroc"] for c, b in analysis["best"].items() if "auroc" in b},
                "feature": {c: b["feature"] for c, b in analysis["best"].items() if "auroc" in b},
            }
        )
    wall = time.perf_counter() - t_start
    concepts = list(runs[0]["auroc"])
    aurocs = {c: [r["auroc"][c] for r in runs] for c in concepts}
    png = auroc_by_seed(
        aurocs,
        out / "auroc_by_seed.png",
        probes,
        title=f"{args.algorithm}: {len(runs)} SAE training seeds",
    )

    header = ["seed", "EV", "L0", "recovered output / hint", "targets met"] + concepts
    rows = [
        [
            str(r["seed"]),
            f"{r['explained_variance']:.4f}",
            f"{r['l0']:.2f}",
            f"{r['recovered_output']:.3f} / {r['recovered_hint']:.3f}",
            "yes" if r["meets_targets"] else "no",
        ]
        + [f"{r['auroc'][c]:.3f} (f{r['feature'][c]})" for c in concepts]
        for r in runs
    ]
    met = sum(r["meets_targets"] for r in runs)
    summary = [
        "mean ± sd [min]",
        _spread([r["explained_variance"] for r in runs]),
        _spread([r["l0"] for r in runs]),
        _spread([r["recovered_output"] for r in runs])
        + " / "
        + _spread([r["recovered_hint"] for r in runs]),
        f"{met} of {len(runs)}",
    ] + [_spread(aurocs[c]) for c in concepts]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(r) + " |" for r in rows + [summary]]
    recipe = recipe_for(args.algorithm) | ({"steps": args.steps} if args.steps else {})
    lines = [
        f"# SAE training seeds: {args.algorithm}",
        "",
        "```",
        "python examples/sae_seeds.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "```",
        "",
        f"Recipe {recipe} at `hook_node_out`, seeds 0..{len(runs) - 1}; {len(store)} training "
        f"rows, {len(eval_store)} held-out rows (the data of `hooked-nar study --algorithm "
        f"{args.algorithm}`). Targets: EV >= {TARGETS['explained_variance']}, L0 <= "
        f"{TARGETS['l0']:g}, recovered >= {TARGETS['recovered']} (output and hint). Wall time "
        f"{wall:.0f} s on {args.threads} CPU thread(s).",
        "",
        *table,
        "",
        "Linear probe AUROC on the same held-out activations: "
        + ", ".join(f"{c} {v:.3f}" for c, v in probes.items() if c in concepts),
        "",
        f"![best-feature AUROC by seed]({png.name})",
        "",
    ]
    write_text_atomic(out / "report.md", "\n".join(lines))
    result = {"algorithm": args.algorithm, "recipe": recipe, "runs": runs, "probes": probes}
    write_json_atomic(out / "results.json", result)
    print("\n".join(table))
    print(f"targets met on {met} of {len(runs)} seeds; report: {out / 'report.md'} ({wall:.0f} s)")
    return result


if __name__ == "__main__":
    main()
