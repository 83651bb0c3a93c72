"""Pictures of causal tests: effect beside controls with 95% intervals, and one graph drawn
step by step before and after an intervention (via :func:`hooked_nar.plotting.draw_graph_panels`).
PNGs are written atomically; matplotlib runs with the Agg backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hooked_nar.plotting import pyplot

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
    from hooked_nar.plotting import save_figure

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
    """Per concept of :class:`~patching.causal.ConceptTest` s: ablation margin removed and
    flip rate (feature vs matched features) and steering flip rate (feature vs random
    directions vs matched features), each with 95% interval whiskers; the verdict under the
    concept's name."""
    from hooked_nar.plotting import save_figure

    if not tests:
        raise ValueError("tests is empty")
    groups = [f"{t.concept}\nf{t.feature}\n{t.verdict}" for t in tests]
    plt = pyplot()
    fig, axes = plt.subplots(
        1, 3, figsize=(max(11.0, 3 * 1.25 * len(tests) + 2), 3.8), layout="constrained"
    )
    for ax, i, ylabel in ((axes[0], 0, "margin removed"), (axes[1], 1, "flip rate")):
        res = [t.ablation[i] for t in tests]
        _bars(
            ax,
            groups,
            [
                ("feature ablated", [r.effect for r in res], [r.effect_ci for r in res]),
                ("matched features", [r.control for r in res], [r.control_ci for r in res]),
            ],
            ylabel,
        )
        ax.set_title(f"ablation: {ylabel}", fontsize=10)
    nan, nan_ci = float("nan"), (float("nan"), float("nan"))
    st = [t.steering for t in tests]
    _bars(
        axes[2],
        groups,
        [
            (
                "feature clamped",
                [s[0].effect if s else nan for s in st],
                [s[0].effect_ci if s else nan_ci for s in st],
            ),
            (
                "random directions",
                [s[0].control if s else nan for s in st],
                [s[0].control_ci if s else nan_ci for s in st],
            ),
            (
                "matched features",
                [s[1].control if len(s) > 1 else nan for s in st],
                [s[1].control_ci if len(s) > 1 else nan_ci for s in st],
            ),
        ],
        "fraction of sites",
    )
    for g, s in enumerate(st):
        if not s:
            axes[2].text(g, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="#777777")
    axes[2].set_title("steering: prediction flips to the concept", fontsize=10)
    fig.suptitle(
        title or "causal tests of concept features (95% bootstrap CI over graphs)", fontsize=11
    )
    return save_figure(fig, path)


def dose_response(
    curves: dict[str, list[tuple[float, Any]]], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Steering flip rate against the clamp scale, one panel per concept: ``curves`` maps a
    concept to ``[(steer_scale, ConceptTest), ...]``; lines for the feature, random directions
    and matched features, with 95% interval bands."""
    from hooked_nar.plotting import save_figure

    curves = {c: sorted(v, key=lambda p: p[0]) for c, v in curves.items() if v}
    if not curves:
        raise ValueError("curves is empty")
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(curves), figsize=(3.6 * len(curves) + 0.8, 3.4), squeeze=False, layout="constrained"
    )
    for ax, (concept, points) in zip(axes[0], curves.items(), strict=True):
        xs = [p[0] for p in points]
        lines = [
            ("feature clamped", lambda t: (t.steering[0].effect, t.steering[0].effect_ci)),
            ("random directions", lambda t: (t.steering[0].control, t.steering[0].control_ci)),
            ("matched features", lambda t: (t.steering[1].control, t.steering[1].control_ci)),
        ]
        for k, (label, get) in enumerate(lines):
            vals = [get(t) for _, t in points]
            y = np.array([v for v, _ in vals], float)
            lo = np.array([c[0] for _, c in vals], float)
            hi = np.array([c[1] for _, c in vals], float)
            colour = _EFFECT if k == 0 else _CONTROLS[k - 1]
            ax.plot(xs, y, marker="o", color=colour, label=label)
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.25, lw=0)
        t0 = points[0][1]
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("clamp value / default (0.9 quantile)")
        ax.set_ylabel("fraction of sites flipped to the concept")
        ax.set_title(f"{concept} (feature {t0.feature})", fontsize=10)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title or "steering dose-response (95% bootstrap CI over graphs)", fontsize=11)
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
    :func:`~hooked_nar.plotting.draw_graph_panels`.
    """
    from hooked_nar.plotting import draw_graph_panels

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
