"""Units of intervention: a concept's representation in the activation space of one hook, and
the null units of the same size that carry no information about the concept.

A :class:`Unit` is ``k`` directions ``[k, d]`` with a way to read their coordinates from an
activation row:

- SAE features (``kind="features"``): the directions are the decoder rows, the coordinates
  the features' activations; ablation zeroes them (``x - lam * a_F(x) @ W_dec[F]``, the SAE's
  reconstruction error kept).
- A direction or subspace (``kind="direction"``): orthonormal rows ``B``; ablation sets the
  projection to its mean over the store (``x - lam * (x B^T - mu) B``), or removes it
  (``center="project"``: ``mu = 0``).

Steering adds ``A(q) @ directions`` at the chosen (node, step) sites, where ``A(q)`` are the
unit's *natural* coordinates where the concept is true: their ``q`` quantile for ``q <= 1``
and ``q`` times their largest observed value beyond (off-distribution). ``lam`` (ablation)
and ``q`` (steering) are the doses; a dose of 0 returns every activation unchanged.

Nulls (:func:`null_units`): random subsets of *uninformative* live features
(:func:`patching.controls.uninformative_features`) of the unit's size, and random
subspaces of its dimension; steered with the unit's own steering norm at every site.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from patching.controls import random_directions

__all__ = [
    "Unit",
    "ablation_hooks",
    "direction_unit",
    "feature_unit",
    "mean_difference",
    "null_units",
    "steering_hooks",
]


@dataclass
class Unit:
    """``directions`` [k, d]; ``natural`` [R, k]: its coordinates on store rows where the
    concept is true (features: activations; direction: projection minus its mean where
    the concept is false); ``features`` (kind "features") or orthonormal ``directions`` with
    ``center`` [k] (kind "direction"); ``steer_unit`` [d] (nulls only): the direction a null
    is steered along, scaled to the tested unit's norm."""

    name: str
    kind: str
    directions: Tensor
    natural: Tensor
    features: list[int]
    center: Tensor | None = None
    steer_unit: Tensor | None = None

    @property
    def size(self) -> int:
        """Number of features or dimensions."""
        return int(self.directions.shape[0])

    def coordinates(self, x: Float[Tensor, "R d"], sae=None) -> Float[Tensor, "R k"]:
        """The unit's coordinates of rows ``x`` (features: SAE activations; direction:
        projection minus ``center``)."""
        if self.kind == "features":
            return sae.encode(x.to(sae.dtype))[:, self.features].to(x.dtype)
        return x @ self.directions.T.to(x) - self.center.to(x)

    def ablation_delta(self, x: Float[Tensor, "R d"], sae=None) -> Float[Tensor, "R d"]:
        """What ablation removes from rows ``x``: ``coordinates(x) @ directions``."""
        return self.coordinates(x, sae) @ self.directions.to(x)

    def natural_values(self, dose: float) -> Float[Tensor, " k"]:
        """``A(dose)``: the per-coordinate ``dose`` quantile of :attr:`natural` (``dose <=
        1``) or ``dose`` times its largest value (``dose > 1``); zeros without rows."""
        if self.natural.numel() == 0:
            return torch.zeros(self.size)
        nat = self.natural.double()
        if dose <= 1:
            return torch.quantile(nat, float(dose), dim=0).float()
        return (dose * nat.max(0).values).float()

    def steer_vector(self, dose: float) -> Float[Tensor, " d"]:
        """The vector added at a steering site at ``dose``."""
        if dose == 0:
            return torch.zeros(self.directions.shape[1])
        return self.natural_values(dose) @ self.directions.float()


def feature_unit(
    sae, features: list[int], acts: Float[Tensor, "R F"], labels: Bool[Tensor, " R"], name: str
) -> Unit:
    """SAE features ``features`` as one unit; natural values are their activations ``acts``
    (store rows x features) where ``labels`` is true."""
    if not features:
        raise ValueError("features must name at least one SAE feature")
    idx = torch.as_tensor(features, dtype=torch.long)
    return Unit(
        name,
        "features",
        sae.W_dec.detach()[idx.to(sae.W_dec.device)].float().cpu(),
        acts[labels.bool()][:, idx].float(),
        [int(f) for f in features],
    )


def mean_difference(rows: Float[Tensor, "R d"], labels: Bool[Tensor, " R"]) -> Float[Tensor, " d"]:
    """The difference of means: mean of ``rows`` where ``labels`` is true minus where false."""
    y = labels.bool()
    if y.all() or not y.any():
        raise ValueError("labels must hold both classes for a difference of means")
    return rows[y].float().mean(0) - rows[~y].float().mean(0)


