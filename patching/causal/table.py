"""The summary table of causal concept tests."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from patching.causal.concept_test import ConceptTest
from patching.causal.rule import Comparison

__all__ = ["concept_tests_table"]

HEADER = [
    "concept",
    "unit",
    "AUROC",
    "target",
    "ablation: margin removed vs null",
    "diff [95% CI]",
    "p (Holm)",
    "control diff",
    "steering: flip rate vs null",
    "diff [95% CI]",
    "p (Holm)",
    "control diff",
    "specific",
    "verdict",
]


def _cells(c: Comparison | None, verdict: str) -> list[str]:
    if c is None or math.isnan(c.effect):
        return ["n/a", "n/a", "n/a"]
    return [
        f"{c.effect:.3f} vs {c.null:.3f}",
        f"{c.diff:+.3f} [{c.diff_ci[0]:+.3f}, {c.diff_ci[1]:+.3f}]",
        f"{c.p_holm:.3g} -> {verdict}",
    ]


def _control(c: Comparison | None) -> str:
    return "n/a" if c is None or math.isnan(c.diff) else f"{c.diff:+.3f} (p {c.p_holm:.2g})"


def concept_tests_table(tests: Sequence[ConceptTest], markdown: bool = False) -> str:
    """One row per test: unit (size), its AUROC, target, per intervention the deciding
    measure beside the null mean, the paired difference with its interval, the Holm p-value
    with the intervention's verdict and the positive control's difference, then
    specificity and the verdict. Scalar concepts of the algorithm are listed below as not
    tested."""
    rows = []
    for t in tests:
        spec = t.specificity.get("specific")
        rows.append(
            [
                t.concept,
                f"{t.unit['kind']} ({t.unit['size']})",
                f"{t.auroc:.3f}",
                t.target.split(":")[0],
                *_cells(t.ablation, t.ablation_verdict),
                _control(t.control_ablation),
                *_cells(t.steering, t.steering_verdict),
                _control(t.control_steering),
                "n/a" if spec is None else ("yes" if spec else "no"),
                t.verdict,
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(x) for x in col) for col in zip(HEADER, *rows, strict=True)]
        fmt = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
        lines = [fmt(HEADER), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    from hooked_nar.concept_labels import CONCEPTS

    for alg in dict.fromkeys(t.algorithm for t in tests):
        scalars = [c for c, v in CONCEPTS[alg].items() if v.dtype != torch.bool]
        if scalars:
            lines.append(
                ("\n" if markdown else "")
                + f"{alg}: scalar concepts not tested (correlational only): {', '.join(scalars)}"
            )
    return "\n".join(lines) + "\n"
