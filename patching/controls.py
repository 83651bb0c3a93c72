"""Controls and intervals for causal claims, and :class:`CausalResult`, which holds both.

An effect means something only beside what an uninformed intervention of the same size
does: :func:`matched_features` draws random SAE features with the same firing frequency as
the tested one, :func:`random_directions` random directions of the same norm, and
:func:`bootstrap_ci` resamples graphs (the unit that is drawn independently) for an
interval. All three take a ``seed`` and return the same draw for the same seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["CausalResult", "bootstrap_ci", "matched_features", "random_directions"]


def bootstrap_ci(
    per_graph: Tensor,
    num_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``per_graph`` [G] (graphs resampled)."""
    x = torch.as_tensor(per_graph, dtype=torch.float64).flatten()
    x = x[~torch.isnan(x)]
    if x.numel() == 0:
        return float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(x.numel(), (num_resamples, x.numel()), generator=gen)
    means = x[pick].mean(1)
    lo, hi = torch.quantile(
        means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    )
    return float(lo), float(hi)


def matched_features(
    frequency: Tensor,
    feature: int,
    num: int = 8,
    tolerance: float = 0.5,
    seed: int = 0,
    exclude: list[int] | tuple[int, ...] = (),
) -> list[int]:
    """``num`` random features whose firing frequency is within a factor ``1 + tolerance``
    of ``frequency[feature]`` (``frequency``: [d_sae], the fraction of rows each fires on).

    When too few features are that close, the nearest ones in log frequency fill the list;
    ``feature``, ``exclude`` and dead features are never drawn.
    """
    freq = torch.as_tensor(frequency, dtype=torch.float64)
    if not 0 <= feature < freq.numel():
        raise ValueError(f"feature={feature} is outside 0..{freq.numel() - 1}")
    target = float(freq[feature])
    alive = freq > 0
    alive[feature] = False
    if exclude:
        alive[torch.as_tensor(list(exclude), dtype=torch.long)] = False
    candidates = torch.nonzero(alive).flatten()
    if candidates.numel() == 0:
        return []
    gen = torch.Generator().manual_seed(seed)
    candidates = candidates[torch.randperm(candidates.numel(), generator=gen)]
    if target <= 0:
        distance = freq[candidates]
    else:
        distance = (
            freq[candidates].log() - torch.log(torch.tensor(target, dtype=torch.float64))
        ).abs()
    close = distance <= torch.log1p(torch.tensor(tolerance, dtype=torch.float64))
    order = torch.cat([torch.nonzero(close).flatten(), torch.argsort(distance, stable=True)])
    chosen: list[int] = []
    for i in order.tolist():
        f = int(candidates[i])
        if f not in chosen:
            chosen.append(f)
        if len(chosen) == num:
            break
    return chosen


def random_directions(d: int, num: int, norm: float | Tensor = 1.0, seed: int = 0) -> Tensor:
    """``[num, d]`` directions uniform on the sphere, scaled to ``norm`` (a float or [num])."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(num, d, generator=gen)
    v = v / v.norm(dim=1, keepdim=True)
    return v * torch.as_tensor(norm, dtype=v.dtype).reshape(-1, 1)


@dataclass
class CausalResult:
    """One intervention's effect beside its control, with bootstrap intervals over graphs.

    ``effect`` / ``control``: means over graphs of the measure (``metric``) under the
    intervention and under the control interventions (averaged over controls);
    ``*_ci``: 95% bootstrap intervals; ``per_graph_*``: the values behind them;
    ``settings``: everything that produced the numbers (model, SAE, feature, mode, steps,
    seed, number of graphs and controls, ...).
    """

    name: str
    metric: str
    effect: float
    effect_ci: tuple[float, float]
    control: float
    control_ci: tuple[float, float]
    settings: dict[str, Any] = field(default_factory=dict)
    per_graph_effect: list[float] = field(default_factory=list, repr=False)
    per_graph_control: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def from_per_graph(
        cls,
        name: str,
        metric: str,
        effect: Tensor,
        control: Tensor,
        settings: dict | None = None,
        seed: int = 0,
    ) -> CausalResult:
        """Means and intervals from per-graph values ``effect`` [G] and ``control`` [G]."""
        effect, control = torch.as_tensor(effect).double(), torch.as_tensor(control).double()
        return cls(
            name,
            metric,
            float(effect.nanmean()),
            bootstrap_ci(effect, seed=seed),
            float(control.nanmean()),
            bootstrap_ci(control, seed=seed + 1),
            dict(settings or {}),
            effect.tolist(),
            control.tolist(),
        )

    @property
    def separated(self) -> bool:
        """Whether the effect's interval lies wholly above the control's."""
        return self.effect_ci[0] > self.control_ci[1]

    def as_dict(self) -> dict:
        """Every field as a JSON-ready dict."""
        return asdict(self)

    def row(self) -> list[str]:
        """``[name, metric, effect [lo, hi], control kind, control [lo, hi], separated]`` as
        text; the control kind is ``settings["control"]`` ("-" without one)."""
        ci = lambda v, c: f"{v:.3f} [{c[0]:.3f}, {c[1]:.3f}]"  # noqa: E731
        return [
            self.name,
            self.metric,
            ci(self.effect, self.effect_ci),
            str(self.settings.get("control", "-")),
            ci(self.control, self.control_ci),
            "yes" if self.separated else "no",
        ]

    def __str__(self) -> str:
        return results_table([self])


def results_table(results: list[CausalResult], markdown: bool = False) -> str:
    """Results as an aligned text table (or a GitHub markdown table)."""
    header = [
        "intervention",
        "metric",
        "effect [95% CI]",
        "control",
        "control [95% CI]",
        "effect > control",
    ]
    rows = [r.row() for r in results]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])
