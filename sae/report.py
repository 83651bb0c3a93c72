"""Feature analysis of a trained SAE and its markdown report.

:func:`analyse_sae` gathers everything the issue asks of an SAE on a store: concept scores,
best feature per concept, monosemantic features, linear probes with controls, and top
examples. :func:`write_report` renders that (plus evaluation and sweep figures) as
``report.md``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hooked_nar.atomic import write_text_atomic
from sae.evaluate import encode_rows, recovered_text
from sae.feature_scores import (
    MONOSEMANTIC_RULE,
    best_features,
    concepts_with_feature,
    feature_concept_scores,
    monosemantic_features,
    top_examples,
)
from sae.probes import probe_concepts
from sae.sweep import describe

if TYPE_CHECKING:
    from sae_lens import SAE

    from sae.activation_store import ActivationStore

__all__ = ["analyse_sae", "report_sections", "write_report"]

TARGET_AUROC = 0.95


def analyse_sae(
    sae: SAE,
    store: ActivationStore,
    hook: str | None = None,
    probes: bool = True,
    top_k: int = 8,
    state: str = "computed",
    seed: int = 0,
) -> dict:
    """Concept statistics of ``sae`` on ``store`` (valid rows only).

    Returns ``{"scores": ConceptScores, "acts": [R, d_sae], "best": {concept: {...}},
    "monosemantic": [...], "covered": [concepts with AUROC >= 0.95], "probes": {concept:
    ProbeResult}, "probe_only": [concepts a probe reads (AUROC >= 0.95) but no feature
    does], "top_examples": {concept: [rows of its best feature]}}``.
    """
    rows, index, labels = store.for_analysis(hook, state)
    labels = {c: v for c, v in labels.items() if v.unique().numel() > 1}  # constant: no test
    acts, _ = encode_rows(sae, rows)
    scores = feature_concept_scores(acts, labels)
    best = best_features(scores)
    out = {
        "scores": scores,
        "acts": acts,
        "best": best,
        "monosemantic": monosemantic_features(scores),
        "covered": concepts_with_feature(scores, TARGET_AUROC),
        "top_examples": {
            c: top_examples(acts, index, b["feature"], top_k, labels) for c, b in best.items()
        },
        "probes": {},
        "probe_only": [],
    }
    if probes:
        out["probes"] = probe_concepts(rows, index, labels, seed=seed)
        out["probe_only"] = [
            c
            for c, p in out["probes"].items()
            if p.kind == "bool" and p.auroc >= TARGET_AUROC and best[c]["auroc"] < TARGET_AUROC
        ]
    return out


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _sweep_table(sweep: list[dict]) -> list[str]:
    lines = [
        "| SAE | L0 | explained var. | dead (fraction) | output acc. recovered "
        "| hint acc. recovered | hint loss recovered | concepts at AUROC >= 0.95 | meets targets "
        "| train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sweep:
        rec, d = r["reconstruction"], r["downstream"]["recovered"]
        lines.append(
            f"| {describe(r)} | {_f(rec['l0'], 2)} | "
            f"{_f(rec['explained_variance'], 4)} | {_f(rec['frac_dead'], 2)} | "
            f"{_f(d['output_accuracy'], 4)} | {_f(d['hint_accuracy'], 4)} | "
            f"{_f(d['hint_loss'], 4)} | {', '.join(r.get('concepts_covered', [])) or '-'} | "
            f"{'yes' if r['meets_targets'] else 'no'} | "
            f"{_f(r['train_seconds'], 1)} |"
        )
    return lines


def write_report(
    path: str | os.PathLike,
    *,
    title: str,
    setup: dict,
    evaluation: dict,
    analysis: dict,
    sweep: list[dict] | None = None,
    images: dict[str, str] | None = None,
    commands: list[str] | None = None,
) -> Path:
    """Write the markdown report to ``path`` (atomically) and return the path.

    ``setup``: lines of the run's settings; the rest as in :func:`report_sections`.
    """
    lines = [f"# {title}", ""]
    if commands:
        lines += ["Reproduce with:", "", "```", *commands, "```", ""]
    lines += ["## Setup", ""] + [f"- {k}: {v}" for k, v in setup.items()] + [""]
    lines += report_sections(evaluation, analysis, sweep, images)
    return write_text_atomic(path, "\n".join(lines))


def _probe_only_text(probe_only: list[str], best: dict[str, dict]) -> str:
    """The sentence naming the concepts a probe reads but no feature does at
    :data:`TARGET_AUROC`, apart from those a feature of the concept's negation reads at it
    (``best[c]["anti_auroc"]``, already 1 - AUROC): those have a single feature, of opposite
    sign, and saying "no single feature" of them contradicts the table's last column."""
    negated = [c for c in probe_only if (best[c].get("anti_auroc") or 0.0) >= TARGET_AUROC]
    missing = [c for c in probe_only if c not in negated]
    names = lambda cs: ", ".join(f"`{c}`" for c in cs) or "none"  # noqa: E731
    text = (
        f"Concepts a probe reads (AUROC >= {TARGET_AUROC}) but no single feature captures, "
        f"neither as the concept nor as its negation: {names(missing)}."
    )
    if negated:
        text += (
            f" Read by a single feature of their negation only (1 - AUROC >= {TARGET_AUROC}, "
            f"last column): {names(negated)}."
        )
    return text


