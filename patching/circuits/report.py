"""A circuit run as files: ``report.md`` (tables and how to read them), ``results.json`` and
PNGs beside them, all written atomically; and the overlap of two runs' circuits.

>>> paths = write_report(result, "runs/circuit/dijkstra", command="hooked-nar circuit ...")
>>> overlap = circuit_overlap(result_bf, result_dijkstra)   # Jaccard beside its chance level
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from hooked_nar.atomic import write_json_atomic, write_text_atomic
from patching.circuits.discovery import CircuitResult
from patching.circuits.faithfulness import jaccard
from patching.circuits.plots import (
    plot_agreement,
    plot_edge_circuit,
    plot_faithfulness,
    plot_unit_heatmap,
)

__all__ = ["circuit_overlap", "overlap_markdown", "same_initial_processor", "write_report"]


def _f(x, digits: int = 3) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(v, ci) -> str:
    return f"{_f(v)} [{_f(ci[0])}, {_f(ci[1])}]"


def circuit_overlap(
    a: CircuitResult,
    b: CircuitResult,
    granularity: str = "tied",
    method: str = "eap_ig",
    draws: int = 2000,
    seed: int = 0,
    same_initial_processor: bool | None = None,
) -> dict[str, Any]:
    """Jaccard overlap of the chosen circuits of two runs (same component layout: same
    sites and widths), beside the Jaccard of random circuits of the same two sizes (the
    level unrelated unit indices reach by chance) and a rank p-value against it."""
    ca, cb = a.circuit(granularity, method), b.circuit(granularity, method)
    if ca.shape != cb.shape:
        raise ValueError(
            f"the circuits have {ca.numel()} and {cb.numel()} components; overlap needs the same "
            "component layout (same sites, widths and, per step, the same number of steps)"
        )
    C, ka, kb = ca.numel(), int(ca.sum()), int(cb.sum())
    gen = torch.Generator().manual_seed(seed)
    chance = []
    for _ in range(draws):
        ra, rb = torch.zeros(C, dtype=torch.bool), torch.zeros(C, dtype=torch.bool)
        ra[torch.randperm(C, generator=gen)[:ka]] = True
        rb[torch.randperm(C, generator=gen)[:kb]] = True
        chance.append(jaccard(ra, rb))
    chance_t = torch.tensor(chance, dtype=torch.float64)
    value = jaccard(ca, cb)
    return {
        "algorithms": [a.options.algorithm, b.options.algorithm],
        "granularity": granularity,
        "method": method,
        "sizes": [ka, kb],
        "components": C,
        "jaccard": value,
        "chance_mean": float(chance_t.nanmean()),
        "chance_95": float(torch.quantile(chance_t[torch.isfinite(chance_t)], 0.95)),
        "p_vs_chance": float(((chance_t >= value).sum() + 1) / (draws + 1)),
        "minar_reference": 0.6,
        "same_initial_processor": same_initial_processor,
    }


def same_initial_processor(model_a, model_b) -> bool:
    """Whether two models' processors were initialised with identical weights (rebuilt from
    their configs, whose seed fixes the initialisation)."""
    with torch.random.fork_rng():  # building a model seeds the global generator
        fresh = [type(m)(m.cfg).processor.state_dict() for m in (model_a, model_b)]
    return fresh[0].keys() == fresh[1].keys() and all(
        fresh[0][k].shape == fresh[1][k].shape and torch.equal(fresh[0][k], fresh[1][k])
        for k in fresh[0]
    )


def overlap_markdown(overlap: dict[str, Any]) -> str:
    """One paragraph and a table of :func:`circuit_overlap`."""
    a, b = overlap["algorithms"]
    same = {
        True: "identical weights (same seed and shapes)",
        False: "different weights",
        None: "weights not compared",
    }[overlap.get("same_initial_processor")]
    return (
        f"## Circuit overlap: {a} vs {b}\n\n"
        f"{overlap['granularity']} components, circuits chosen by {overlap['method']} "
        f"({overlap['sizes'][0]} and {overlap['sizes'][1]} of {overlap['components']}).\n\n"
        "| Jaccard | random circuits of the same sizes (mean / 95th pct) | p vs chance | MINAR |\n"
        "|---|---|---|---|\n"
        f"| {_f(overlap['jaccard'])} | {_f(overlap['chance_mean'])} / {_f(overlap['chance_95'])} "
        f"| {_f(overlap['p_vs_chance'])} | ~{overlap['minar_reference']} |\n\n"
        f"The two processors started from {same}. Unit indices are comparable only when they "
        "did; otherwise the chance level is the whole answer. MINAR's ~0.6 was measured on "
        "its own models and circuits.\n"
    )


def _agreement_table(result: CircuitResult) -> list[str]:
    lines = [
        "| components | method | Spearman vs exact (components that matter) | n | "
        "Spearman (all nonzero) | n | target >= 0.9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for gran, methods in result.agreement.items():
        for method, a in methods.items():
            ok = a["spearman"] >= 0.9 if math.isfinite(a["spearman"]) else False
            miss = "" if ok else f" by {_f(0.9 - a['spearman'], 2)}"
            lines.append(
                f"| {gran} | {method} | {_f(a['spearman'])} | {a['components']} | "
                f"{_f(a['spearman_nonzero'])} | {a['nonzero']} | {'met' if ok else 'missed'}{miss} |"
            )
    return lines


def _curve_table(curve) -> list[str]:
    suff, nec = curve.faithfulness("sufficiency"), curve.faithfulness("necessity")
    suff_r, nec_r = (
        curve.faithfulness("sufficiency", "random"),
        curve.faithfulness("necessity", "random"),
    )
    acc, acc_r = (
        curve.kept("sufficiency", "node_accuracy"),
        curve.kept("sufficiency", "node_accuracy", "random"),
    )
    gacc = curve.kept("sufficiency", "graph_accuracy")
    vs = curve.versus_random("sufficiency", "node_accuracy")
    lines = [
        "| size | components | sufficiency [95% CI] | random | necessity (left) | random | "
        "node acc kept [95% CI] | random | node acc | graph acc kept | node acc minus random [95% CI], "
        "Holm p |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (f, n) in enumerate(zip(curve.fractions, curve.sizes, strict=True)):
        lines.append(
            f"| {f:.0%} | {n} | {_ci(suff['value'][i], suff['ci'][i])} | {_f(suff_r['value'][i])} | "
            f"{_ci(nec['value'][i], nec['ci'][i])} | {_f(nec_r['value'][i])} | "
            f"{_ci(acc['value'][i], acc['ci'][i])} | {_f(acc_r['value'][i])} | "
            f"{_f(acc['absolute'][i])} | {_f(gacc['value'][i])} | "
            f"{_ci(vs['diff'][i], vs['ci'][i])}, {_f(vs['p_holm'][i])} |"
        )
    return lines


def _target_line(result: CircuitResult, gran: str, method: str) -> str:
    """One line: is there a circuit of at most ``max_fraction`` keeping ``target_kept`` of
    the full model's node accuracy, beside the empty and random circuits."""
    o = result.options
    curve = result.curves[gran][method]
    kept = curve.kept("sufficiency", "node_accuracy")["value"]
    random = curve.kept("sufficiency", "node_accuracy", "random")["value"]
    allowed = [
        (f, v, r)
        for f, v, r in zip(curve.fractions, kept, random, strict=True)
        if f <= o.max_fraction
    ]
    best = max(allowed, key=lambda x: x[1])
    empty = kept[curve.fractions.index(0.0)] if 0.0 in curve.fractions else float("nan")
    met = [(f, v) for f, v, _ in allowed if v >= o.target_kept]
    if empty >= o.target_kept:
        verdict = (
            f"**not measurable** here: the empty circuit already keeps {_f(empty)} (with "
            f"`{o.ablation}` ablation the nodes an edit leaves alone stay right with nothing "
            "kept; use `--ablation mean`)"
        )
    elif met:
        f, v = met[0]
        verdict = f"**met**: {f:.0%} of the {gran} components keep {_f(v)}"
    else:
        verdict = (
            f"**missed** by {_f(o.target_kept - best[1])}: the best circuit of at most "
            f"{o.max_fraction:.0%} keeps {_f(best[1])} (at {best[0]:.0%})"
        )
    return (
        f"- {method}: {verdict}; empty circuit {_f(empty)}, random circuits of "
        f"{best[0]:.0%} {_f(best[2])}."
    )


