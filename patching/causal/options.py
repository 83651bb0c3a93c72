"""The options of a causal concept test, in one object shared by every function of the run."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Literal

from torch import Tensor

__all__ = ["VERDICT_DOSE", "CausalOptions"]

#: The dose the verdict is taken at: ablation removes the whole unit; steering adds the
#: unit's largest observed activation where the concept is true (still on-distribution).
VERDICT_DOSE = 1.0


@dataclass(frozen=True)
class CausalOptions:
    """Everything that shapes a causal test besides the model, SAE and concept.

    Unit: ``unit`` ``"group"`` (every live SAE feature with AUROC >= ``group_auroc`` for the
    concept; the best feature when none reaches it), ``"feature"`` (``features``, default the
    best one) or ``"direction"`` (``direction`` [d] / subspace [k, d], default the concept's
    difference of means); ``center``: a direction's ablation sets its projection to the
    store mean (``"mean"``) or removes it (``"project"``).

    Null: ``num_null`` units per kind (uninformative feature subsets and random subspaces;
    ``None``: enough for the run's Holm correction, :func:`patching.stats.null_size_for`),
    uninformative meaning ``|AUROC - 0.5| < null_auroc_margin`` for the concept and every
    concept sharing its target hint; ``num_null_dose`` per kind at the other doses.

    Doses: ``ablation_doses`` (fraction of the unit removed; > 1 off-distribution) and
    ``steer_doses`` (quantile of the unit's activation where the concept is true; > 1:
    multiples of its largest value, off-distribution); both must contain 1.0, the verdict
    dose (:data:`VERDICT_DOSE`).

    Data: ``num_graphs`` test graphs of ``sizes`` nodes (seed ``30_000 + seed``) unless a
    dataset is given; the store of ``store_graphs`` graphs (seed ``20_000 + seed``) unless
    one is given; ``sites_per_graph`` steering sites per graph; ``batch_size``; ``seed``;
    ``rule``: overrides of :data:`patching.causal.rule.CAUSAL_RULE`; ``progress``: a tqdm
    bar (default: when stderr is a terminal).
    """

    unit: Literal["group", "feature", "direction"] = "group"
    features: tuple[int, ...] | None = None
    direction: Tensor | None = field(default=None, compare=False)
    group_auroc: float = 0.9
    center: Literal["mean", "project"] = "mean"
    num_null: int | None = None
    num_null_dose: int = 8
    null_auroc_margin: float = 0.1
    ablation_doses: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    steer_doses: tuple[float, ...] = (0.0, 0.5, 0.9, 1.0, 2.0, 4.0)
    num_graphs: int = 64
    sizes: tuple[int, ...] = (16,)
    sites_per_graph: int = 2
    store_graphs: int = 128
    batch_size: int = 64
    seed: int = 0
    rule: dict[str, float] | None = None
    progress: bool | None = None

    def with_(self, **changes) -> CausalOptions:
        """A copy with ``changes``."""
        return replace(self, **changes)

    @property
    def show_progress(self) -> bool:
        """Whether to draw a progress bar."""
        return sys.stderr.isatty() if self.progress is None else bool(self.progress)

    def check(self, d_sae: int | None, d_in: int) -> None:
        """ValueError naming the first bad option."""
        if self.unit not in ("group", "feature", "direction"):
            raise ValueError(f"unit={self.unit!r} must be 'group', 'feature' or 'direction'")
        if self.unit in ("group", "feature") and d_sae is None:
            raise ValueError(f"unit={self.unit!r} needs an SAE; pass sae= or unit='direction'")
        if self.features is not None:
            if self.unit != "feature":
                raise ValueError("features= is used with unit='feature' only")
            bad = [
                f
                for f in self.features
                if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < (d_sae or 0)
            ]
            if bad or not self.features:
                raise ValueError(
                    f"features must be ints in 0..{(d_sae or 1) - 1}, got {list(self.features)}"
                )
        if self.direction is not None:
            if self.unit != "direction":
                raise ValueError("direction= is used with unit='direction' only")
            if self.direction.shape[-1] != d_in:
                raise ValueError(f"direction must have last dimension {d_in}")
        if self.center not in ("mean", "project"):
            raise ValueError(f"center={self.center!r} must be 'mean' or 'project'")
        if not 0.5 < self.group_auroc < 1:
            raise ValueError(f"group_auroc must lie in (0.5, 1), got {self.group_auroc}")
        for name in ("ablation_doses", "steer_doses"):
            doses = getattr(self, name)
            if VERDICT_DOSE not in doses or min(doses) < 0:
                raise ValueError(f"{name} must be >= 0 and contain {VERDICT_DOSE}, got {doses}")
        counts = (self.num_graphs, self.sites_per_graph, self.store_graphs, self.batch_size)
        if min(counts) < 1 or self.num_null_dose < 1 or (self.num_null or 1) < 1:
            raise ValueError(
                "num_graphs, sites_per_graph, store_graphs, batch_size, num_null and "
                "num_null_dose must be >= 1"
            )
