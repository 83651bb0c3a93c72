"""Pictures of SAE features: a feature x concept AUROC heatmap, and a graph drawn at every step
with nodes coloured by one feature beside the concept it tracks (via
:func:`hooked_nar.figures.draw_graph_panels`). PNGs are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hooked_nar.figures import pyplot
from sae.feature_scores import ConceptScores

__all__ = ["auroc_heatmap", "feature_on_graph", "graph_values", "heatmap_features"]


def heatmap_features(
    scores: ConceptScores, per_concept: int = 4, max_features: int = 40
) -> list[int]:
    """Column indices worth showing: the top ``per_concept`` features of every concept."""
    a = torch.nan_to_num(scores.auroc, nan=0.0)
    chosen: list[int] = []
    for i in range(a.shape[1]):
        for j in a[:, i].argsort(descending=True)[:per_concept].tolist():
            if j not in chosen:
                chosen.append(j)
    for i in range(scores.spearman.shape[1]):
        for j in scores.spearman[:, i].abs().argsort(descending=True)[:per_concept].tolist():
            if j not in chosen:
                chosen.append(j)
    return chosen[:max_features]


def auroc_heatmap(
    scores: ConceptScores,
    path: str | os.PathLike,
    features: list[int] | None = None,
    title: str | None = None,
) -> Path:
    """Heatmap of AUROC (boolean concepts) and |Spearman| (scalar ones, marked ``|rho|``):
    rows concepts, columns features (default :func:`heatmap_features`)."""
    from hooked_nar.figures import save_figure

    cols = heatmap_features(scores) if features is None else list(features)
    if not cols:
        raise ValueError("no features to show")
    feats = scores.extra.get("features")
    names = [str(int(feats[j]) if feats is not None else j) for j in cols]
    rows = [scores.auroc[cols, i] for i in range(len(scores.bool_concepts))]
    rows += [scores.spearman[cols, i].abs() for i in range(len(scores.scalar_concepts))]
    labels = list(scores.bool_concepts) + [f"{c} |rho|" for c in scores.scalar_concepts]
    m = torch.stack(rows).numpy() if rows else np.zeros((0, len(cols)))
    plt = pyplot()
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.42 * len(cols) + 2.5), 0.5 * len(labels) + 1.6), layout="constrained"
    )
    im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="RdBu_r", aspect="auto")
    ax.set_xticks(range(len(cols)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("SAE feature")
    for (i, j), v in np.ndenumerate(m):
        if np.isfinite(v) and (v >= 0.95 or v <= 0.05):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(im, ax=ax, label="AUROC (boolean) / |Spearman| (scalar)", shrink=0.9)
    ax.set_title(title or "feature x concept AUROC", fontsize=10)
    return save_figure(fig, path)


def graph_values(
    index,
    acts: Tensor,
    graph: int,
    feature: int,
    concept: str,
    labels: dict[str, Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(feature [S, n], concept [S, n], steps)`` of one dataset graph from store rows.

    ``acts`` [R, d_sae] over the store's rows; ``index`` the store's ``RowIndex``; nodes
    without a row at a step (none, for valid steps) are NaN."""
    labels = index.concepts if labels is None else labels
    if concept not in labels:
        raise ValueError(f"concept={concept!r} is not among {list(labels)}")
    sel = (index.graph == graph).nonzero().flatten()
    if sel.numel() == 0:
        raise ValueError(f"graph={graph} has no rows in the store")
    steps = sorted(index.step[sel].unique().tolist())
    n = int(index.node[sel].max()) + 1
    feat = np.full((len(steps), n), np.nan)
    conc = np.full((len(steps), n), np.nan)
    pos = {t: i for i, t in enumerate(steps)}
    for r in sel.tolist():
        s, v = pos[int(index.step[r])], int(index.node[r])
        feat[s, v] = float(acts[r, feature])
        conc[s, v] = float(labels[concept][r])
    return feat, conc, steps


def feature_on_graph(
    data,
    feature_values: np.ndarray,
    concept_values: np.ndarray,
    steps: list[int],
    path: str | os.PathLike,
    feature: int,
    concept: str,
    title: str | None = None,
) -> Path:
    """Draw graph ``data`` (a CLRS ``Data``) at every step: top row nodes coloured by the
    feature's activation (divided by its maximum on this graph), bottom row by the concept."""
    from hooked_nar.figures import draw_graph_panels

    n = int(data.num_nodes)
    if feature_values.shape[1] != n:  # isolated trailing nodes never got a row
        pad = np.full((feature_values.shape[0], n - feature_values.shape[1]), np.nan)
        feature_values = np.concatenate([feature_values, pad], 1)
        concept_values = np.concatenate([concept_values, pad], 1)
    A = np.zeros((n, n))
    ei = data.edge_index.numpy()
    A[ei[0], ei[1]] = 1.0
    np.fill_diagonal(A, 0.0)
    peak = np.nanmax(feature_values) if np.isfinite(feature_values).any() else 0.0
    scaled = feature_values / peak if peak > 0 else feature_values
    source = int(data.s.argmax()) if "s" in data and data.s.ndim == 1 else None
    return draw_graph_panels(
        A,
        np.stack([scaled, concept_values]),
        path,
        kind="scalar",
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        titles=[f"step {t}" for t in steps],
        row_labels=[f"feature {feature}", concept],
        source=source,
        value_label=f"feature {feature} / max ({peak:.2f}); {concept} (0/1)",
        title=title or f"feature {feature} vs {concept}",
    )


def auroc_by_seed(
    aurocs: dict[str, list[float]],
    path: str | os.PathLike,
    probes: dict[str, float] | None = None,
    threshold: float = 0.95,
    title: str | None = None,
) -> Path:
    """One column per boolean concept: the best-feature AUROC of every SAE training seed
    (dots) and their mean (bar), the linear probe's AUROC (diamond, from ``probes``) and the
    ``threshold`` line."""
    from hooked_nar.figures import save_figure

    concepts = list(aurocs)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.4 * len(concepts) + 2.0, 3.6), layout="constrained")
    rng = np.random.default_rng(0)
    for i, c in enumerate(concepts):
        v = np.asarray(aurocs[c], dtype=float)
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, s=14, color="tab:blue", alpha=0.7)
        ax.hlines(v.mean(), i - 0.25, i + 0.25, color="tab:blue", lw=2)
        if probes and c in probes:
            ax.scatter([i + 0.3], [probes[c]], marker="D", s=30, color="tab:orange")
    ax.axhline(threshold, color="grey", ls="--", lw=1)
    ax.scatter([], [], s=14, color="tab:blue", label="best feature, one seed (bar: mean)")
    if probes:
        ax.scatter([], [], marker="D", s=30, color="tab:orange", label="linear probe")
    ax.set_xticks(range(len(concepts)), concepts, rotation=20, fontsize=8)
    ax.set_ylabel("AUROC")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "best-feature AUROC across SAE training seeds", fontsize=10)
    return save_figure(fig, path)
