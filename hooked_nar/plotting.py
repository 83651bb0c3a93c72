"""Graphs coloured by per-node values, one panel per step (matplotlib Agg + networkx layouts).

The core is :func:`draw_graph_panels`: one graph, the same layout in every panel, nodes
coloured by any per-(panel, node) values (a hint, a prediction, an SAE feature activation),
optional pointer arrows, a source node drawn as a square and red outlines on flagged nodes.
:func:`draw_trajectory` and :func:`draw_prediction_vs_truth` are thin wrappers.

>>> from hooked_nar.algorithms import run
>>> traj = run("bfs", A, source=0)
>>> draw_trajectory(traj, "reach_h", "bfs_reach.png")
>>> draw_graph_panels(A, acts[:, :, 17], "feature17.png", kind="scalar",
...                   value_label="feature 17", cmap="magma")   # acts [S, n, d_sae]

Every figure is written atomically (temporary file + ``os.replace``); matplotlib is imported
only when a function runs and always with the Agg backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hooked_nar.atomic import atomic_file

__all__ = [
    "KINDS",
    "draw_graph_panels",
    "draw_prediction_vs_truth",
    "draw_trajectory",
    "graph_layout",
    "save_figure",
]

#: Value kinds :func:`draw_graph_panels` understands (CLRS types plus ``"pointer"`` only).
KINDS = ("mask", "mask_one", "scalar", "categorical", "pointer")

_OFF = "#dcdcdc"  # mask = 0, nodes without a value
_ON = "#1f78b4"  # mask = 1
_ONE = "#33a02c"  # the node of a mask_one
_POINTER = "#ff7f00"  # pointer arrows parent -> child
_MISTAKE = "#e31a1c"  # outline of flagged nodes
_EDGE = "#b0b0b0"  # graph edges
_DFS_COLOURS = {"white": "#f7f7f7", "grey": "#969696", "black": "#252525"}


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (figures are only saved)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically, close it, and return the path."""
    try:
        with atomic_file(path) as fh:
            fig.savefig(fh, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return Path(path)


def _graph(A: np.ndarray, directed: bool):
    import networkx as nx

    n = A.shape[0]
    G = nx.DiGraph() if directed else nx.Graph()
    G.add_nodes_from(range(n))
    ii, jj = np.nonzero(A)
    G.add_edges_from((int(i), int(j)) for i, j in zip(ii, jj, strict=True) if i != j)
    return G


def graph_layout(A: Any, seed: int = 0) -> np.ndarray:
    """Node positions ``[n, 2]`` for the graph with weight matrix ``A`` (reuse across figures).

    Kamada-Kawai per connected component (deterministic, readable for small graphs),
    components packed side by side; a seeded spring layout above 60 nodes.
    """
    import networkx as nx

    A = _np(A)
    n = A.shape[0]
    G = _graph((A != 0) | (A.T != 0), directed=False)
    if n > 60:
        pos = nx.spring_layout(G, seed=seed, iterations=200)
        return np.array([pos[i] for i in range(n)], dtype=float)
    out = np.zeros((n, 2))
    comps = sorted(nx.connected_components(G), key=lambda c: (-len(c), min(c)))
    rng = np.random.default_rng(seed)
    x0 = 0.0
    singles: list[int] = []
    for comp in comps:
        nodes = sorted(comp)
        if len(nodes) == 1:
            singles.append(nodes[0])
            continue
        sub = G.subgraph(nodes)
        init = {v: rng.normal(size=2) for v in nodes}
        pos = nx.kamada_kawai_layout(sub, pos=init)
        xy = np.array([pos[v] for v in nodes])
        xy -= xy.min(0)
        scale = math.sqrt(len(nodes)) / max(float(xy.max()), 1e-9)
        xy = _spread(xy * scale, min_dist=0.95)
        xy -= xy.min(0)
        xy[:, 0] += x0
        out[nodes] = xy
        x0 = float(xy[:, 0].max()) + 1.0
    if singles:  # isolated nodes in a column to the right
        height = max(float(out[:, 1].max()), 1.0) if x0 > 0 else 1.0
        for k, v in enumerate(singles):
            out[v] = (x0, height * (k / max(len(singles) - 1, 1)))
    return out


def _spread(xy: np.ndarray, min_dist: float, iterations: int = 60) -> np.ndarray:
    """Push apart nodes closer than ``min_dist`` (layouts put unrelated nodes on top of
    each other now and then), moving each pair symmetrically along their axis."""
    xy = xy.copy()
    for _ in range(iterations):
        diff = xy[:, None] - xy[None]
        dist = np.sqrt((diff**2).sum(-1)) + np.eye(len(xy))
        overlap = np.clip(min_dist - dist, 0, None)
        np.fill_diagonal(overlap, 0)
        if not overlap.any():
            break
        push = (diff / dist[..., None] * overlap[..., None] * 0.5).sum(1)
        xy += push
    return xy


def _panels(x: Any, name: str, n: int) -> np.ndarray | None:
    """``[P, n]`` or ``[R, P, n]`` -> ``[R, P, n]``."""
    if x is None:
        return None
    x = _np(x)
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
    A = _np(A)
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
    pos = _np(layout) if layout is not None else graph_layout(A, layout_seed)
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
    G = _graph(A, directed)
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


def _select_steps(total: int, steps: Sequence[int] | None, max_panels: int) -> list[int]:
    if steps is not None:
        steps = [int(s) for s in steps]
        bad = [s for s in steps if not 0 <= s < total]
        if bad:
            raise ValueError(f"steps {bad} out of range 0..{total - 1}")
        return steps
    if max_panels < 1:
        raise ValueError(f"max_panels must be >= 1, got {max_panels}")
    if total <= max_panels:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, max_panels)})


