"""Pictures of a circuit run (PNG, written atomically through :func:`hooked_nar.figures.save_figure`).

- :func:`plot_edge_circuit`: the input graph once per processor step, each message edge
  i -> j drawn with a width and colour set by its score (the effect of ablating that one
  message at that step), the edited edge or source marked: which edges carry the decision.
- :func:`plot_unit_heatmap`: per site, the units that matter most, unit x step.
- :func:`plot_faithfulness`: sufficiency and necessity over circuit size beside random
  circuits (95% bootstrap intervals over graphs), and the node accuracy kept.
- :func:`plot_agreement`: EAP and EAP-IG against exact patching, one dot per component.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hooked_nar.figures import graph_layout, pyplot, save_figure
from patching.circuits.faithfulness import FaithfulnessCurve
from patching.circuits.scoring import Scores
from patching.circuits.sites import Site

__all__ = ["plot_agreement", "plot_edge_circuit", "plot_faithfulness", "plot_unit_heatmap"]

_COLOURS = {
    "eap": "#1f78b4",
    "eap_ig": "#e31a1c",
    "exact": "#33a02c",
    "mask": "#6a3d9a",
    "random": "#777777",
}


def plot_edge_circuit(scores: Scores, cf, g: int, path, title: str | None = None) -> Path:
    """Graph ``g``'s message edges per step, scored by ``scores`` (edge granularity); ``cf``
    is that graph's :class:`~patching.counterfactuals.Counterfactual` (its edit is marked).
    Width and colour: ``|effect|`` relative to the largest of the graph; red: ablating the
    message lowers the metric, blue: raises it; self-loops are drawn as node rings."""
    import networkx as nx
    from matplotlib.colors import Normalize

    comps = scores.components
    if comps.granularity != "edge":
        raise ValueError("plot_edge_circuit needs edge scores (granularity 'edge')")
    mine = (comps.edge_graph == g).nonzero().flatten()
    if mine.numel() == 0:
        raise ValueError(f"graph {g} has no scored edges")
    E = comps.edge_graph.numel()
    S = comps.num_steps
    values = scores.per_graph[g].double().view(S, E)[:, mine].numpy()  # [S, e]
    ends = [comps.items[int(e)].ends for e in mine]
    n = int(cf.clean.num_nodes)
    adjacency = np.zeros((n, n))
    adjacency[tuple(cf.clean.edge_index.numpy())] = 1
    pos = graph_layout(adjacency)
    span = float(np.abs(values).max()) or 1.0
    norm = Normalize(-span, span)
    plt = pyplot()
    cols = min(S, 4)
    rows = math.ceil(S / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.1 * cols, 3.0 * rows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.set_axis_off()
    edit = cf.edit
    edited = tuple(edit["edge"]) if "edge" in edit else None
    sources = edit.get("source")
    cmap = plt.get_cmap("RdBu")
    for t in range(S):
        ax = axes.flat[t]
        G = nx.DiGraph()
        G.add_nodes_from(range(n))
        ring = np.zeros(n)
        for (i, j), v in zip(ends, values[t], strict=True):
            if i == j:
                ring[i] = v
            else:
                G.add_edge(i, j, v=v)
        edges = list(G.edges())
        vs = np.array([G.edges[e]["v"] for e in edges])
        widths = 0.4 + 5.0 * np.abs(vs) / span
        nx.draw_networkx_edges(
            G,
            pos,
            ax=ax,
            edgelist=edges,
            width=widths,
            edge_color=[cmap(norm(v)) for v in vs],
            arrows=True,
            arrowstyle="-|>",
            arrowsize=8,
            node_size=260,
            connectionstyle="arc3,rad=0.15",
        )
        if edited is not None:
            nx.draw_networkx_edges(
                G,
                pos,
                ax=ax,
                edgelist=[edited],
                width=1.0,
                style="dashed",
                edge_color="black",
                arrows=False,
                node_size=260,
            )
        nx.draw_networkx_nodes(
            G,
            pos,
            ax=ax,
            node_size=260,
            node_color="white",
            edgecolors=[cmap(norm(v)) for v in ring],
            linewidths=0.8 + 4.0 * np.abs(ring) / span,
        )
        for i in range(n):
            label = f"{i}*" if sources is not None and i in sources else str(i)
            ax.text(*pos[i], label, ha="center", va="center", fontsize=7)
        ax.set_title(f"step t = {t}", fontsize=9)
    from matplotlib.cm import ScalarMappable

    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=axes,
        shrink=0.7,
        label=f"{scores.method}: metric change when the message is ablated",
    )
    note = "dashed: edited edge" if edited is not None else "*: old / new source"
    fig.suptitle((title or f"message edges of graph {g}") + f"  ({note})", fontsize=10)
    return save_figure(fig, path)


def plot_unit_heatmap(
    scores: Scores, sites: list[Site], path, top: int = 16, title: str | None = None
) -> Path:
    """Per site, the ``top`` units with the largest total ``|effect|`` over steps: unit x
    step heatmaps of the normalised per-step effect (step granularity scores)."""
    from matplotlib.colors import Normalize

    comps = scores.components
    if comps.granularity != "step":
        raise ValueError("plot_unit_heatmap needs per-step scores (granularity 'step')")
    values = scores.normalised().numpy()
    S = comps.num_steps
    slices = comps.site_slices()
    panels = []
    for site in sites:
        block = values[slices[site.name]].reshape(S, site.width).T  # [d, S]
        order = np.argsort(-np.abs(block).sum(1), kind="stable")[:top]
        panels.append((site, block[order], order))
    span = max(float(np.abs(p[1]).max()) for p in panels) or 1.0
    plt = pyplot()
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(2.2 + 0.35 * S * len(panels) + 1.2 * len(panels), 0.3 * top + 1.6),
        squeeze=False,
        layout="constrained",
    )
    norm = Normalize(-span, span)
    for ax, (site, block, order) in zip(axes.flat, panels, strict=True):
        im = ax.imshow(block, cmap="RdBu", norm=norm, aspect="auto")
        ax.set_yticks(range(len(order)), [str(int(u)) for u in order], fontsize=7)
        ax.set_xticks(range(S), [str(t) for t in range(S)], fontsize=7)
        ax.set_xlabel("step t")
        ax.set_title(site.label, fontsize=9)
    axes.flat[0].set_ylabel(f"unit (top {top} by total |effect|)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="effect / clean-reference gap")
    fig.suptitle(title or f"{scores.method}: units that matter per step", fontsize=10)
    return save_figure(fig, path)


def plot_faithfulness(curves: dict[str, FaithfulnessCurve], path, title: str | None = None) -> Path:
    """Sufficiency, necessity and node accuracy kept over circuit size, one line per scoring
    method, random circuits in grey, bands: 95% bootstrap intervals over graphs."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    first = next(iter(curves.values()))
    xs = np.asarray(first.fractions)
    panels = [
        ("sufficiency (circuit only)", lambda c, w: c.faithfulness("sufficiency", w)),
        ("necessity (circuit ablated)", lambda c, w: c.faithfulness("necessity", w)),
        (
            "node accuracy kept (circuit only)",
            lambda c, w: c.kept("sufficiency", "node_accuracy", w),
        ),
    ]
    for ax, (name, get) in zip(axes, panels, strict=True):
        for which, curve, colour, label in [
            ("random", first, _COLOURS["random"], "random circuits"),
            *[("circuit", c, _COLOURS.get(m, "#000000"), m) for m, c in curves.items()],
        ]:
            d = get(curve, which)
            v, ci = np.asarray(d["value"], float), np.asarray(d["ci"], float)
            ax.plot(xs, v, marker="o", ms=3, color=colour, label=label)
            ax.fill_between(xs, ci[:, 0], ci[:, 1], color=colour, alpha=0.15)
        ax.axhline(1, color="#999999", lw=0.8, ls="--")
        ax.set_xlabel("circuit size (fraction of components)")
        ax.set_title(name, fontsize=9)
        ax.set_xscale("symlog", linthresh=0.05)
        ax.set_xlim(0, 1)
    axes[0].set_ylabel(f"faithfulness of {first.metric}")
    axes[2].axhline(0.9, color="#e31a1c", lw=0.8, ls=":")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"{first.granularity} components, {first.ablation} ablation", fontsize=10)
    return save_figure(fig, path)


def plot_agreement(scores: dict[str, dict[str, Scores]], path, title: str | None = None) -> Path:
    """EAP and EAP-IG against exact patching (normalised effects), one panel per
    granularity that has exact scores."""
    grans = [g for g, s in scores.items() if "exact" in s]
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(grans), figsize=(4.2 * len(grans), 4.0), squeeze=False, layout="constrained"
    )
    for ax, gran in zip(axes.flat, grans, strict=True):
        y = scores[gran]["exact"].normalised().numpy()
        for method in ("eap", "eap_ig"):
            x = scores[gran][method].normalised().numpy()
            ax.scatter(y, x, s=6, alpha=0.6, color=_COLOURS[method], label=method)
        lim = float(np.nanmax(np.abs(y))) or 1.0
        ax.plot([-lim, lim], [-lim, lim], color="#999999", lw=0.8)
        ax.set_xlabel("exact patching effect")
        ax.set_ylabel("estimated effect")
        ax.set_title(f"{gran} components ({len(y)})", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(title or "attribution vs exact patching", fontsize=10)
    return save_figure(fig, path)
