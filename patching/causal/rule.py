"""The rule that turns measurements into a verdict, written once.

Every intervention (ablation, steering) has one deciding measure
(:data:`DECIDING_METRICS`) on the concept's own target. A :class:`Comparison` holds the
tested unit's effect beside the null distribution of equally sized uninformative units on
the same graphs: the paired per-graph difference (unit minus mean null) with a bootstrap
interval over graphs and null units, and the exact rank p-value of the unit among the null
units, Holm-corrected across every deciding comparison of the run.

**A comparison moves the target** (:func:`moves`) when the Holm-adjusted p-value is <=
``alpha``, the difference's 95% interval lies above 0 and the difference is at least
``min_effect`` (:data:`CAUSAL_RULE`).

**Verdict of one intervention** (:func:`intervention_verdict`):

- ``"causal"``: the unit moves the target and reads the concept (its AUROC for the concept
  is >= ``min_auroc``; a unit that reads another concept, or the negation, is not this
  concept's representation even where it moves the target);
- ``"not causal"``: it does not move the target while the positive control (the concept's
  difference-of-means direction, run the same way) does, so the target could move; or it
  moves the target without reading the concept;
- ``"inconclusive"``: neither moves it, or the unit and every null unit have an effect of
  exactly 0 (nothing was observable at that dose).

**Verdict of a concept** (:func:`concept_verdict`): ``"causal"`` when an intervention is
causal, else ``"not causal"`` when one is not causal, else ``"inconclusive"``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from patching.stats import paired_difference, rank_p_value

__all__ = [
    "CAUSAL_RULE",
    "DECIDING_METRICS",
    "VERDICTS",
    "Comparison",
    "compare",
    "concept_verdict",
    "intervention_verdict",
    "moves",
]

#: alpha for Holm-adjusted p-values; the smallest difference (unit minus null, in the
#: deciding measure's units: a fraction of the margin, or of the steering rows) that counts;
#: the smallest AUROC for the concept of a unit that can be called causal for it.
CAUSAL_RULE: dict[str, float] = {"alpha": 0.05, "min_effect": 0.05, "min_auroc": 0.75}
#: The one deciding measure of each intervention (see :mod:`patching.causal.targets`).
DECIDING_METRICS = {"ablation": "margin removed", "steering": "flip rate"}
VERDICTS = ("causal", "not causal", "inconclusive")


@dataclass
class Comparison:
    """One unit's effect beside its null on one target: ``effect`` (mean over graphs) with
    ``effect_ci``; ``null`` (mean over null units and graphs) with ``null_q95`` (95th
    percentile of the null units' means); ``diff`` / ``diff_ci`` (paired, unit minus null);
    ``p`` (rank p-value among ``num_null`` null units) and ``p_holm`` (set by the run)."""

    metric: str
    effect: float
    effect_ci: tuple[float, float]
    null: float
    null_q95: float
    diff: float
    diff_ci: tuple[float, float]
    p: float
    num_null: int
    p_holm: float = math.nan
    all_zero: bool = False
    per_graph_effect: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        """Every field as a JSON-ready dict."""
        return asdict(self)

    def text(self) -> str:
        """``effect [ci] vs null (q95); diff [ci], p (Holm)``."""
        if math.isnan(self.effect):
            return "-"
        return (
            f"{self.effect:.3f} vs null {self.null:.3f} (q95 {self.null_q95:.3f}); "
            f"diff {self.diff:+.3f} [{self.diff_ci[0]:+.3f}, {self.diff_ci[1]:+.3f}], "
            f"p {self.p:.3g} (Holm {self.p_holm:.3g})"
        )


def compare(metric: str, effect: Tensor, null: Tensor, seed: int = 0) -> Comparison:
    """A :class:`Comparison` of per-graph ``effect`` [G] with ``null`` [K, G] (NaN graphs
    dropped); ``p_holm`` starts equal to ``p`` until the run corrects it."""
    from patching.stats import bootstrap_ci

    e = torch.as_tensor(effect, dtype=torch.float64)
    n = torch.as_tensor(null, dtype=torch.float64).reshape(-1, e.numel())
    keep = ~torch.isnan(e) & ~torch.isnan(n).any(0)
    if not keep.any() or n.shape[0] == 0:
        nan2 = (math.nan, math.nan)
        return Comparison(metric, math.nan, nan2, math.nan, math.nan, math.nan, nan2, math.nan, 0)
    e, n = e[keep], n[:, keep]
    unit_means = n.mean(1)
    pd = paired_difference(e, n, seed=seed)
    p = rank_p_value(float(e.mean()), unit_means)
    return Comparison(
        metric,
        float(e.mean()),
        bootstrap_ci(e, seed=seed),
        float(n.mean()),
        float(torch.quantile(unit_means, 0.95)),
        pd.mean,
        pd.ci,
        p,
        int(n.shape[0]),
        p,
        bool((e == 0).all() and (n == 0).all()),
        e.tolist(),
    )


def moves(c: Comparison | None, rule: dict[str, float] | None = None) -> bool:
    """Whether ``c`` moves its target under :data:`CAUSAL_RULE` (or ``rule``)."""
    if c is None or math.isnan(c.diff):
        return False
    r = {**CAUSAL_RULE, **(rule or {})}
    return bool(c.p_holm <= r["alpha"] and c.diff_ci[0] > 0 and c.diff >= r["min_effect"])


def intervention_verdict(
    unit: Comparison,
    control: Comparison | None,
    auroc: float,
    rule: dict[str, float] | None = None,
) -> str:
    """``"causal"`` / ``"not causal"`` / ``"inconclusive"`` of one intervention whose unit
    has ``auroc`` for the concept (module docstring)."""
    if moves(unit, rule):
        reads = auroc >= {**CAUSAL_RULE, **(rule or {})}["min_auroc"]
        return "causal" if reads else "not causal"
    if unit.all_zero or math.isnan(unit.diff):
        return "inconclusive"
    return "not causal" if moves(control, rule) else "inconclusive"


def concept_verdict(verdicts: list[str]) -> str:
    """The concept's verdict from its interventions' verdicts (module docstring)."""
    for v in VERDICTS[:2]:
        if v in verdicts:
            return v
    return "inconclusive"