def report_sections(
    evaluation: dict,
    analysis: dict,
    sweep: list[dict] | None = None,
    images: dict[str, str] | None = None,
    level: int = 2,
) -> list[str]:
    """Markdown lines of the sweep, reconstruction, downstream, concept, top-example and
    picture sections, with ``level``-deep headings.

    ``evaluation``: :func:`sae.evaluate_sae`'s dict; ``analysis``: :func:`analyse_sae`'s
    dict; ``images``: ``{caption: relative png path}``.
    """
    h = "#" * level
    rec = evaluation["reconstruction"]
    lines: list[str] = []
    if sweep:
        lines += (
            [
                f"{h} Sweep",
                "",
                "Targets: explained variance >= 0.95 at L0 <= 16 and downstream accuracy "
                "recovered >= 0.95 (outputs and hints). Chosen: among runs meeting them, the "
                "one with a feature at AUROC >= 0.95 for most concepts (held-out rows), then "
                "the sparsest; if none meets them, the best worse-of-two accuracy recovered "
                "among runs with L0 <= 16 and explained variance >= 0.95 (`sae/sweep.py`).",
                "",
            ]
            + _sweep_table(sweep)
            + [""]
        )
    lines += [
        f"{h} Reconstruction (valid rows of the store)",
        "",
        "| MSE | explained variance | L0 | dead features (fraction) "
        "| dense features (fraction firing on > 50% of rows) |",
        "|---|---|---|---|---|",
        f"| {_f(rec['mse'], 5)} | {_f(rec['explained_variance'], 4)} | {_f(rec['l0'], 2)} | "
        f"{_f(rec['frac_dead'], 3)} | {_f(rec['frac_dense'], 3)} |",
        "",
    ]
    if "downstream" in evaluation:
        d = evaluation["downstream"]
        lines += [
            f"{h} Downstream (SAE spliced at every step, no error term)",
            "",
            "Mean ablation replaces the hook at every step with the store's mean of that "
            "step. recovered = (SAE - ablated) / (clean - ablated); for the loss "
            "(ablated - SAE) / (ablated - clean).",
            "",
            "| run | output accuracy | hint accuracy | graph accuracy | hint loss |",
            "|---|---|---|---|---|",
        ]
        for name in ("clean", "sae", "ablated"):
            r = d[name]
            lines.append(
                f"| {name} | {_f(r['output_accuracy'], 4)} | {_f(r['hint_accuracy'], 4)} | "
                f"{_f(r['graph_accuracy'], 4)} | {_f(r['hint_loss'], 4)} |"
            )
        rr, ci = d["recovered"], d.get("recovered_ci", {})
        acc = lambda k: recovered_text(rr[k], ci.get(k))  # noqa: E731
        lines.append(
            f"| **recovered** [95% CI over graphs] | {acc('output_accuracy')} | "
            f"{acc('hint_accuracy')} | {acc('graph_accuracy')} | {_f(rr['hint_loss'], 4)} |"
        )
        lines.append("")
    scores, best, probes = analysis["scores"], analysis["best"], analysis["probes"]
    lines += [
        f"{h} Concepts",
        "",
        f"Boolean concepts: best feature by AUROC with its best-threshold F1; a linear probe "
        f"on the same activations (split by graph) and its shuffled-label control. "
        f"{len(analysis['covered'])} of {len(scores.bool_concepts)} boolean concepts have a "
        f"feature with AUROC >= {TARGET_AUROC}.",
        "",
        "| concept | positive rate | best feature | AUROC | F1 | precision | recall "
        "| probe AUROC | shuffled-label control (mean +- sd) | best feature for not-concept "
        "(1 - AUROC) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(scores.bool_concepts):
        b, p = best[c], probes.get(c)
        lines.append(
            f"| `{c}` | {_f(float(scores.positive_rate[i]))} | {b['feature']} | "
            f"{_f(b['auroc'])} | {_f(b['f1'])} | {_f(b['precision'])} | {_f(b['recall'])} | "
            f"{_f(p.auroc) if p else '-'} | {f'{_f(p.control_auroc)} +- {_f(p.control_sd)}' if p else '-'} | "
            f"{b['anti_feature']} ({_f(b['anti_auroc'])}) |"
        )
    if scores.scalar_concepts:
        lines += [
            "",
            "| scalar concept | best feature | Spearman | Pearson | probe R^2 | control R^2 |",
            "|---|---|---|---|---|---|",
        ]
        for c in scores.scalar_concepts:
            b, p = best[c], probes.get(c)
            lines.append(
                f"| `{c}` | {b['feature']} | {_f(b['spearman'])} | {_f(b['pearson'])} | "
                f"{_f(p.r2) if p else '-'} | {_f(p.control_r2) if p else '-'} |"
            )
    lines += ["", _probe_only_text(analysis["probe_only"], best), ""]
    rule = MONOSEMANTIC_RULE
    mono = analysis["monosemantic"]
    lines += [
        f"Monosemantic features (AUROC >= {rule['high']} for one concept, |AUROC - 0.5| < "
        f"{rule['low'] - 0.5:.2f} for every other): "
        + (
            ", ".join(f"{m['feature']} (`{m['concept']}`, {m['auroc']:.3f})" for m in mono)
            or "none"
        )
        + ".",
        "",
    ]
    lines += [f"{h} Top-activating examples of each concept's best feature", ""]
    for c, rows in analysis["top_examples"].items():
        lines += [
            f"**`{c}`** (feature {best[c]['feature']}):",
            "",
            "| graph | node | step | activation | "
            + " | ".join(f"`{k}`" for k in scores.bool_concepts + scores.scalar_concepts)
            + " |",
            "|---" * (4 + len(scores.bool_concepts) + len(scores.scalar_concepts)) + "|",
        ]
        for r in rows[:5]:
            vals = [
                str(int(r[k])) if isinstance(r[k], bool) else _f(r[k], 2)
                for k in scores.bool_concepts + scores.scalar_concepts
            ]
            lines.append(
                f"| {r['graph']} | {r['node']} | {r['step']} | {r['activation']:.3f} | "
                + " | ".join(vals)
                + " |"
            )
        lines.append("")
    if images:
        lines += [f"{h} Pictures", ""]
        for caption, rel in images.items():
            lines += [f"**{caption}**", "", f"![{caption}]({rel})", ""]
    return lines
