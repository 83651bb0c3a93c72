"""Steer concept features on a shipped HookedNAR checkpoint: dose-response and graphs before /
after, beside controls, on CPU in minutes.

    python examples/steering.py --algorithm bfs
    python examples/steering.py --algorithm mst_prim --sae runs/saes/mst_prim

For every boolean concept with a hint behind it (``is_visited`` -> ``reach_h``, ``is_settled``
-> ``mark``, ...): the SAE feature with the highest AUROC is clamped at single (node, step)
sites where the concept is false (in truth and in the clean prediction), at several multiples
of its default value (the 0.9 quantile of its activation where the concept is true); the
measure is the fraction of sites whose prediction from that step flips to the concept, beside
random directions of the same norm and frequency-matched features clamped to the same
multiple of their own 0.9 quantile (:func:`patching.causal.causal_concept_test`). For each
concept one graph is drawn step by step: truth, clean model, steered model, and the same
site pushed by a random direction of the same norm. Writes ``report.md``, ``results.json``
and PNGs to ``runs/steering/<algorithm>``.

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


def _ci(value: float, ci) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def find_flip(model, sae, test, dataset, seed: int, max_graphs: int = 16):
    """``(graph index, node, step)`` of a site where clamping the feature flips the prediction
    to the concept (the first such graph among the first ``max_graphs``), else None."""
    from hooked_nar.data import collate
    from patching import concept_predictions, steer, steering_sites

    graphs = list(range(min(max_graphs, len(dataset))))
    batch = collate([dataset[g] for g in graphs])
    rounds, _ = steering_sites(model, batch, test.concept, sites_per_graph=1, seed=seed)
    if not rounds:
        return None
    sites = rounds[0]
    hooks = steer(model, test.feature, test.settings["steer_value"], nodes=sites, sae=sae)
    pred, _ = concept_predictions(model, batch, test.concept, fwd_hooks=hooks)
    for node, step in sites.nonzero().tolist():
        if pred[node, step]:
            g = int(batch.batch[node])
            return graphs[g], node - int(batch.ptr[g]), step
    return None


def before_after(model, sae, test, data, node: int, step: int, path: Path, seed: int) -> Path:
    """Truth / clean / steered / random-direction rows of one graph, the site outlined."""
    from hooked_nar.data import collate
    from patching import concept_predictions, random_directions, steer
    from patching.plots import draw_before_after

    batch = collate([data])
    value = test.settings["steer_value"]
    hook = test.settings["sae"]["hook"]
    site = torch.zeros(batch.num_nodes, step + 1, dtype=torch.bool)
    site[node, step] = True
    clean, truth = concept_predictions(model, batch, test.concept)
    steered, _ = concept_predictions(
        model, batch, test.concept, fwd_hooks=steer(model, test.feature, value, nodes=site, sae=sae)
    )
    with torch.no_grad():
        _, cache = model.run_with_cache(batch, names_filter=f"steps.{step}.{hook}")
        x = cache[f"steps.{step}.{hook}"][node : node + 1]
        acts = sae.encode(x)
        clamped = acts.clone()
        clamped[:, test.feature] = value
        norm = (sae.decode(clamped) - sae.decode(acts)).norm()
    direction = random_directions(x.shape[1], 1, norm, seed=seed)[0]
    rand, _ = concept_predictions(
        model,
        batch,
        test.concept,
        fwd_hooks=steer(model, direction, 1.0, steps=[step], nodes=[node], hook=hook),
    )
    S = int(data.length) - 1
    steps = list(range(S)) if S <= 8 else list(range(max(0, step - 2), min(S, step + 4)))
    where = torch.zeros(S, batch.num_nodes, dtype=torch.bool)
    where[step, node] = True
    rows = {
        "truth": truth[:, :S].T,
        "clean model": clean[:, :S].T,
        f"f{test.feature} = {value:.2f}": steered[:, :S].T,
        f"random dir. |{float(norm):.2f}|": rand[:, :S].T,
    }
    outlines = {
        "clean model": where,
        f"f{test.feature} = {value:.2f}": (steered != clean)[:, :S].T,
        f"random dir. |{float(norm):.2f}|": (rand != clean)[:, :S].T,
    }
    return draw_before_after(
        data,
        rows,
        path,
        kind="mask",
        steps=steps,
        outlines=outlines,
        outline_label="steered site (clean row) / changed prediction",
        value_label=test.concept,
        mask_labels=(f"not {test.concept}", test.concept),
        title=f"{test.algorithm}: clamp feature {test.feature} ({test.concept}) at node {node}, "
        f"step {step} only; predictions of hint t + 1",
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", default="bfs", help="shipped checkpoint (bfs, dijkstra, ...)")
    p.add_argument("--sae", default=None, help="saved SAE directory (default: train one)")
    p.add_argument("--output", default=None, help="default runs/steering/<algorithm>")
    p.add_argument("--num-graphs", type=int, default=32, help="test graphs (n = --nodes)")
    p.add_argument("--store-graphs", type=int, default=128, help="graphs for the best feature")
    p.add_argument("--nodes", type=int, default=16)
    p.add_argument("--num-controls", type=int, default=8)
    p.add_argument("--sites-per-graph", type=int, default=4)
    p.add_argument("--scales", default="0.5,1,2,4", help="clamp values as multiples of the default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    scales = [float(s) for s in args.scales.split(",")]

    from hooked_nar.app.commands.patch import causal_data, load_or_train_sae
    from hooked_nar.atomic import write_json_atomic, write_text_atomic
    from hooked_nar.concepts import CONCEPTS
    from hooked_nar.model import HookedNAR
    from patching import CAUSAL_RULE, causal_concept_test, passes_rule
    from patching.plots import dose_response

    out = Path(args.output or f"runs/steering/{args.algorithm}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    say = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731

    model = HookedNAR.from_pretrained(args.algorithm, algorithm=args.algorithm)
    sae, sae_text = load_or_train_sae(args.sae, model, out, args.seed, say)
    store, test_data = causal_data(model, args.store_graphs, args.num_graphs, args.nodes, args.seed)
    hints = {f.name for f in model.hint_fields}
    concepts = [
        c
        for c, v in CONCEPTS[args.algorithm].items()
        if v.dtype == torch.bool and v.source_hint in hints
    ]
    curves: dict[str, list] = {}
    for c in concepts:
        for scale in scales:
            t = causal_concept_test(
                model,
                sae,
                c,
                test_data,
                store=store,
                steer_scale=scale,
                num_controls=args.num_controls,
                sites_per_graph=args.sites_per_graph,
                seed=args.seed,
                progress=False,
            )
            curves.setdefault(c, []).append((scale, t))
            r = t.steering[0]
            say(
                f"{c} f{t.feature} x{scale:g} (clamp {t.settings['steer_value']:.2f}): flips "
                f"{r.effect:.3f} vs random dir. {r.control:.3f}, matched "
                f"{t.steering[1].control:.3f}"
            )

    images = {"Dose-response: flip rate against the clamp value": "dose_response.png"}
    dose_response(
        curves, out / "dose_response.png", title=f"{args.algorithm}: steering dose-response"
    )
    examples = {}
    for c, points in curves.items():
        passing = [t for _, t in points if all(passes_rule(r) for r in t.steering)]
        chosen = passing[0] if passing else points[-1][1]
        found = find_flip(model, sae, chosen, test_data, args.seed)
        if found is None:
            examples[c] = None
            continue
        g, node, step = found
        png = f"steer_{c}.png"
        before_after(model, sae, chosen, test_data[g], node, step, out / png, args.seed)
        examples[c] = {
            "graph": g,
            "node": node,
            "step": step,
            "steer_scale": chosen.settings["steer_scale"],
            "steer_value": chosen.settings["steer_value"],
        }
        images[
            f"`{c}`: feature {chosen.feature} clamped to {chosen.settings['steer_value']:.2f} "
            f"(x{chosen.settings['steer_scale']:g}) at node {node}, step {step} of test graph {g}"
        ] = png

    command = "python examples/steering.py " + " ".join(sys.argv[1:] if argv is None else argv)
    wall = time.perf_counter() - t_start
    rule = CAUSAL_RULE
    lines = [
        f"# Steering concept features: {args.algorithm}",
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
        f"{args.store_graphs} held-out ER graphs (n = {args.nodes}, seed {20_000 + args.seed})",
        f"- test graphs: {len(test_data)} ER graphs (n = {args.nodes}, seed "
        f"{30_000 + args.seed}); up to {args.sites_per_graph} sites per graph where the concept "
        "is false in truth and in the clean prediction and could be predicted true (a frontier "
        "node must not be reached yet)",
        "- intervention: the feature clamped at that node and step only (its SAE reconstruction "
        "error kept); measure: the prediction of the concept from that step (hint t + 1) at "
        "that node flips to true",
        f"- controls at the same sites: {args.num_controls} random directions with the norm of "
        f"the feature's edit there, and {args.num_controls} frequency-matched features clamped "
        "to the same multiple of their own 0.9 quantile",
        f"- clamp values: {', '.join(f'{s:g}' for s in scales)} x the default (the 0.9 quantile "
        "of the feature's activation where the concept is true)",
        f"- seed {args.seed}; wall time {wall:.0f} s on {args.threads} CPU thread(s)",
        "",
        f"Rule (`patching.causal.CAUSAL_RULE`): the flip rate passes when its 95% interval lies "
        f"above each control's, it exceeds each by >= {rule['min_effect']} and is >= "
        f"{rule['min_ratio']}x it.",
        "",
        "## Results",
        "",
        "| concept | feature (AUROC) | scale | clamp value | sites | flip to concept [95% CI] "
        "| random directions | matched features | passes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, points in curves.items():
        for scale, t in points:
            a, b = t.steering
            ok = all(passes_rule(r) for r in t.steering)
            lines.append(
                f"| `{c}` | {t.feature} ({t.auroc:.3f}) | {scale:g} | "
                f"{t.settings['steer_value']:.3f} | {t.settings['num_sites']} | "
                f"{_ci(a.effect, a.effect_ci)} | {_ci(a.control, a.control_ci)} | "
                f"{_ci(b.control, b.control_ci)} | {'yes' if ok else 'no'} |"
            )
    skipped = [c for c, v in CONCEPTS[args.algorithm].items() if c not in concepts]
    lines += [
        "",
        f"Not steered: {', '.join(f'`{c}`' for c in skipped) or 'none'} (read from an input, "
        "or scalar: no prediction to flip).",
        "",
        "## Figures",
        "",
    ]
    for caption, png in images.items():
        lines += [f"**{caption}**", "", f"![{caption}]({png})", ""]
    missing = [c for c, e in examples.items() if e is None]
    if missing:
        lines += [f"No flipping site found to draw for: {', '.join(missing)}.", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    summary = {
        "algorithm": args.algorithm,
        "command": command,
        "sae": sae_text,
        "rule": CAUSAL_RULE,
        "wall_seconds": wall,
        "curves": {
            c: [{"steer_scale": s, "test": t} for s, t in points] for c, points in curves.items()
        },
        "examples": examples,
    }
    write_json_atomic(out / "results.json", summary)
    say(f"wrote {out / 'report.md'}")
    return summary


if __name__ == "__main__":
    main()