def direction_unit(
    direction: Float[Tensor, "k d"] | Float[Tensor, " d"],
    rows: Float[Tensor, "R d"],
    labels: Bool[Tensor, " R"],
    name: str,
    center: str = "mean",
) -> Unit:
    """A direction ``[d]`` or subspace ``[k, d]`` (orthonormalised here) as one unit.
    ``center``: ``"mean"`` (ablation sets the projection to its mean over ``rows``) or
    ``"project"`` (ablation removes it). Natural values: the projection of ``rows`` where
    ``labels`` is true, minus its mean where it is false."""
    if center not in ("mean", "project"):
        raise ValueError(f"center must be 'mean' or 'project', got {center!r}")
    d = torch.as_tensor(direction, dtype=torch.float32)
    d = d.reshape(-1, d.shape[-1])
    if (
        d.shape[1] != rows.shape[1]
        or d.shape[0] > d.shape[1]
        or not torch.isfinite(d).all()
        or d.norm() == 0
    ):
        raise ValueError(
            f"direction must be a finite, non-zero [d] or [k, d] tensor with d = "
            f"{rows.shape[1]} and k <= d, got shape {tuple(d.shape)}"
        )
    q, _ = torch.linalg.qr(d.T)  # [d, k] orthonormal columns spanning the rows
    basis = _orient(q.T, d)
    proj = rows.float() @ basis.T
    y = labels.bool()
    mu = proj.mean(0) if center == "mean" else torch.zeros(basis.shape[0])
    baseline = proj[~y].mean(0) if (~y).any() else torch.zeros(basis.shape[0])
    return Unit(name, "direction", basis, proj[y] - baseline, [], mu)


def _orient(basis: Tensor, d: Tensor) -> Tensor:
    """Flip each orthonormal row so that it points along the matching input row (QR's row j
    spans the first j + 1 input rows; with more input rows than dimensions, the basis has
    only as many rows as dimensions)."""
    sign = torch.sign((basis * d[: basis.shape[0]]).sum(1, keepdim=True))
    return basis * torch.where(sign == 0, torch.ones_like(sign), sign)


def null_units(
    unit: Unit,
    pool: list[int],
    sae,
    acts: Float[Tensor, "R F"],
    rows: Float[Tensor, "R d"],
    num: int,
    seed: int = 0,
) -> list[Unit]:
    """``2 * num`` null units of ``unit``'s size: ``num`` random ``unit.size``-subsets of the
    uninformative live features ``pool`` (steered along the sum of their decoder rows,
    weighted by their mean activation where they fire) and random ``unit.size``-dimensional
    subspaces (mean-ablated; steered along a random direction; at most ``d``-dimensional),
    which also fill in for the feature subsets that ``pool`` is too small to give. Seeded by
    ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out: list[Unit] = []
    k = unit.size
    if sae is not None and len(pool) >= k:
        pool_t = torch.as_tensor(pool, dtype=torch.long)
        seen: set[tuple[int, ...]] = set()
        for _ in range(20 * num):
            if len(out) == num:
                break
            pick = tuple(sorted(pool_t[torch.randperm(len(pool), generator=gen)[:k]].tolist()))
            if pick in seen:
                continue
            seen.add(pick)
            a = acts[:, list(pick)]
            weight = torch.where(a > 0, a, torch.nan).nanmean(0).nan_to_num(0.0)
            directions = sae.W_dec.detach()[list(pick)].float().cpu()
            along = weight @ directions
            out.append(
                Unit(
                    f"null features {list(pick)}",
                    "features",
                    directions,
                    torch.zeros(0, k),
                    list(pick),
                    steer_unit=along / along.norm().clamp_min(1e-12),
                )
            )
    d = rows.shape[1]
    for i in range(2 * num - len(out)):
        # a group wider than the space (tiny models) is matched by the whole space
        basis = random_directions(d, min(k, d), 1.0, seed=seed * 7919 + 104_729 + i)
        r = direction_unit(basis, rows, torch.ones(rows.shape[0], dtype=torch.bool), "")
        r.name = f"null random subspace {i}"
        r.natural = torch.zeros(0, k)
        r.steer_unit = random_directions(d, 1, 1.0, seed=seed * 7919 + 3 + i)[0]
        out.append(r)
    return out


def ablation_hooks(
    unit: Unit, hook: str, sites: Bool[Tensor, "N S"], dose: float, sae=None
) -> list[tuple[str, Callable]]:
    """Forward hooks ablating ``unit`` with strength ``dose`` (1: fully; 0: unchanged) at
    the rows of ``sites`` [N, S] (column t: processor step t)."""

    def make(t: int) -> Callable:
        rows = sites[:, t]

        def fn(x: Tensor, hook) -> Tensor:
            if dose == 0:
                return x
            r = rows.to(x.device)
            out = x.clone()
            out[r] = x[r] - dose * unit.ablation_delta(x[r], sae)
            return out

        return fn

    return [(f"steps.{t}.{hook}", make(t)) for t in range(sites.shape[1]) if sites[:, t].any()]


def steering_hooks(
    vector: Float[Tensor, " d"], sites: Bool[Tensor, "N S"], hook: str
) -> list[tuple[str, Callable]]:
    """Forward hooks adding ``vector`` to the rows of ``sites`` [N, S] (column t: step t)."""

    def make(t: int) -> Callable:
        rows = sites[:, t]

        def fn(x: Tensor, hook) -> Tensor:
            return torch.where(rows[:, None].to(x.device), x + vector.to(x), x)

        return fn

    return [(f"steps.{t}.{hook}", make(t)) for t in range(sites.shape[1]) if sites[:, t].any()]
