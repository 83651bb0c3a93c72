"""Pictures of causal tests: effect beside the null with 95% intervals, dose-response curves,
and one graph drawn
step by step before and after an intervention (via :func:`hooked_nar.figures.draw_graph_panels`).
PNGs are written atomically; matplotlib runs with the Agg backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hooked_nar.figures import pyplot

__all__ = ["causal_bars", "dose_response", "draw_before_after", "graph_adjacency", "result_bars"]

_EFFECT = "#1f78b4"
_CONTROLS = ("#b2df8a", "#fdbf6f", "#cab2d6")


def _err(value: float, ci: Sequence[float]) -> tuple[float, float]:
    if math.isnan(value) or any(math.isnan(c) for c in ci):
        return 0.0, 0.0
    return max(value - ci[0], 0.0), max(ci[1] - value, 0.0)


def _bars(ax, groups: list[str], series: list[tuple[str, list, list]], ylabel: str) -> None:
    """Grouped bars: ``series`` = [(label, values [G], cis [G])]; NaN values are left out."""
    G, K = len(groups), len(series)
    width = 0.8 / max(K, 1)
    x = np.arange(G)
    for k, (label, values, cis) in enumerate(series):
        colour = _EFFECT if k == 0 else _CONTROLS[(k - 1) % len(_CONTROLS)]
        v = np.array([np.nan if val is None else val for val in values], dtype=float)
        err = np.array([_err(val, ci) for val, ci in zip(v, cis, strict=True)]).T
        pos = x - 0.4 + width * (k + 0.5)
        ok = np.isfinite(v)
        ax.bar(
            pos[ok],
            v[ok],
            width,
            yerr=err[:, ok],
            capsize=3,
            color=colour,
            label=label,
            edgecolor="#555555",
            linewidth=0.5,
        )
    ax.set_xticks(x, groups, fontsize=8)
    ax.set_xlim(-0.6, G - 0.4)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="#777777", lw=0.6)
    ax.legend(fontsize=7, frameon=False)


def result_bars(results, path: str | os.PathLike, title: str | None = None) -> Path:
    """Effect beside control, with 95% interval whiskers, for a list of
    :class:`~patching.controls.CausalResult` (one group per result)."""
    from hooked_nar.figures import save_figure

    if not results:
        raise ValueError("results is empty")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(results) + 2), 3.4), layout="constrained")
    _bars(
        ax,
        [f"{r.name}\n{r.metric}" for r in results],
        [
            ("effect", [r.effect for r in results], [r.effect_ci for r in results]),
            ("control", [r.control for r in results], [r.control_ci for r in results]),
        ],
        "value",
    )
    ax.set_title(title or "effect vs control (95% CI)", fontsize=10)
    return save_figure(fig, path)


def causal_bars(tests, path: str | os.PathLike, title: str | None = None) -> Path:
    """Per concept of :class:`~patching.causal.ConceptTest` s, at the verdict dose: the
    unit's deciding measure (ablation: margin removed; steering: flip rate) beside the null
    (mean, whisker to the 95th percentile of the null units) and the positive control, with
    95% bootstrap whiskers; the verdict under the concept's name."""
    from hooked_nar.figures import save_figure

    if not tests:
        raise ValueError("tests is empty")
    groups = [f"{t.concept}\n{t.unit['kind']} ({t.unit['size']})\n{t.verdict}" for t in tests]
    plt = pyplot()
    fig, axes = plt.subplots(
        1, 2, figsize=(max(9.0, 2.6 * len(tests) + 2), 3.8), layout="constrained"
    )
    nan, nan_ci = float("nan"), (float("nan"), float("nan"))
    for ax, kind, ylabel in (
        (axes[0], "ablation", "margin removed"),
        (axes[1], "steering", "flip rate at the steering sites"),
    ):
        res = [getattr(t, kind) for t in tests]
        ctl = [getattr(t, f"control_{kind}") for t in tests]
        _bars(
            ax,
            groups,
            [
                (
                    "unit",
                    [r.effect if r else nan for r in res],
                    [r.effect_ci if r else nan_ci for r in res],
                ),
                (
                    "null (mean, 95th pct)",
                    [r.null if r else nan for r in res],
                    [(r.null, r.null_q95) if r else nan_ci for r in res],
                ),
                (
                    "positive control",
                    [c.effect if c else nan for c in ctl],
                    [c.effect_ci if c else nan_ci for c in ctl],
                ),
            ],
            ylabel,
        )
        for g, r in enumerate(res):
            if r is None:
                ax.text(g, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="#777777")
        ax.set_title(f"{kind}: {ylabel}", fontsize=10)
    fig.suptitle(
        title or "causal tests of concept units (95% bootstrap CI over graphs)", fontsize=11
    )
    return save_figure(fig, path)


