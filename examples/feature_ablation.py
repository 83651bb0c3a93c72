"""Causal tests of concept features on a shipped HookedNAR checkpoint, on CPU in minutes.

    python examples/feature_ablation.py --algorithm bfs
    python examples/feature_ablation.py --algorithm dijkstra --sae runs/saes/dijkstra

For every boolean concept of the algorithm (``hooked_nar.concepts.CONCEPTS``): the SAE feature
with the highest AUROC on held-out graphs is zero-ablated at every step and node, beside
frequency-matched random features, and steered on at single (node, step) sites, beside
random directions of the same norm and matched features
(:func:`patching.causal.causal_concept_tests`). Verdicts follow the one rule of
:data:`patching.causal.CAUSAL_RULE`. Writes ``report.md``, ``results.json`` and PNGs (effect vs
controls with 95% intervals; for every concept with a hint behind it, one graph with the
target hint's logits before and after the ablation) to ``runs/feature_ablation/<algorithm>``.

``--sae PATH`` opens a saved SAELens SAE (e.g. ``runs/saes/bfs``); without it an SAE is trained
first with the configuration the sweep of ``examples/train_sae.py`` chose for the algorithm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

# run from a checkout without (re)installing: the repository root comes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: The configurations of the SAEs in runs/saes (chosen by the sweep of examples/train_sae.py),
#: trained with its settings: 512 ER graphs with n in TRAIN_SIZES, 1000 steps x 512 rows,
#: lr 3e-3, seed 0.
SAE_CONFIGS = {
    "bfs": ("topk", 256, 8),
    "dijkstra": ("topk", 512, 16),
    "mst_prim": ("topk", 128, 16),
}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if hasattr(x, "as_dict"):
        return _jsonable(x.as_dict())
    return x


def get_sae(args, model, out: Path, say) -> tuple[object, str]:
    """``(sae, description)``: ``--sae`` opened, or one trained now (and saved to out/sae)."""
    from hooked_nar.data import TRAIN_SIZES, CLRSDataset
    from sae import ActivationStore, load_sae, save_sae, train_sae

    if args.sae:
        sae = load_sae(args.sae)
        meta = sae.cfg.metadata
        if getattr(meta, "algorithm", args.algorithm) != args.algorithm:
            raise SystemExit(
                f"--sae {args.sae} was trained on {meta.algorithm}, not {args.algorithm}"
            )
        return sae, (
            f"`{args.sae}` ({sae.cfg.architecture()} d_sae={sae.cfg.d_sae}, "
            f"k={getattr(sae.cfg, 'k', '-')}, hook {meta.hook_name})"
        )
    arch, d_sae, k = SAE_CONFIGS.get(args.algorithm, ("topk", 512, 16))
    data = CLRSDataset(args.algorithm, 512, sizes=TRAIN_SIZES, seed=args.seed, progress=False)
    store = ActivationStore.from_model(model, data, model_name=args.algorithm, progress=False)
    sae = train_sae(
        store, arch, d_sae=d_sae, k=k, steps=1000, lr=3e-3, batch_size=512, seed=args.seed
    )
    save_sae(sae, out / "sae")
    say(f"trained {arch} d_sae={d_sae} k={k} on {len(store)} rows")
    return sae, (
        f"trained here: {arch} d_sae={d_sae} k={k}, 1000 steps x 512 rows, lr 3e-3, on 512 ER "
        f"graphs (n in {TRAIN_SIZES}, seed {args.seed}); saved to `sae/`"
    )


def ablation_figure(model, sae, test, data, path: Path) -> Path:
    """One graph: the target hint's logits clean and with the feature zero-ablated."""
    from hooked_nar.data import collate
    from patching import ablate_features
    from patching.plots import draw_before_after

    batch = collate([data])
    hint = test.targets[0]
    with torch.no_grad():
        clean = model(batch).hints[hint]
        ablated = model.run_with_hooks(
            batch, fwd_hooks=list(ablate_features(model, sae, [test.feature]))
        ).hints[hint]
    S = min(clean.shape[1], int(data.length) - 1)
    truth = data[hint][:, 1 : S + 1] > 0.5
    rows = {"clean": clean[:, :S].T, f"f{test.feature} ablated": ablated[:, :S].T}
    wrong = {
        "clean": ((clean[:, :S] > 0) != truth).T,
        f"f{test.feature} ablated": ((ablated[:, :S] > 0) != truth).T,
    }
    if (
        model.hint_fields
        and next(f for f in model.hint_fields if f.name == hint).type == "mask_one"
    ):
        wrong = None  # the arg-max node is the prediction; logits alone do not say it
    lim = float(torch.cat([clean[:, :S], ablated[:, :S]]).abs().max())
    return draw_before_after(
        data,
        rows,
        path,
        kind="scalar",
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        outlines=wrong,
        outline_label="wrong prediction",
        value_label=f"{hint} logit",
        title=f"{test.algorithm}: {hint} logits before / after zero-ablating feature {test.feature} "
        f"({test.concept}) at every step; margin removed {test.ablation[0].effect:.2f} "
        f"(controls {test.ablation[0].control:.2f})",
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", default="bfs", help="shipped checkpoint (bfs, dijkstra, ...)")
    p.add_argument("--sae", default=None, help="saved SAE directory (default: train one)")
    p.add_argument("--output", default=None, help="default runs/feature_ablation/<algorithm>")
    p.add_argument("--num-graphs", type=int, default=64, help="test graphs (n = --nodes)")
    p.add_argument("--store-graphs", type=int, default=128, help="graphs for the best feature")
    p.add_argument("--nodes", type=int, default=16)
    p.add_argument("--num-controls", type=int, default=8)
    p.add_argument("--sites-per-graph", type=int, default=4)
    p.add_argument("--mode", default="zero", choices=["zero", "mean", "resample"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hooked_nar.atomic import write_text_atomic
    from hooked_nar.concepts import CONCEPTS
    from hooked_nar.data import CLRSDataset
    from hooked_nar.model import HookedNAR
    from patching import CAUSAL_RULE, causal_concept_tests, concept_tests_table, results_table
    from patching.plots import causal_bars
    from sae import ActivationStore

    out = Path(args.output or f"runs/feature_ablation/{args.algorithm}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    say = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731

    model = HookedNAR.from_pretrained(args.algorithm, algorithm=args.algorithm)
    sae, sae_text = get_sae(args, model, out, say)
    sizes = (args.nodes,)
    store_data = CLRSDataset(
        args.algorithm, args.store_graphs, sizes=sizes, seed=20_000 + args.seed, progress=False
    )
    test_data = CLRSDataset(
        args.algorithm, args.num_graphs, sizes=sizes, seed=30_000 + args.seed, progress=False
    )
    store = ActivationStore.from_model(model, store_data, model_name=args.algorithm, progress=False)
    say(f"store: {len(store)} rows; running the causal tests on {len(test_data)} graphs")
    tests = causal_concept_tests(
        model,
        sae,
        dataset=test_data,
        store=store,
        mode=args.mode,
        num_controls=args.num_controls,
        sites_per_graph=args.sites_per_graph,
        seed=args.seed,
        progress=False,
    )
    for t in tests:
        say(f"{t.concept}: feature {t.feature}, verdict {t.verdict}")
    table = concept_tests_table(tests, markdown=True)
    print(concept_tests_table(tests))

    images = {"Effect vs controls (95% bootstrap CI over graphs)": "effects.png"}
    causal_bars(
        tests, out / "effects.png", title=f"{args.algorithm}: causal tests of concept features"
    )
    data = test_data[0]
    for t in tests:
        if len(t.targets) == 1:
            png = f"ablation_{t.concept}.png"
            ablation_figure(model, sae, t, data, out / png)
            images[
                f"`{t.concept}`: {t.targets[0]} logits before / after ablating feature {t.feature}"
            ] = png

    scalars = [c for c, v in CONCEPTS[args.algorithm].items() if v.dtype != torch.bool]
    command = "python examples/feature_ablation.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    wall = time.perf_counter() - t_start
    rule = CAUSAL_RULE
    by_verdict: dict[str, list[str]] = {}
    for t in tests:
        by_verdict.setdefault(t.verdict, []).append(f"`{t.concept}` (f{t.feature})")
    lines = [
        f"# Causal tests of concept features: {args.algorithm}",
        "",
        "```",
        command,
        "```",
        "",
        "## Setup",
        "",
        f"- checkpoint: shipped `{args.algorithm}` (d_model {model.cfg.d_model})",
        f"- SAE: {sae_text}",
        f"- best feature per concept: highest AUROC on {len(store)} valid rows of "
        f"{args.store_graphs} held-out ER graphs (n = {args.nodes}, seed {20_000 + args.seed}), "
        "labels at the state each step computes (hint t + 1)",
        f"- test graphs: {len(test_data)} ER graphs (n = {args.nodes}, seed {30_000 + args.seed}); "
        "intervals: 95% percentile bootstrap over graphs",
        f"- ablation: {args.mode}-ablate the feature at every step and node; control: "
        f"{args.num_controls} random features of matched firing frequency, ablated the same way",
        f"- steering: up to {args.sites_per_graph} sites per graph where the concept is false "
        "(truth and clean prediction) and could be predicted true; the feature clamped to the "
        "0.9 quantile of its activation where the concept is true, at that node and step only; "
        f"controls: {args.num_controls} random directions of the same norm, and the matched "
        "features clamped to their own 0.9 quantile",
        f"- seed {args.seed}; wall time {wall:.0f} s on {args.threads} CPU thread(s)",
        "",
        "## Rule",
        "",
        "A result passes when its 95% interval lies wholly above the control's, and the effect "
        f"exceeds the control by at least {rule['min_effect']} and is at least "
        f"{rule['min_ratio']}x it (`patching.causal.CAUSAL_RULE`). Ablation passes when the "
        "*margin removed* or the *flip rate* passes against the matched features. The margin "
        "removed is the fraction of the clean decision margin (logit of the true value minus "
        "the best other, over rows the clean model gets right) that the ablation takes away "
        "(1 = pushed to the decision boundary, > 1 = flipped); the flip rate the fraction of "
        "predictions that change. Steering is judged on the fraction of sites whose prediction "
        "flips to the concept, against both controls. "
        "Verdict: `causal` when both pass (or ablation passes and steering is not applicable), "
        "`causal (ablation only)` / `causal (steering only)` when one does, else "
        "`correlational`.",
        "",
        "## Results",
        "",
        table,
        "",
    ]
    for verdict, names in by_verdict.items():
        lines.append(f"- **{verdict}**: {', '.join(names)}")
    if scalars:
        lines.append(f"- **not tested (scalar, correlational only)**: {', '.join(scalars)}")
    lines += ["", "## Every result", ""]
    for t in tests:
        lines += [
            f"### `{t.concept}`: feature {t.feature} (AUROC {t.auroc:.3f}) -> "
            f"{', '.join(t.targets)}: {t.verdict}",
            "",
            results_table(t.ablation + t.steering, markdown=True),
        ]
        if t.steering_note:
            lines += [f"Steering: {t.steering_note}.", ""]
        s = t.settings
        lines += [
            f"Controls: features {s['control_features']} (frequency "
            f"{', '.join(f'{x:.3f}' for x in s['control_frequency'])} vs "
            f"{s['feature_frequency']:.3f}); clamp value {s['steer_value']:.3g}; "
            f"{s['num_sites']} steering sites.",
            "",
        ]
    lines += ["## Figures", ""]
    for caption, png in images.items():
        lines += [f"**{caption}**", "", f"![{caption}]({png})", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    summary = {
        "algorithm": args.algorithm,
        "command": command,
        "sae": sae_text,
        "rule": CAUSAL_RULE,
        "wall_seconds": wall,
        "tests": tests,
        "not_tested": scalars,
    }
    (out / "results.json").write_text(json.dumps(_jsonable(summary), indent=1))
    say(f"wrote {out / 'report.md'}")
    return summary


if __name__ == "__main__":
    main()