def _class_names(algorithm: str, hint: str, num_classes: int) -> list[str]:
    from hooked_nar.concepts import CLASS_NAMES

    names = CLASS_NAMES.get((algorithm, hint), CLASS_NAMES.get(("*", hint)))
    return (
        list(names) if names and len(names) == num_classes else [str(c) for c in range(num_classes)]
    )


def draw_trajectory(
    traj,
    hint: str,
    path: str | os.PathLike,
    steps: Sequence[int] | None = None,
    max_panels: int = 8,
    layout_seed: int = 0,
    *,
    pointer: str | None = "auto",
    title: str | None = None,
    layout: Any = None,
) -> Path:
    """Draw a :class:`~hooked_nar.algorithms.Trajectory`'s graph once per hint step.

    Nodes are coloured by the node hint ``hint`` (mask: two colours; scalar: colormap with a
    colorbar; mask_one: highlighted node; categorical: one colour per class; pointer:
    parent -> child arrows). ``pointer``: a node pointer hint overlaid as arrows (``"auto"``:
    ``pi_h`` or ``pi`` when the algorithm has one; None: none). ``steps``: hint steps to
    draw (default: all, or ``max_panels`` evenly spaced ones including the first and last).
    The input source ``s`` is drawn as a square; directed algorithms get arrows.
    """
    from hooked_nar.algorithms import SPECS
    from hooked_nar.data.generators import GRAPH_CONVENTIONS

    alg = traj.algorithm
    node_hints = [k for k, fs in SPECS[alg].items() if fs.stage == "hint" and fs.location == "node"]
    if hint not in node_hints:
        raise ValueError(
            f"hint={hint!r} is not a node hint of {alg}; node hints: {', '.join(node_hints)}"
        )
    fs = SPECS[alg][hint]
    chosen = _select_steps(traj.length, steps, max_panels)
    x = np.asarray(traj.hints[hint])[chosen]  # [P, n(, C)]
    kind = fs.type
    class_names = None
    ptrs = None
    if kind == "categorical":
        class_names = _class_names(alg, hint, x.shape[-1])
        x = x.argmax(-1)
    if kind == "pointer":
        ptrs, x = x, None
        pointer_label = hint
    else:
        if pointer == "auto":
            pointer = next(
                (p for p in ("pi_h", "pi") if p in node_hints and SPECS[alg][p].type == "pointer"),
                None,
            )
        if pointer is not None:
            if pointer not in node_hints or SPECS[alg][pointer].type != "pointer":
                raise ValueError(f"pointer={pointer!r} is not a node pointer hint of {alg}")
            ptrs = np.asarray(traj.hints[pointer])[chosen]
        pointer_label = pointer or "pointer"
    source = None
    if "s" in traj.inputs:
        source = int(np.argmax(np.asarray(traj.inputs["s"]).reshape(-1)))
    A = np.asarray(traj.inputs["A"])
    if title is None:
        title = f"{alg}: {hint} per hint step (n = {traj.num_nodes}, T = {traj.length})"
    return draw_graph_panels(
        A,
        x,
        path,
        kind=kind,
        titles=[f"t = {t}" for t in chosen],
        title=title,
        source=source,
        pointers=ptrs,
        directed=GRAPH_CONVENTIONS[alg].directed,
        class_names=class_names,
        value_label=hint,
        pointer_label=pointer_label,
        layout=layout,
        layout_seed=layout_seed,
    )


def draw_prediction_vs_truth(
    A: Any,
    true_values: Any,
    predicted_values: Any,
    path: str | os.PathLike,
    title: str,
    *,
    kind: str = "mask",
    step_labels: Sequence[str] | None = None,
    max_panels: int = 6,
    source: int | None = None,
    directed: bool | None = None,
    value_label: str = "value",
    mask_labels: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    tolerance: float | None = None,
    layout: Any = None,
    layout_seed: int = 0,
) -> Path:
    """Truth (top row) against the model (bottom row) for a per-node value over steps.

    ``true_values`` and ``predicted_values`` are ``[S, n]`` (one column per processor step,
    e.g. hint t+1 and the model's prediction of it from step t). Mistakes are outlined in
    red: any difference for mask / mask_one / categorical values, ``|diff| > tolerance``
    for scalars (no outlines when ``tolerance`` is None). ``step_labels`` default to
    ``"t = s+1"`` (the hint step each processor step computes); at most ``max_panels``
    evenly spaced steps are drawn.
    """
    truth, pred = _np(true_values), _np(predicted_values)
    if truth.shape != pred.shape or truth.ndim != 2:
        raise ValueError(
            f"true_values {truth.shape} and predicted_values {pred.shape} must both be [S, n]"
        )
    S = truth.shape[0]
    chosen = _select_steps(S, None, max_panels)
    if step_labels is None:
        step_labels = [f"t = {s + 1}" for s in range(S)]
    elif len(step_labels) != S:
        raise ValueError(f"step_labels has {len(step_labels)} entries for {S} steps")
    if kind == "scalar":
        wrong = (np.abs(pred - truth) > tolerance) if tolerance is not None else None
    else:
        wrong = pred != truth
    vals = np.stack([truth[chosen], pred[chosen]]).astype(float)
    outl = None if wrong is None else np.stack([np.zeros_like(wrong[chosen]), wrong[chosen]])
    return draw_graph_panels(
        A,
        vals,
        path,
        kind=kind,
        titles=[step_labels[s] for s in chosen],
        row_labels=["truth", "model"],
        title=title,
        source=source,
        outlines=outl,
        directed=directed,
        value_label=value_label,
        mask_labels=mask_labels,
        class_names=class_names,
        layout=layout,
        layout_seed=layout_seed,
        outline_label="wrong prediction",
    )
