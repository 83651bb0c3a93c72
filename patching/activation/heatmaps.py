"""Step x node heatmaps of patching effects, one panel per :class:`PatchingResult` (PNG)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from patching.activation.result import PatchingResult

__all__ = ["plot_effects"]


def plot_effects(
    results: Sequence[PatchingResult],
    path,
    hook: str | None = None,
    g: int = 0,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    node_labels: Sequence[str] | None = None,
    ncols: int = 2,
) -> Path:
    """Step x node heatmaps of graph ``g``, one panel per result, as a PNG at ``path``.

    Rows are processor steps t (computing hint t + 1), columns nodes; ``("step",)`` results
    draw one column and ``("node",)`` results one row. The colour map is diverging and
    symmetric about "no effect" (0 for denoising, 1 for noising); cells are annotated when
    few; NaN cells (steps a run does not execute) are blank. Panels wrap after ``ncols``.
    """
    from matplotlib.colors import Normalize

    from hooked_nar.figures import pyplot, save_figure

    results = list(results)
    if not results:
        raise ValueError("results is empty")
    if titles is not None and len(titles) != len(results):
        raise ValueError(f"titles has {len(titles)} entries for {len(results)} results")
    plt = pyplot()
    tables = []
    for r in results:
        x = r.graph(g, hook).double()
        tables.append(x[:, None] if r.by == ("step",) else x[None, :] if r.by == ("node",) else x)
    ncols = max(1, min(int(ncols), len(tables)))
    nrows = math.ceil(len(tables) / ncols)
    width = ncols * max(3.0, 0.42 * max(t.shape[1] for t in tables) + 1.8)
    height = nrows * max(2.2, 0.36 * max(t.shape[0] for t in tables) + 1.2) + 0.4 * bool(title)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(tables) :]:
        ax.set_axis_off()
    for k, (r, x, ax) in enumerate(zip(results, tables, axes.flat, strict=False)):
        center = 0.0 if r.direction == "denoising" else 1.0
        finite = x[torch.isfinite(x)]
        span = float((finite - center).abs().max()) if finite.numel() else 1.0
        norm = Normalize(center - max(span, 1e-3), center + max(span, 1e-3))
        im = ax.imshow(x.numpy(), cmap="RdBu_r", norm=norm, aspect="auto")
        S, n = x.shape
        if r.by != ("step",):
            labels = list(node_labels) if node_labels is not None else [str(i) for i in range(n)]
            ax.set_xticks(range(n), labels[:n], fontsize=8)
            ax.set_xlabel("node")
        else:
            ax.set_xticks([])
        if r.by != ("node",):
            ax.set_yticks(range(S), [str(t) for t in range(S)], fontsize=8)
            ax.set_ylabel("step t (→ hint t+1)")
        else:
            ax.set_yticks([])
        if S * n <= 260:
            for t in range(S):
                for i in range(n):
                    v = float(x[t, i])
                    if math.isfinite(v):
                        ax.text(
                            i,
                            t,
                            f"{v:.2f}",
                            ha="center",
                            va="center",
                            fontsize=6,
                            color="white" if abs(norm(v) - 0.5) > 0.35 else "black",
                        )
        hook_name = r._hook(hook)
        ax.set_title(
            titles[k] if titles is not None else f"{r.method} {r.direction}\n{hook_name}",
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, shrink=0.85, label="normalised effect")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