def write_report(
    result: CircuitResult, out, command: str = "", seconds: float | None = None
) -> dict[str, Path]:
    """``report.md``, ``results.json`` and PNGs of ``result`` in ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    o = result.options
    alg = o.algorithm
    paths: dict[str, Path] = {}
    paths["agreement"] = plot_agreement(
        result.scores, out / "agreement.png", title=f"{alg}: attribution vs exact patching"
    )
    for gran in result.curves:
        paths[f"faithfulness_{gran}"] = plot_faithfulness(
            result.curves[gran],
            out / f"faithfulness_{gran}.png",
            title=f"{alg}: {gran} components, {o.ablation} ablation, {o.eval_graphs} held-out graphs",
        )
    if "step" in result.scores:
        paths["units"] = plot_unit_heatmap(
            result.scores["step"]["eap_ig"],
            result.sites,
            out / "units.png",
            title=f"{alg}: EAP-IG per unit and step",
        )
    paths["edges"] = plot_edge_circuit(
        result.scores["edge"]["eap_ig"],
        result.pairs[0],
        0,
        out / "edges.png",
        title=f"{alg}: EAP-IG of each message edge, graph 0",
    )

    lines = [
        f"# Circuits of {alg}",
        "",
        f"Command: `{command}`" if command else "",
        f"Run time: {seconds:.0f} s (one CPU core)." if seconds is not None else "",
        "",
        "## Setup",
        "",
        f"- Counterfactual edit: `{o.kind}` on {o.nodes}-node graphs; scores on {o.num_graphs} "
        f"pairs, faithfulness on {o.eval_graphs} held-out pairs; message edges of {o.edge_graphs} pairs.",
        f"- Metric: pointer-logit difference of the output `pi` (true parent minus the "
        f"counterfactual's parent, on the nodes where they differ); clean "
        f"{_f(result.settings['clean_metric'])}, reference run "
        f"{_f(result.settings['reference_metric'])}.",
        f"- Ablation: `{o.ablation}` (what an ablated unit takes, for scores and faithfulness).",
        f"- Full model on the held-out clean graphs: node accuracy "
        f"{_f(result.settings['eval_full']['node_accuracy'])}, graph accuracy "
        f"{_f(result.settings['eval_full']['graph_accuracy'])}.",
        f"- EAP-IG: {o.ig_steps} midpoints, scope `{o.ig_scope}`.",
        "",
        "Sites (units per processor step): "
        + ", ".join(f"`{s.name}` ({s.rows} rows, {s.width} units)" for s in result.sites)
        + f"; {result.num_steps} steps. Components: "
        + ", ".join(
            f"{g} {len(next(iter(s.values())).components)}" for g, s in result.scores.items()
        )
        + ".",
        "",
        "## EAP and EAP-IG against exact patching",
        "",
        f"Components that matter: |exact effect| above {o.agreement_threshold} of the largest, "
        "exact zeros excluded. Effects are the change of the metric when the component alone is "
        "ablated, on the scoring pairs.",
        "",
        *_agreement_table(result),
        "",
        "![agreement](agreement.png)",
        "",
        "## Faithfulness",
        "",
        "Circuits are the top-k components by |score|. Sufficiency: (m - m_empty) / (m_full - "
        "m_empty) with everything outside the circuit ablated (1 = full model, 0 = nothing "
        "kept); necessity: the same with the circuit ablated (low = the circuit is needed). "
        "Random: mean of random circuits of the same size. Intervals: 95% bootstrap over "
        "held-out graphs (ratios of sums). Last column (patching.stats): node accuracy of the "
        "circuit-only model minus that of random circuits of its size, paired per graph, with "
        "a bootstrap interval over graphs and random circuits, and the rank p-value among the "
        "random circuits, Holm-corrected across sizes.",
        "",
    ]
    for gran, curves in result.curves.items():
        lines += [f"### {gran} components", ""]
        lines += [
            f"Target: a circuit of at most {o.max_fraction:.0%} of the components keeping "
            f">= {o.target_kept} of the full model's node accuracy.",
            "",
        ]
        lines += [_target_line(result, gran, m) for m in curves]
        lines.append("")
        for method, curve in curves.items():
            a = curve.areas()
            lines += [
                f"#### circuits by {method}",
                "",
                f"CPR {_f(a['cpr_circuit'])} (random {_f(a['cpr_random'])}), CMD "
                f"{_f(a['cmd_circuit'])} (random {_f(a['cmd_random'])}), necessity area "
                f"{_f(a['necessity_area_circuit'])} (random {_f(a['necessity_area_random'])}).",
                "",
                *_curve_table(curve),
                "",
            ]
        lines += [f"![faithfulness {gran}](faithfulness_{gran}.png)", ""]
    chosen = {}
    for method in ("eap_ig", "mask"):
        if method not in result.curves.get("tied", {}):
            continue
        circuit = result.circuit("tied", method)
        scores = result.scores["tied"][method]
        rank = scores.mean().abs()
        idx = sorted((int(i) for i in circuit.nonzero().flatten()), key=lambda i: -float(rank[i]))
        fraction = result.chosen_fraction("tied", method)
        chosen[method] = {
            "fraction": fraction,
            "components": [scores.components[i].label for i in idx],
        }
        lines += [
            f"## The chosen tied circuit ({method})",
            "",
            f"{len(idx)} of {len(scores.components)} components ({fraction:.0%}; the smallest grid "
            f"size reaching the target, else {o.max_fraction:.0%}), strongest first: "
            + ", ".join(chosen[method]["components"][:40])
            + (" ..." if len(idx) > 40 else ""),
            "",
        ]
    lines += [
        "## Pictures",
        "",
        "![units](units.png)" if "units" in paths else "",
        "",
        "Units x steps: each panel is a site, rows its units with the largest total effect, "
        "columns processor steps; colour: the metric change when that unit alone is ablated at "
        "that step, as a fraction of the clean-reference gap (red: ablating it lowers the metric).",
        "",
        "![edges](edges.png)",
        "",
        "Message edges: the input graph once per step; each arrow i -> j is the message from i "
        "to j at that step, thick and dark when ablating that one message changes the metric "
        "a lot (red: lowers it). Node rings: the self-loop message.",
        "",
        "## Data flow between sites (one step)",
        "",
        *[f"- {src} -> {dst}: {how}" for src, dst, how in result.data_flow if dst.endswith("@1")],
        "",
    ]
    text = "\n".join(line for line in lines if line is not None) + "\n"
    paths["report"] = write_text_atomic(out / "report.md", text)
    data = result.as_dict()
    data["chosen_circuits"] = chosen
    data["command"], data["seconds"] = command, seconds
    paths["json"] = write_json_atomic(out / "results.json", data)
    return paths
