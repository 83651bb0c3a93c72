"""Which SAE features track which algorithmic concepts.

For every (feature, boolean concept) pair: AUROC (the probability that a random positive row
activates the feature more than a random negative row, ties counting one half), and the
best-threshold F1 with its precision, recall and threshold (predict the concept where the
activation is >= threshold, over every distinct activation value). For every (feature,
scalar concept) pair: Pearson and Spearman correlation (Spearman on mid-ranks). AUROC is
directional: a feature that fires where the concept is *false* scores near 0, not 1.

The monosemanticity rule, in one place (:data:`MONOSEMANTIC_RULE`), two-sided: a feature is
monosemantic for concept c when its AUROC is >= ``high`` (0.95) for c and every other boolean
concept of the algorithm lies within ``|AUROC - 0.5| < low - 0.5`` (0.3): a feature reading
another concept's negation (AUROC 0.001) reads that concept too. (Nested concepts - a
frontier node is always visited - can keep a faithful feature from passing.) A concept
split over several features is reported by :func:`feature_splitting`: every feature above
the threshold and the cosines between their decoder rows.

>>> scores = feature_concept_scores(acts, labels)   # acts [R, F], labels {c: [R]}
>>> best_features(scores)["is_frontier"]             # {"feature": 17, "auroc": 0.99, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int, Shaped
from torch import Tensor

if TYPE_CHECKING:
    from hooked_nar.model.cache import RowIndex

__all__ = [
    "MONOSEMANTIC_RULE",
    "ConceptScores",
    "auroc",
    "best_f1",
    "best_features",
    "concepts_with_feature",
    "feature_concept_scores",
    "feature_splitting",
    "midranks",
    "monosemantic_features",
    "pearson",
    "spearman",
    "top_examples",
]

#: A feature is monosemantic for c: AUROC >= high for c, |AUROC - 0.5| < low - 0.5 for every
#: other concept.
MONOSEMANTIC_RULE = {"high": 0.95, "low": 0.8}


def midranks(x: Tensor) -> Tensor:
    """1-based ranks along dim 0 of ``x`` [R] or [R, F], ties sharing their mean rank."""
    cols = x.reshape(x.shape[0], -1).T.contiguous().double()  # [F, R]
    s, _ = cols.sort(dim=1)
    lo = torch.searchsorted(s, cols, right=False)
    hi = torch.searchsorted(s, cols, right=True)
    return ((lo + hi + 1).double() / 2).T.reshape(x.shape)


def _check(acts: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    if acts.ndim == 1:
        acts = acts[:, None]
    if acts.ndim != 2 or labels.ndim != 1 or labels.shape[0] != acts.shape[0]:
        raise ValueError(
            f"acts must be [R] or [R, F] and labels [R]; got {tuple(acts.shape)}, "
            f"{tuple(labels.shape)}"
        )
    return acts, labels


def auroc(
    acts: Float[Tensor, " rows *features"], labels: Shaped[Tensor, " rows"]
) -> Float[Tensor, " features"]:
    """AUROC of every column of ``acts`` [R, F] (or [R]) for boolean ``labels`` [R] -> [F].

    NaN when ``labels`` is all true or all false (no pairs to compare).
    """
    acts, labels = _check(acts, labels)
    y = labels.bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return torch.full((acts.shape[1],), float("nan"))
    u = torch.cat([midranks(cols)[y].sum(0) for cols in acts.split(64, dim=1)])
    return ((u - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()


def best_f1(
    acts: Float[Tensor, " rows *features"], labels: Shaped[Tensor, " rows"], chunk: int = 64
) -> dict[str, Float[Tensor, " features"]]:
    """Best-threshold F1 of every column of ``acts`` [R, F] for boolean ``labels`` [R].

    Rule: predict true where ``act >= threshold``, over every distinct activation value of
    the column (predicting nothing gives F1 = 0). Returns ``{"f1", "precision", "recall",
    "threshold"}``, each [F]; precision of an empty prediction counts as 0.
    """
    acts, labels = _check(acts, labels)
    y = labels.bool()
    P = int(y.sum())
    out = {k: [] for k in ("f1", "precision", "recall", "threshold")}
    for cols in acts.T.split(chunk):  # [f, R]
        v, order = cols.double().sort(dim=1, descending=True)
        tp = y[order].double().cumsum(1)  # predicted = top (j + 1) rows
        k = torch.arange(1, v.shape[1] + 1, dtype=torch.double)
        # a cut is valid only after the last row of a group of equal values
        valid = torch.ones_like(v, dtype=torch.bool)
        valid[:, :-1] = v[:, :-1] != v[:, 1:]
        f1 = torch.where(valid, 2 * tp / (k + P), torch.zeros(()))
        best = f1.argmax(1)
        idx = best[:, None]
        tp_b, k_b = tp.gather(1, idx)[:, 0], k[best]
        f1_b = f1.gather(1, idx)[:, 0]
        ok = f1_b > 0
        out["f1"].append(f1_b.float())
        out["precision"].append(torch.where(ok, tp_b / k_b, 0.0).float())
        out["recall"].append(torch.where(ok, tp_b / max(P, 1), 0.0).float())
        out["threshold"].append(torch.where(ok, v.gather(1, idx)[:, 0], float("inf")).float())
    return {k: torch.cat(v) for k, v in out.items()}


def pearson(
    acts: Float[Tensor, " rows *features"], values: Shaped[Tensor, " rows"]
) -> Float[Tensor, " features"]:
    """Pearson correlation of every column of ``acts`` [R, F] with ``values`` [R] -> [F].

    0 where either side is constant."""
    acts, values = _check(acts, values)
    a = acts.double() - acts.double().mean(0)
    b = values.double() - values.double().mean()
    denom = a.norm(dim=0) * b.norm()
    r = (a * b[:, None]).sum(0) / denom
    return torch.where(denom > 0, r, torch.zeros(())).float()


def spearman(
    acts: Float[Tensor, " rows *features"], values: Shaped[Tensor, " rows"]
) -> Float[Tensor, " features"]:
    """Spearman correlation (Pearson on mid-ranks) of every column with ``values`` -> [F]."""
    acts, values = _check(acts, values)
    return pearson(midranks(acts).float(), midranks(values).float())


@dataclass
class ConceptScores:
    """Feature x concept statistics. Boolean concepts: ``auroc``, ``f1``, ``precision``,
    ``recall``, ``threshold`` [F, Cb] over ``bool_concepts``; scalar concepts: ``pearson``,
    ``spearman`` [F, Cs] over ``scalar_concepts``. ``positive_rate`` [Cb], ``frequency`` [F]
    (fraction of rows where the feature fires)."""

    bool_concepts: list[str]
    scalar_concepts: list[str]
    auroc: Tensor
    f1: Tensor
    precision: Tensor
    recall: Tensor
    threshold: Tensor
    pearson: Tensor
    spearman: Tensor
    positive_rate: Tensor
    frequency: Tensor
    extra: dict = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        """Number of features scored (rows of ``auroc``)."""
        return int(self.frequency.shape[0])


def feature_concept_scores(
    acts: Float[Tensor, "rows features"],
    labels: dict[str, Shaped[Tensor, " rows"]],
    features: Int[Tensor, " subset"] | None = None,
) -> ConceptScores:
    """All statistics of features ``acts`` [R, F] against ``labels`` ``{concept: [R]}``.

    Boolean labels get AUROC / F1; float labels correlations. Concepts constant over the
    rows (e.g. never true) get NaN AUROC. ``features``: optional subset of column indices.
    """
    if acts.ndim != 2:
        raise ValueError(f"acts must be [R, F], got {tuple(acts.shape)}")
    if features is not None:
        acts = acts[:, features]
    for c, v in labels.items():
        if v.shape != (acts.shape[0],):
            raise ValueError(
                f"labels[{c!r}] has shape {tuple(v.shape)}, expected ({acts.shape[0]},)"
            )
    bools = [c for c, v in labels.items() if v.dtype == torch.bool]
    scalars = [c for c, v in labels.items() if v.dtype != torch.bool]
    F = acts.shape[1]

    def stack(cols: list[Tensor], n: int) -> Tensor:
        return torch.stack(cols, 1) if cols else torch.zeros(F, n)

    f1s = [best_f1(acts, labels[c]) for c in bools]
    return ConceptScores(
        bool_concepts=bools,
        scalar_concepts=scalars,
        auroc=stack([auroc(acts, labels[c]) for c in bools], 0),
        f1=stack([r["f1"] for r in f1s], 0),
        precision=stack([r["precision"] for r in f1s], 0),
        recall=stack([r["recall"] for r in f1s], 0),
        threshold=stack([r["threshold"] for r in f1s], 0),
        pearson=stack([pearson(acts, labels[c]) for c in scalars], 0),
        spearman=stack([spearman(acts, labels[c]) for c in scalars], 0),
        positive_rate=torch.tensor([float(labels[c].float().mean()) for c in bools]),
        frequency=(acts > 0).float().mean(0),
        extra={"features": None if features is None else torch.as_tensor(features)},
    )


def _feature_id(scores: ConceptScores, j: int) -> int:
    feats = scores.extra.get("features")
    return int(j if feats is None else feats[j])


def best_features(scores: ConceptScores) -> dict[str, dict]:
    """Per concept, the feature with the highest AUROC (boolean) or |Spearman| (scalar).

    Boolean concepts also name the ``anti_feature`` firing best where the concept is false
    (``anti_auroc`` = 1 - its AUROC); it does not count as capturing the concept."""
    out: dict[str, dict] = {}
    for i, c in enumerate(scores.bool_concepts):
        col = torch.nan_to_num(scores.auroc[:, i], nan=-1.0)
        j = int(col.argmax())
        out[c] = {
            "feature": _feature_id(scores, j),
            "auroc": float(scores.auroc[j, i]),
            "f1": float(scores.f1[j, i]),
            "precision": float(scores.precision[j, i]),
            "recall": float(scores.recall[j, i]),
            "threshold": float(scores.threshold[j, i]),
            "best_f1": float(scores.f1[:, i].max()),
            # the feature that best fires where the concept is false (informative, not a match)
            "anti_feature": _feature_id(
                scores, int(torch.nan_to_num(scores.auroc[:, i], nan=2.0).argmin())
            ),
            "anti_auroc": float(1 - torch.nan_to_num(scores.auroc[:, i], nan=1.0).min()),
        }
    for i, c in enumerate(scores.scalar_concepts):
        j = int(scores.spearman[:, i].abs().argmax())
        out[c] = {
            "feature": _feature_id(scores, j),
            "spearman": float(scores.spearman[j, i]),
            "pearson": float(scores.pearson[j, i]),
        }
    return out


def monosemantic_features(
    scores: ConceptScores,
    high: float = MONOSEMANTIC_RULE["high"],
    low: float = MONOSEMANTIC_RULE["low"],
) -> list[dict]:
    """Features meeting the two-sided rule of :data:`MONOSEMANTIC_RULE`:
    ``[{feature, concept, auroc}]``."""
    out = []
    a = torch.nan_to_num(scores.auroc, nan=0.5)
    for j in range(a.shape[0]):
        hits = (a[j] >= high).nonzero().flatten().tolist()
        if len(hits) != 1:
            continue
        others = torch.cat([a[j, : hits[0]], a[j, hits[0] + 1 :]])
        if bool(((others - 0.5).abs() < low - 0.5).all()):
            c = scores.bool_concepts[hits[0]]
            out.append(
                {"feature": _feature_id(scores, j), "concept": c, "auroc": float(a[j, hits[0]])}
            )
    return out


def feature_splitting(
    scores: ConceptScores, decoder: Float[Tensor, "features d_in"], threshold: float = 0.9
) -> dict[str, dict]:
    """Per boolean concept, how split its code is: ``features`` with AUROC >= ``threshold``,
    and the mean and largest ``|cos|`` between their decoder rows (``decoder`` [F, d]; NaN
    with fewer than two). Nearly orthogonal decoders of many features mean that one feature
    carries only part of the concept."""
    a = torch.nan_to_num(scores.auroc, nan=0.0)
    out = {}
    for i, c in enumerate(scores.bool_concepts):
        cols = (a[:, i] >= threshold).nonzero().flatten()
        feats = [_feature_id(scores, int(j)) for j in cols]
        cos_mean = cos_max = float("nan")
        if len(feats) > 1:
            w = decoder[feats].float()
            w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
            cos = (w @ w.T).abs()
            off = cos[~torch.eye(len(feats), dtype=torch.bool)]
            cos_mean, cos_max = float(off.mean()), float(off.max())
        out[c] = {"features": feats, "cos_mean": cos_mean, "cos_max": cos_max}
    return out


def concepts_with_feature(scores: ConceptScores, threshold: float = 0.95) -> list[str]:
    """Boolean concepts that some feature tracks with AUROC >= ``threshold``."""
    a = torch.nan_to_num(scores.auroc, nan=0.0)
    return [c for i, c in enumerate(scores.bool_concepts) if bool((a[:, i] >= threshold).any())]


def top_examples(
    acts: Float[Tensor, "rows features"],
    index: RowIndex,
    feature: int,
    k: int = 10,
    labels: dict[str, Shaped[Tensor, " rows"]] | None = None,
) -> list[dict]:
    """The ``k`` rows where ``feature`` fires most, strongest first:
    ``[{graph, node, step, activation, <concept>: value, ...}]``.

    ``index``: the store's ``RowIndex`` (graph, node, step, concepts); ``labels`` defaults
    to ``index.concepts``.
    """
    if not 0 <= feature < acts.shape[1]:
        raise ValueError(f"feature={feature} is out of range for {acts.shape[1]} features")
    labels = index.concepts if labels is None else labels
    vals, rows = acts[:, feature].topk(min(k, acts.shape[0]))
    out = []
    for v, r in zip(vals.tolist(), rows.tolist(), strict=True):
        if v <= 0:
            break
        row = {
            "graph": int(index.graph[r]),
            "node": int(index.node[r]),
            "step": int(index.step[r]),
            "activation": float(v),
        }
        row.update(
            {c: (bool(x[r]) if x.dtype == torch.bool else float(x[r])) for c, x in labels.items()}
        )
        out.append(row)
    return out
