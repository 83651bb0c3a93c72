"""The markdown and figures of causal concept tests, shared by ``hooked-nar patch``,
``hooked-nar study`` and ``examples/feature_ablation.py``."""

from __future__ import annotations

from pathlib import Path

import torch

from patching.causal import CAUSAL_RULE, ConceptTest, concept_tests_table
from patching.controls import results_table

__all__ = ["ablation_figure", "causal_sections", "rule_text"]


def rule_text() -> str:
    """:data:`patching.causal.CAUSAL_RULE` in words."""
    rule = CAUSAL_RULE
    return (
        "A result passes when its 95% interval lies wholly above the control's, and the effect "
        f"exceeds the control by at least {rule['min_effect']} and is at least "
        f"{rule['min_ratio']}x it (`patching.causal.CAUSAL_RULE`). Ablation passes when the "
        "*margin removed* or the *flip rate* passes against the matched features. The margin "
        "removed is the fraction of the clean decision margin (logit of the true value minus "
        "the best other, over rows the clean model gets right) that the ablation takes away "
        "(1 = pushed to the decision boundary, > 1 = flipped); the flip rate the fraction of "
        "predictions that change. Steering is judged on the fraction of sites whose prediction "
        "flips to the concept, against both controls. Verdict: `causal` when both pass (or "
        "ablation passes and steering is not applicable), `causal (ablation only)` / `causal "
        "(steering only)` when one does, else `correlational`."
    )


def _hint_view(model, test: ConceptTest, hint: str, logits, target):
    """``(value [n, S], predicted [n, S] bool or None, truth [n, S] bool, label)`` of the
    target hint for the figure: a mask's logit; for a categorical hint ([n, S, C]), the
    logit of the probability that the concept holds (the class the concept's rule names,
    else the true class), so that every hint type draws as one value per node and step."""
    from hooked_nar.concepts import CONCEPTS

    field = next(f for f in model.hint_fields if f.name == hint)
    if field.type != "categorical":
        # a mask_one hint's prediction is the arg-max node, not the sign: no wrong outline
        predicted = None if field.type == "mask_one" else logits > 0
        return logits, predicted, target > 0.5, f"{hint} logit"
    concept = CONCEPTS.get(test.algorithm, {}).get(test.concept)
    rule = getattr(concept, "rule", ())
    if getattr(concept, "source_hint", None) == hint and rule and rule[0] in ("class", "not_class"):
        cls, negate = int(rule[1]), rule[0] == "not_class"
    else:
        cls, negate = None, False
    truth_class = target.argmax(-1)
    log_p = torch.log_softmax(logits.float(), dim=-1)
    if cls is None:  # the true class of each node and step
        lp = log_p.gather(-1, truth_class.unsqueeze(-1)).squeeze(-1)
        return (
            lp - torch.log1p(-lp.exp().clamp(max=1 - 1e-6)),
            None,
            truth_class >= 0,
            (f"{hint}: logit of P(true class)"),
        )
    lp = log_p[..., cls]
    value = lp - torch.log1p(-lp.exp().clamp(max=1 - 1e-6))  # logit of P(class)
    predicted, truth = logits.argmax(-1) == cls, truth_class == cls
    if negate:
        value, predicted, truth = -value, ~predicted, ~truth
    return value, predicted, truth, f"{hint}: logit of P({test.concept})"


@torch.no_grad()
def ablation_figure(model, sae, test: ConceptTest, data, path: Path) -> Path:
    """One graph ``data``: the target hint's logits per step, clean and with the test's
    feature zero-ablated at every step (wrong predictions outlined). A categorical hint
    ([n, S, C]) is drawn as the logit of the probability that the concept holds."""
    from hooked_nar.data import collate
    from patching.interventions import ablate_features
    from patching.plots import draw_before_after

    batch = collate([data])
    hint = test.targets[0]
    clean = model(batch).hints[hint]
    ablated = model.run_with_hooks(batch, fwd_hooks=ablate_features(model, sae, [test.feature]))
    ablated = ablated.hints[hint]
    S = min(clean.shape[1], int(data.length) - 1)
    target = data[hint][:, 1 : S + 1]
    clean_v, clean_p, truth, label = _hint_view(model, test, hint, clean[:, :S], target)
    ablated_v, ablated_p, _, _ = _hint_view(model, test, hint, ablated[:, :S], target)
    name = f"f{test.feature} ablated"
    rows = {"clean": clean_v.T, name: ablated_v.T}
    wrong = None
    if clean_p is not None:
        wrong = {"clean": (clean_p != truth).T, name: (ablated_p != truth).T}
    lim = float(torch.cat([clean_v, ablated_v]).abs().max())
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
        value_label=label,
        title=f"{test.algorithm}: {hint} logits before / after zero-ablating feature "
        f"{test.feature} ({test.concept}) at every step; margin removed "
        f"{test.ablation[0].effect:.2f} (controls {test.ablation[0].control:.2f})",
    )


def causal_sections(
    model,
    sae,
    tests: list[ConceptTest],
    out: str | Path,
    example,
    level: int = 2,
) -> tuple[list[str], dict[str, str]]:
    """Markdown lines (rule, summary table, verdicts, every result, figures) of ``tests`` with
    ``level``-deep headings, and ``{caption: png}`` of the figures written into ``out``: the
    effects beside controls, and per concept with one target hint its logits on graph
    ``example`` (a ``Data``) before / after ablation."""
    from hooked_nar.concepts import CONCEPTS
    from patching.plots import causal_bars

    out = Path(out)
    h = "#" * level
    alg = model.cfg.algorithm
    images = {"Effect beside controls (95% bootstrap CI over graphs)": "causal_effects.png"}
    causal_bars(tests, out / "causal_effects.png", title=f"{alg}: causal tests of concept features")
    for t in tests:
        if len(t.targets) == 1:
            png = f"ablation_{t.concept}.png"
            ablation_figure(model, sae, t, example, out / png)
            images[
                f"`{t.concept}`: {t.targets[0]} logits before / after ablating feature {t.feature}"
            ] = png
    by_verdict: dict[str, list[str]] = {}
    for t in tests:
        by_verdict.setdefault(t.verdict, []).append(f"`{t.concept}` (f{t.feature})")
    scalars = [c for c, v in CONCEPTS[alg].items() if v.dtype != torch.bool]
    lines = [
        f"{h} Rule",
        "",
        rule_text(),
        "",
        f"{h} Results",
        "",
        concept_tests_table(tests, markdown=True),
        "",
    ]
    lines += [f"- **{verdict}**: {', '.join(names)}" for verdict, names in by_verdict.items()]
    if scalars:
        lines.append(f"- **not tested (scalar, correlational only)**: {', '.join(scalars)}")
    lines += ["", f"{h} Every result", ""]
    for t in tests:
        s = t.settings
        lines += [
            f"**`{t.concept}`**: feature {t.feature} (AUROC {t.auroc:.3f}) -> "
            f"{', '.join(t.targets)}: {t.verdict}",
            "",
            results_table(t.ablation + t.steering, markdown=True),
        ]
        if t.steering_note:
            lines += [f"Steering: {t.steering_note}.", ""]
        lines += [
            f"Controls: features {s['control_features']} (frequency "
            f"{', '.join(f'{x:.3f}' for x in s['control_frequency'])} vs "
            f"{s['feature_frequency']:.3f}); clamp value {s['steer_value']:.3g}; "
            f"{s['num_sites']} steering sites.",
            "",
        ]
    lines += [f"{h} Figures", ""]
    for caption, png in images.items():
        lines += [f"**{caption}**", "", f"![{caption}]({png})", ""]
    return lines, images
