"""Nulls and intervals for causal claims, and :class:`CausalResult`, which holds an effect
beside its control.

An effect means something only beside what an intervention of the same size that carries no
information about the concept does: :func:`uninformative_features` lists the live SAE
features whose AUROC for every given concept is close to 0.5 (features matched on firing
frequency alone are, in practice, other features of the same concept, so they are not
offered), :func:`random_directions` draws directions of a given norm, and
:func:`bootstrap_ci` (:mod:`patching.stats`) resamples graphs for an interval.
All take a ``seed`` where they draw and return the same draw for the same seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from patching.stats import bootstrap_ci

__all__ = ["CausalResult", "bootstrap_ci", "random_directions", "uninformative_features"]


def uninformative_features(
    acts: Float[Tensor, "R F"],
    labels: dict[str, Bool[Tensor, " R"]],
    margin: float = 0.1,
    exclude: list[int] | tuple[int, ...] = (),
) -> list[int]:
    """Live features (firing on some row of ``acts``) whose AUROC for every concept of
    ``labels`` lies within ``margin`` of 0.5, i.e. that read none of them; ``exclude`` is
    left out. Sorted by feature index."""
    from sae.feature_scores import auroc

    if not 0 < margin <= 0.5:
        raise ValueError(f"margin must lie in (0, 0.5], got {margin}")
    ok = (acts > 0).any(0)
    for y in labels.values():
        a = auroc(acts, y.bool())
        ok &= (a - 0.5).abs().nan_to_num(1.0) < margin
    if exclude:
        ok[torch.as_tensor(list(exclude), dtype=torch.long)] = False
    return torch.nonzero(ok).flatten().tolist()


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
        effect: Float[Tensor, " graphs"],
        control: Float[Tensor, " graphs"],
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
