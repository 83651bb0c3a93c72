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


@torch.no_grad()
def ablation_figure(model, sae, test: ConceptTest, data, path: Path) -> Path:
    """One graph ``data``: the target hint's logits per step, clean and with the test's
    feature zero-ablated at every step (wrong predictions outlined)."""
    from hooked_nar.data import collate
    from patching.interventions import ablate_features
    from patching.plots import draw_before_after

    batch = collate([data])
    hint = test.targets[0]
    clean = model(batch).hints[hint]
    ablated = model.run_with_hooks(batch, fwd_hooks=ablate_features(model, sae, [test.feature]))
    ablated = ablated.hints[hint]
    S = min(clean.shape[1], int(data.length) - 1)
    truth = data[hint][:, 1 : S + 1] > 0.5
    name = f"f{test.feature} ablated"
    rows = {"clean": clean[:, :S].T, name: ablated[:, :S].T}
    field = next(f for f in model.hint_fields if f.name == hint)
    wrong = None  # for a mask_one hint the arg-max node is the prediction, not the sign
    if field.type != "mask_one":
        wrong = {"clean": ((clean[:, :S] > 0) != truth).T, name: ((ablated[:, :S] > 0) != truth).T}
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
