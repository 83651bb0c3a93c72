"""The markdown and figures of causal concept tests, shared by ``hooked-nar patch``,
``hooked-nar study`` and ``examples/feature_ablation.py``."""

from __future__ import annotations

import math
from pathlib import Path

from patching.causal import CAUSAL_RULE, DECIDING_METRICS, ConceptTest, concept_tests_table
from patching.causal.rule import moves

__all__ = ["baselines_table", "causal_sections", "rule_text"]


def rule_text() -> str:
    """The rule of :mod:`patching.causal.rule` in words, and how to read a verdict."""
    r = CAUSAL_RULE
    return (
        "Each intervention has one deciding measure on the concept's own target (its declared "
        f"downstream consequence): ablation the *{DECIDING_METRICS['ablation']}* (over the "
        "target rows where the consequence happens and the clean model predicts it, "
        "sum(clean margin - ablated margin) / sum(clean margin): 1 = pushed to the decision "
        f"boundary), steering the *{DECIDING_METRICS['steering']}* (the fraction of target "
        "rows without the consequence whose prediction turns to it). The unit is compared "
        "with null units of the same size that carry no information about the concept "
        "(random subsets of live features with |AUROC - 0.5| small for this concept and every "
        "concept sharing its target hint, and random subspaces of the same dimension, steered "
        "with the unit's own norm): paired per-graph differences (unit minus null mean) with a "
        "95% bootstrap interval over graphs and null units, and the exact rank p-value of the "
        "unit among the null units, Holm-corrected across every concept and intervention of "
        f"the run. The unit *moves* its target when the Holm p-value is <= {r['alpha']}, the "
        f"interval lies above 0 and the difference is >= {r['min_effect']}. Verdict per "
        "intervention: `causal` when the unit moves the target and reads the concept (its "
        f"AUROC for the concept is >= {r['min_auroc']}); `not causal` when it moves the target "
        "without reading the concept (then it is another concept's representation), or when it "
        "does not move the target while the positive control (the concept's difference-of-means "
        "direction, run the same way) does; `inconclusive` when neither does, or when the unit "
        "and every null unit "
        "have an effect of exactly 0. `inconclusive` is a result: it says the experiment could "
        "not have shown an effect (the target did not move even for the positive control), "
        "not that there is none. The concept is `causal` when an intervention is, else `not "
        "causal` when one is, else `inconclusive`. Specific: the unit's difference on its own "
        "target has an interval above its difference on every other concept's target and "
        "above every other concept's unit on this target. Verdicts are taken at dose 1 "
        "(ablation: the whole unit; steering: its largest observed activation where the "
        "concept is true); the curves show every dose."
    )


def baselines_table(tests: list[ConceptTest], baselines: dict[str, dict]) -> list[str]:
    """Markdown lines: each concept's unit AUROC (and feature splitting) beside the scores it
    must beat (:func:`sae.probes.concept_baselines`)."""
    f = lambda x: "-" if x is None or math.isnan(x) else f"{x:.3f}"  # noqa: E731
    lines = [
        "| concept | unit (AUROC) | features, decoder abs cos mean / max | best neuron | "
        "random directions: median / 95th pct | probe | probe, random-init model | "
        "probe, encoder embedding | shuffled-label probe (mean +- sd) |",
        "|" + "---|" * 9,
    ]
    for t in tests:
        b = baselines.get(t.concept, {})
        u = t.unit
        lines.append(
            f"| {t.concept} | {u['kind']} of {u['size']} ({f(t.auroc)}) | {u['features'] or '-'}"
            f", {f(u.get('decoder_cos_mean'))} / {f(u.get('decoder_cos_max'))} | "
            f"{f(b.get('best_neuron'))} | {f(b.get('random_median'))} / "
            f"{f(b.get('random_q95'))} | {f(b.get('probe'))} | {f(b.get('probe_random_init'))} "
            f"| {f(b.get('probe_embedding'))} | {f(b.get('probe_control'))} +- "
            f"{f(b.get('probe_control_sd'))} |"
        )
    return lines + [
        "",
        "AUROCs of neurons, random directions and probes are two-sided where a direction's "
        "sign is arbitrary (max(a, 1 - a)); the unit's is one-sided.",
        "",
    ]


