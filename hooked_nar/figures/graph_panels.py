"""One graph drawn once per panel, nodes coloured by per-(panel, node) values (a hint, a
prediction, an SAE feature activation), with optional pointer arrows, a square source node
and red outlines on flagged nodes: the picture every other figure of a graph is built on."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hooked_nar.figures.backend import as_numpy, pyplot, save_figure
from hooked_nar.figures.layout import graph_layout, networkx_graph

__all__ = ["KINDS", "draw_graph_panels"]

#: Value kinds :func:`draw_graph_panels` understands (CLRS types plus ``"pointer"`` only).
KINDS = ("mask", "mask_one", "scalar", "categorical", "pointer")

_OFF = "#dcdcdc"  # mask = 0, nodes without a value
_ON = "#1f78b4"  # mask = 1
_ONE = "#33a02c"  # the node of a mask_one
_POINTER = "#ff7f00"  # pointer arrows parent -> child
_MISTAKE = "#e31a1c"  # outline of flagged nodes
_EDGE = "#b0b0b0"  # graph edges
_DFS_COLOURS = {"white": "#f7f7f7", "grey": "#969696", "black": "#252525"}


def _panels(x: Any, name: str, n: int) -> np.ndarray | None:
    """``[P, n]`` or ``[R, P, n]`` -> ``[R, P, n]``."""
    if x is None:
        return None
    x = as_numpy(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != n:
        raise ValueError(
            f"{name} must have shape [panels, {n}] or [rows, panels, {n}], got {x.shape}"
        )
    return x


def _luminance(colour) -> float:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return 0.299 * r + 0.587 * g + 0.114 * b


def draw_graph_panels(
    A: Any,
    values: Any,
    path: str | os.PathLike,
    *,
    kind: str = "scalar",
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    source: int | None = None,
    pointers: Any = None,
    outlines: Any = None,
    directed: bool | None = None,
    class_names: Sequence[str] | None = None,
    value_label: str = "value",
    mask_labels: Sequence[str] | None = None,
    pointer_label: str = "pointer",
    outline_label: str = "mistake",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    layout: Any = None,
    layout_seed: int = 0,
    ncols: int | None = None,
    panel_size: float = 2.7,
    dpi: int = 110,
) -> Path:
    """Draw graph ``A`` once per panel with nodes coloured by ``values``; save a PNG.

    ``A``: weight matrix [n, n] (nonzero = edge; self-loops are not drawn). ``values``:
    ``[P, n]`` (P panels, wrapped into rows of ``ncols``) or ``[R, P, n]`` (R rows of P
    panels each, labelled by ``row_labels``). ``kind`` says how to colour them:

    - ``"mask"``: two colours (0 light grey, 1 blue);
    - ``"mask_one"``: the node(s) equal to 1 highlighted in green;
    - ``"scalar"``: colormap ``cmap`` with a colorbar shared by all panels (NaN = grey);
    - ``"categorical"``: class indices ``0..C-1`` named by ``class_names``;
    - ``"pointer"``: no colouring; ``values`` may be None and ``pointers`` is drawn.

    ``pointers`` (same leading shape, ints): node i's parent ``pointers[..., i]``, drawn as
    an orange arrow parent -> i (self-pointers are roots and not drawn). ``outlines`` (bool,
    same shape): nodes outlined in red (e.g. wrong predictions). ``source``: a node drawn as
    a square. ``directed`` (default: ``A`` is not symmetric) draws edges with arrows.
    ``layout``: positions ``[n, 2]`` from :func:`graph_layout` (computed with
    ``layout_seed`` if None). ``mask_labels``: legend entries of mask values 0 and 1
    (default ``"<value_label> = 0"`` / ``"= 1"``). ``ncols``: panels per row when wrapping ``[P, n]`` values
    (default: one row up to 6 panels, else balanced rows of at most 6).
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} must be one of {', '.join(KINDS)}")
    A = as_numpy(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix [n, n], got shape {A.shape}")
    n = A.shape[0]
    vals = _panels(values, "values", n)
    ptrs = _panels(pointers, "pointers", n)
    outl = _panels(outlines, "outlines", n)
    if vals is None and kind != "pointer":
        raise ValueError(f"values are required for kind={kind!r}")
    if vals is None and ptrs is None:
        raise ValueError("kind='pointer' needs pointers")
    ref = vals if vals is not None else ptrs
    for name, x in (("pointers", ptrs), ("outlines", outl)):
        if x is not None and x.shape != ref.shape:
            raise ValueError(f"{name} has shape {x.shape}, values have {ref.shape}")
    R, P = ref.shape[:2]
    if titles is not None and len(titles) != P:
        raise ValueError(f"titles has {len(titles)} entries for {P} panels")
    if row_labels is not None and len(row_labels) != R:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {R} rows")
    if source is not None and not 0 <= int(source) < n:
        raise ValueError(f"source={source} is not a node of a {n}-node graph")
    if directed is None:
        directed = not np.array_equal(A != 0, (A != 0).T)
    pos = as_numpy(layout) if layout is not None else graph_layout(A, layout_seed)
    if pos.shape != (n, 2):
        raise ValueError(f"layout must have shape [{n}, 2], got {pos.shape}")

    # grid of axes: [R, P] as given, or one series wrapped into rows of ncols
    if ncols is None:
        ncols = math.ceil(P / math.ceil(P / 6))
    wrap = R == 1 and P > ncols
    grid_cols = min(P, ncols) if wrap else P
    grid_rows = math.ceil(P / grid_cols) if wrap else R

    # node colours per panel
    norm = None
    legend: list = []
    if kind == "scalar":
        finite = vals[np.isfinite(vals)]
        lo = float(finite.min()) if vmin is None and finite.size else (vmin or 0.0)
        hi = (
            float(finite.max())
            if vmax is None and finite.size
            else (vmax if vmax is not None else 1.0)
        )
        if hi <= lo:
            hi = lo + 1.0
        norm = Normalize(lo, hi)
        cm = colormaps[cmap]
    elif kind == "mask":
        off, on = mask_labels or (f"{value_label} = 0", f"{value_label} = 1")
        legend += [Patch(fc=_OFF, ec="#777777", label=off), Patch(fc=_ON, ec="#777777", label=on)]
    elif kind == "mask_one":
        legend += [Patch(fc=_ONE, ec="#777777", label=f"{value_label} = 1")]
    elif kind == "categorical":
        C = int(np.nanmax(vals)) + 1 if vals.size else 1
        names = list(class_names) if class_names is not None else [str(c) for c in range(C)]
        if len(names) < C:
            raise ValueError(f"class_names has {len(names)} names but values reach class {C - 1}")
        tab = colormaps["tab10"]
        palette = [_DFS_COLOURS.get(nm, tab(c % 10)) for c, nm in enumerate(names)]
        legend += [
            Patch(fc=palette[c], ec="#777777", label=f"{value_label} = {nm}")
            for c, nm in enumerate(names)
        ]

    def face(v: np.ndarray) -> list:
        if kind == "pointer" or v is None:
            return ["#f0f0f0"] * n
        if kind == "scalar":
            return [cm(norm(x)) if np.isfinite(x) else _OFF for x in v]
        if kind == "mask":
            return [_ON if x > 0.5 else _OFF for x in v]
        if kind == "mask_one":
            return [_ONE if x > 0.5 else "#f0f0f0" for x in v]
        return [palette[int(x)] for x in v]

    node_size = 320 if n <= 16 else 200 if n <= 32 else 90 if n <= 64 else 30
    show_labels = n <= 40
    G = networkx_graph(A, directed)
    has_legend = bool(legend) or source is not None or ptrs is not None or outl is not None
    extra_w = 1.2 if kind == "scalar" else 0.0
    label_w = 0.5 if row_labels is not None else 0
    plt = pyplot()
    fig, axes = plt.subplots(
        grid_rows,
        grid_cols,
        squeeze=False,
        figsize=(
            max(grid_cols * panel_size + extra_w + label_w, 6.0),
            grid_rows * panel_size + 0.5 + 0.4 * has_legend + 0.3 * bool(title),
        ),
        layout="constrained",
    )
    import networkx as nx

    edge_kw: dict[str, Any] = {"edge_color": _EDGE, "width": 0.9, "node_size": node_size}
    if directed:
        edge_kw |= {
            "arrows": True,
            "arrowstyle": "-|>",
            "arrowsize": 7,
            "connectionstyle": "arc3,rad=0.12",
        }
    else:
        edge_kw["arrows"] = False
    pos_d = {i: pos[i] for i in range(n)}
    for ax in axes.flat:
        ax.set_axis_off()
    for r in range(R):
        for p in range(P):
            gr, gc = divmod(p, grid_cols) if wrap else (r, p)
            ax = axes[gr, gc]
            v = vals[r, p] if vals is not None else None
            colours = face(v)
            nx.draw_networkx_edges(G, pos_d, ax=ax, **edge_kw)
            if ptrs is not None:
                arcs = [
                    (int(ptrs[r, p, i]), i)
                    for i in range(n)
                    if 0 <= int(ptrs[r, p, i]) < n and int(ptrs[r, p, i]) != i
                ]
                if arcs:
                    nx.draw_networkx_edges(
                        nx.DiGraph(arcs),
                        pos_d,
                        edgelist=arcs,
                        ax=ax,
                        edge_color=_POINTER,
                        width=2.0,
                        arrows=True,
                        arrowstyle="-|>",
                        arrowsize=11,
                        node_size=node_size,
                        connectionstyle=edge_kw.get("connectionstyle", "arc3"),
                    )
            bad = outl[r, p].astype(bool) if outl is not None else np.zeros(n, bool)
            edgecolors = [_MISTAKE if bad[i] else "#555555" for i in range(n)]
            widths = [2.8 if bad[i] else 0.8 for i in range(n)]
            for shape, nodes in (
                ("o", [i for i in range(n) if i != source]),
                ("s", [] if source is None else [int(source)]),
            ):
                if not nodes:
                    continue
                nx.draw_networkx_nodes(
                    G,
                    pos_d,
                    nodelist=nodes,
                    ax=ax,
                    node_shape=shape,
                    node_size=node_size,
                    node_color=[colours[i] for i in nodes],
                    edgecolors=[edgecolors[i] for i in nodes],
                    linewidths=[widths[i] for i in nodes],
                )
            if show_labels:
                for i in range(n):
                    dark = _luminance(colours[i]) < 0.5
                    ax.text(
                        *pos[i],
                        str(i),
                        ha="center",
                        va="center",
                        fontsize=7 if n <= 16 else 6,
                        color="white" if dark else "black",
                    )
            if titles is not None and (wrap or r == 0):
                ax.set_title(titles[p], fontsize=10)
            if row_labels is not None and gc == 0:
                ax.text(
                    -0.08,
                    0.5,
                    row_labels[r],
                    transform=ax.transAxes,
                    rotation=90,
                    ha="right",
                    va="center",
                    fontsize=11,
                    fontweight="bold",
                )
            ax.margins(0.08)

    if source is not None:
        legend.append(
            Line2D([], [], marker="s", ls="", mfc="white", mec="#555555", ms=9, label="source")
        )
    if ptrs is not None:
        legend.append(
            Line2D([], [], color=_POINTER, lw=2, label=f"{pointer_label} (parent → child)")
        )
    if outl is not None:
        legend.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                mfc="white",
                mec=_MISTAKE,
                mew=2.5,
                ms=9,
                label=f"{outline_label} ({int(outl.sum())} shown)",
            )
        )
    if kind == "scalar":
        from matplotlib.cm import ScalarMappable

        fig.colorbar(
            ScalarMappable(norm=norm, cmap=cm),
            ax=axes,
            shrink=0.8,
            label=value_label,
            location="right",
        )
    if legend:
        fig.legend(
            handles=legend,
            loc="outside lower center",
            ncols=min(len(legend), 6),
            fontsize=8,
            frameon=False,
        )
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, dpi=dpi)