def dose_response(test, path: str | os.PathLike, title: str | None = None) -> Path:
    """The dose-response curves of one :class:`~patching.causal.ConceptTest`: per
    intervention, the unit's deciding measure against the dose beside the null (mean, band
    from the 2.5th to the 97.5th percentile of the null units), off-distribution doses
    shaded."""
    from hooked_nar.figures import save_figure

    kinds = [k for k in ("ablation", "steering") if test.dose.get(k)]
    if not kinds:
        raise ValueError("the test has no dose-response curve")
    labels = {
        "ablation": ("fraction of the unit removed", "margin removed"),
        "steering": ("activation quantile where true (> 1: x largest)", "flip rate"),
    }
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(4.2 * len(kinds) + 0.6, 3.4), squeeze=False, layout="constrained"
    )
    for ax, kind in zip(axes[0], kinds, strict=True):
        pts = test.dose[kind]
        x = np.array([p[0] for p in pts], float)
        ax.plot(x, [p[1] for p in pts], marker="o", color=_EFFECT, label="unit")
        ax.plot(x, [p[2] for p in pts], marker=".", color="#33a02c", label="null mean")
        ax.fill_between(
            x,
            [p[3] for p in pts],
            [p[4] for p in pts],
            color="#b2df8a",
            alpha=0.4,
            lw=0,
            label="null 95% range",
        )
        off = [p[0] for p in pts if p[5]]
        if off:
            ax.axvspan(1.0, max(off), color="#dddddd", alpha=0.6, lw=0, label="off-distribution")
        ax.set_xlabel(labels[kind][0])
        ax.set_ylabel(labels[kind][1])
        ax.set_title(kind, fontsize=10)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(
        title or f"{test.algorithm} {test.concept}: dose-response ({test.unit['name']})",
        fontsize=10,
    )
    return save_figure(fig, path)


def graph_adjacency(data) -> np.ndarray:
    """``[n, n]`` 0/1 adjacency of a CLRS ``Data`` (from ``edge_index``, no self-loops)."""
    n = int(data.num_nodes)
    A = np.zeros((n, n))
    ei = data.edge_index.cpu().numpy()
    A[ei[0], ei[1]] = 1.0
    np.fill_diagonal(A, 0.0)
    return A


def draw_before_after(
    data,
    rows: dict[str, Any],
    path: str | os.PathLike,
    *,
    title: str,
    kind: str = "mask",
    steps: Sequence[int] | None = None,
    outlines: dict[str, Any] | None = None,
    outline_label: str = "changed by the intervention",
    value_label: str = "value",
    mask_labels: Sequence[str] | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    directed: bool | None = None,
) -> Path:
    """Draw graph ``data`` once per processor step, one row per entry of ``rows``
    (``{"truth": [S, n], "clean model": [S, n], "steered model": [S, n]}``), with the same
    layout everywhere. Panel s shows hint step s + 1 (what processor step s computes).

    ``outlines``: per row label, bool ``[S, n]`` nodes to outline in red (e.g. the steered
    site, or predictions that changed); ``steps``: processor steps to draw (default all,
    at most 8 evenly spaced). ``kind``/``cmap``/``vmin``/``vmax`` as in
    :func:`~hooked_nar.figures.draw_graph_panels`.
    """
    from hooked_nar.figures import draw_graph_panels

    if not rows:
        raise ValueError("rows is empty")
    labels = list(rows)
    vals = [
        np.asarray(rows[k].detach().cpu() if hasattr(rows[k], "detach") else rows[k], float)
        for k in labels
    ]
    for k, v in zip(labels, vals, strict=True):
        if v.ndim != 2:
            raise ValueError(
                f"rows[{k!r}] has shape {v.shape}; every row must be [S, n] (one value per "
                "step and node: reduce a categorical [S, n, C] hint to one class first)"
            )
    S, n = vals[0].shape
    if any(v.shape != (S, n) for v in vals):
        raise ValueError(f"every row must be [S, n] = {(S, n)}")
    if n != int(data.num_nodes):
        raise ValueError(f"rows have {n} nodes, the graph has {int(data.num_nodes)}")
    if steps is None:
        steps = (
            list(range(S)) if S <= 8 else sorted({int(round(x)) for x in np.linspace(0, S - 1, 8)})
        )
    steps = [int(s) for s in steps]
    if any(not 0 <= s < S for s in steps):
        raise ValueError(f"steps {steps} out of range 0..{S - 1}")
    values = np.stack([v[steps] for v in vals])
    outl = None
    if outlines:
        outl = np.zeros_like(values, dtype=bool)
        for r, k in enumerate(labels):
            if k in outlines:
                o = outlines[k]
                o = np.asarray(o.detach().cpu() if hasattr(o, "detach") else o, bool)
                outl[r] = o[steps]
    source = None
    if "s" in data and data.s.ndim == 1:
        source = int(data.s.argmax())
    return draw_graph_panels(
        graph_adjacency(data),
        values,
        path,
        kind=kind,
        titles=[f"step {s} -> hint {s + 1}" for s in steps],
        row_labels=labels,
        title=title,
        source=source,
        outlines=outl,
        outline_label=outline_label,
        value_label=value_label,
        mask_labels=mask_labels,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        directed=directed,
    )