def _verdict_text(comparison, verdict: str, auroc: float) -> str:
    """``-> verdict``, with the reason when the unit moves its target and is still not causal:
    it does not read the concept (AUROC below the rule's ``min_auroc``)."""
    if verdict == "not causal" and moves(comparison):
        return (
            f"-> {verdict} (moves the target, but reads the concept at AUROC {auroc:.3f} < "
            f"{CAUSAL_RULE['min_auroc']})"
        )
    return f"-> {verdict}"


def _null_text(null: dict) -> str:
    if not null:
        return "-"
    return (
        f"{null['feature_subsets']} subsets of {null['uninformative_features']} uninformative "
        f"features and {null['random_subspaces']} random subspaces"
    )


def _spec_line(t: ConceptTest, kind: str) -> str:
    sp = t.specificity.get(kind)
    if not sp:
        return ""
    fmt = lambda d: ", ".join(f"{c} {v:+.3f}" for c, v in d.items() if not math.isnan(v))  # noqa: E731
    verdict = sp.get("specific")
    word = "" if verdict is None else f" -> {'specific' if verdict else 'not specific'}"
    return (
        f"- {kind}: on each concept's target {fmt(sp['on_targets'])}; other concepts' units "
        f"on this target {fmt(sp['units_here']) or '-'}{word}"
    )


def causal_sections(
    tests: list[ConceptTest], out: str | Path, level: int = 2, baselines: dict | None = None
) -> tuple[list[str], dict[str, str]]:
    """Markdown lines (rule, summary table, per concept: unit, target, comparisons,
    specificity, sites per step, figures; with ``baselines``, the concept scores beside
    them) with ``level``-deep headings, and ``{caption:
    png}`` of the figures written into ``out``: the effects beside the null and one
    dose-response PNG per concept."""
    from patching.plots import causal_bars, dose_response

    if not tests:
        return ["No boolean concept to test."], {}
    out = Path(out)
    h = "#" * level
    alg = tests[0].algorithm
    images = {"Effect beside the null and the positive control (dose 1)": "causal_effects.png"}
    causal_bars(tests, out / "causal_effects.png", title=f"{alg}: causal tests of concept units")
    for t in tests:
        png = f"dose_{t.concept}.png"
        dose_response(t, out / png)
        images[f"`{t.concept}`: dose-response beside the null"] = png
    lines = [f"{h} Rule", "", rule_text(), "", f"{h} Results", ""]
    lines += [concept_tests_table(tests, markdown=True), ""]
    by_verdict: dict[str, list[str]] = {}
    for t in tests:
        by_verdict.setdefault(t.verdict, []).append(f"`{t.concept}`")
    lines += [f"- **{v}**: {', '.join(n)}" for v, n in by_verdict.items()]
    if baselines is not None:
        lines += ["", f"{h} Concept scores beside their baselines", ""]
        lines += baselines_table(tests, baselines)
    lines += ["", f"{h} Every result", ""]
    for t in tests:
        s = t.settings
        lines += [
            f"**`{t.concept}`** -> {t.target}: **{t.verdict}**",
            "",
            f"- unit: {t.unit['name']} (AUROC {t.auroc:.3f}); negation group "
            f"{t.negation_features or '-'}; null: {_null_text(s.get('null', {}))}",
            f"- ablation: {t.ablation.text()} {_verdict_text(t.ablation, t.ablation_verdict, t.auroc)}"
            "; positive control "
            f"{t.control_ablation.text()}",
        ]
        if t.steering is not None:
            lines.append(
                f"- steering: {t.steering.text()} "
                f"{_verdict_text(t.steering, t.steering_verdict, t.auroc)}; positive control "
                f"{t.control_steering.text()}; sites per step {t.sites_per_step}"
            )
        else:
            lines.append(
                "- steering: n/a (no site where the algorithm makes the concept true next)"
            )
        lines += [x for x in (_spec_line(t, "ablation"), _spec_line(t, "steering")) if x]
        lines.append("")
    lines += [f"{h} Figures", ""]
    for caption, png in images.items():
        lines += [f"**{caption}**", "", f"![{caption}]({png})", ""]
    return lines, images
