"""Hard choices of the discrete processors and the loss that trains them.

A hard choice picks one row per group (one node per graph, one in-edge per node, ...):
the rows whose learned score is within ``TIER`` of the group's best are tied, and keys that
are never fed to a network (a scalar, the node index) break the tie, least first
(:func:`lexicographic_top1`). The scores learn from a hinge loss whose targets come from the
hints (:func:`choice_loss`). States are hard too: one one-hot factor per discrete hint
(:func:`one_hot_state`, :func:`hard_factors`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from torch_geometric.utils import scatter

TIER = 0.5  # scores within TIER of the best are tied; the scalar, then the index decides
MARGIN_BEAT = 1.0  # a candidate that would win the tie-break must score this much lower
MARGIN_TIE = 0.25  # any other candidate may score at most this much higher


def lexicographic_top1(
    score: Float[Tensor, " X"], keys: list[Tensor], group: Int[Tensor, " X"], num_groups: int
) -> Bool[Tensor, " X"]:
    """One row per group: the top tier of ``score`` (within ``TIER`` of the group's best),
    then the least of each of ``keys`` in turn (the last key must be unique within a group)."""
    best = scatter(score, group, 0, dim_size=num_groups, reduce="max")
    chosen = score >= best[group] - TIER
    for key in keys:
        masked = torch.where(chosen, key, torch.full_like(key, float("inf")))
        least = scatter(masked, group, 0, dim_size=num_groups, reduce="min")
        chosen = chosen & (masked == least[group])
    return chosen


def ranking_loss(
    score: Float[Tensor, " X"], target: Bool[Tensor, " X"], beats: Bool[Tensor, " X"],
    group: Int[Tensor, " X"], valid: Bool[Tensor, " X"], num_groups: int,
) -> Tensor:
    """Hinge loss that makes ``lexicographic_top1`` pick ``target`` (one row per valid group):
    rows that would win the tie-break against it (``beats``) must score ``MARGIN_BEAT`` lower,
    the others at most ``MARGIN_TIE`` higher. Mean over valid groups."""
    has_target = scatter(target.float(), group, 0, dim_size=num_groups, reduce="sum") > 0
    target_score = scatter(torch.where(target, score, torch.zeros_like(score)), group, 0,
                           dim_size=num_groups, reduce="sum")[group]
    gap = score - target_score
    per_row = torch.where(beats, F.relu(gap + MARGIN_BEAT), F.relu(gap - MARGIN_TIE))
    rows = valid & ~target & has_target[group]
    per_group = scatter(per_row * rows, group, 0, dim_size=num_groups, reduce="sum")
    groups = scatter(rows.float(), group, 0, dim_size=num_groups, reduce="max") > 0
    return per_group.sum() / groups.sum().clamp(min=1)


def choice_loss(
    score: Float[Tensor, " X"], target: Bool[Tensor, " X"], keys: list[Tensor],
    group: Int[Tensor, " X"], valid: Bool[Tensor, " X"], num_groups: int,
) -> Tensor:
    """:func:`ranking_loss` for ``lexicographic_top1(score, keys, ...)`` to pick ``target``:
    the rows that would win the tie-break are those whose ``keys`` are lexicographically less
    than the target row's."""
    ref = [scatter(torch.where(target, k, torch.zeros_like(k)), group, 0, dim_size=num_groups,
                   reduce="sum")[group] for k in keys]
    return ranking_loss(score, target, lexicographically_less(keys, ref), group, valid,
                        num_groups)


def lexicographically_less(keys: list[Tensor], ref: list[Tensor]) -> Bool[Tensor, " X"]:
    """Row-wise ``keys < ref`` in lexicographic order (lists of ``[X]`` tensors)."""
    less = torch.zeros_like(keys[0], dtype=torch.bool)
    equal = torch.ones_like(less)
    for k, r in zip(keys, ref, strict=True):
        less = less | (equal & (k < r))
        equal = equal & (k == r)
    return less


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """Two-layer ReLU network."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


def lift(score: Tensor, chosen: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Scores as logits whose argmax is the hard choice: the chosen row is set 1 above its
    group's best score."""
    best = scatter(score, group, 0, dim_size=num_groups, reduce="max")[group]
    return torch.where(chosen, best + 1, score)


def one_hot_state(batch, t: int, factors, widths: list[int]) -> Float[Tensor, "N K"]:
    """One-hot state of hint step ``t``: the hints ``factors`` (categoricals as they are,
    masks and mask_one as 2 classes), concatenated."""
    parts = []
    for f, w in zip(factors, widths, strict=True):
        value = batch[f.name][:, t]
        parts.append(value.float() if f.type == "categorical"
                     else F.one_hot(value.long(), w).float())
    return torch.cat(parts, -1)


def hard_factors(logits: Float[Tensor, "N K"], widths: list[int], stochastic: bool
                 ) -> Float[Tensor, "N K"]:
    """Per factor of ``widths``: one-hot argmax, or straight-through Gumbel-softmax when
    ``stochastic``."""
    parts = logits.split(widths, -1)
    if stochastic:
        return torch.cat([F.gumbel_softmax(p, tau=1.0, hard=True) for p in parts], -1)
    return torch.cat([F.one_hot(p.argmax(-1), p.shape[-1]).to(p.dtype) for p in parts], -1)
