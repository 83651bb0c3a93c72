"""Circuits and their faithfulness: the model with everything outside a circuit ablated
(sufficiency) and with the circuit ablated (necessity), over circuit sizes, beside random
circuits of the same size, with bootstrap intervals over graphs.

A circuit is the top-k components by ``|score|`` (:func:`top_k_circuit`) or those above a
threshold (:func:`threshold_circuit`). For each size of a grid (fractions of all
components), :func:`faithfulness_curve` runs, in batched forward passes,

- the circuit-only model (complement ablated) and the circuit-ablated model;
- ``num_random`` random circuits of the same size, both ways (the null);

and records every metric per graph. Summaries (:class:`FaithfulnessCurve`):

- ``faithfulness``: ``(m - m_empty) / (m_full - m_empty)`` of the continuous metric, a ratio
  of sums over graphs (``m_empty``: every component ablated); 1 = the full model;
- ``accuracy kept``: node (or graph) accuracy of the model / that of the full model;
- areas over the size axis in [0, 1]: ``cpr`` (area under sufficiency faithfulness, higher
  is better, MIB's CPR) and ``cmd`` (area under ``|1 - faithfulness|``, lower is better,
  MIB's CMD), the same for random circuits.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor
from tqdm.auto import tqdm

from patching.circuits.ablation import AblationRuns
from patching.circuits.components import Components
from patching.circuits.scoring import Scores

__all__ = [
    "FRACTIONS",
    "MODES",
    "FaithfulnessCurve",
    "bootstrap_ratio",
    "faithfulness_curve",
    "jaccard",
    "threshold_circuit",
    "top_k_circuit",
]

#: Default circuit sizes, as fractions of all components.
FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
MODES = ("sufficiency", "necessity")


def top_k_circuit(scores: Scores, k: int) -> Bool[Tensor, " C"]:
    """The ``k`` components with the largest ``|mean effect|`` (ties by index, NaN last):
    a component scored exactly 0 enters only once every nonzero one is in."""
    C = len(scores.components)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= C:
        raise ValueError(f"k must be an int in 0..{C}, got {k!r}")
    chosen = torch.zeros(C, dtype=torch.bool)
    chosen[scores.ranking()[:k]] = True
    return chosen


def threshold_circuit(scores: Scores, threshold: float) -> Bool[Tensor, " C"]:
    """Components whose ``|normalised effect|`` exceeds ``threshold`` (fraction of the gap)."""
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    return scores.normalised().abs() > threshold


def jaccard(a: Tensor, b: Tensor) -> float:
    """``|a and b| / |a or b|`` of two boolean component sets (NaN when both are empty)."""
    a, b = torch.as_tensor(a, dtype=torch.bool), torch.as_tensor(b, dtype=torch.bool)
    if a.shape != b.shape:
        raise ValueError(f"the circuits cover {a.numel()} and {b.numel()} components")
    union = int((a | b).sum())
    return float("nan") if union == 0 else int((a & b).sum()) / union


def bootstrap_ratio(
    num: Tensor, den: Tensor, num_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``sum(num) / sum(den)`` over graphs (pairs resampled;
    NaN pairs dropped)."""
    num, den = torch.as_tensor(num).double().flatten(), torch.as_tensor(den).double().flatten()
    ok = torch.isfinite(num) & torch.isfinite(den)
    num, den = num[ok], den[ok]
    if num.numel() == 0:
        return float("nan"), float("nan")
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(num.numel(), (num_resamples, num.numel()), generator=gen)
    ratios = num[pick].sum(1) / den[pick].sum(1)
    ratios = ratios[torch.isfinite(ratios)]
    if ratios.numel() == 0:
        return float("nan"), float("nan")
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(ratios, q)
    return float(lo), float(hi)


@dataclass
class FaithfulnessCurve:
    """Metrics per graph of circuits of every size, both ways, beside random circuits.

    ``values[mode][metric]``: ``[F, G]`` for the circuit; ``random[mode][metric]``:
    ``[F, R, G]``; ``full`` / ``empty``: ``{metric: [G]}`` with nothing / everything
    ablated. ``metric`` names the continuous metric faithfulness is computed from.
    """

    fractions: list[float]
    sizes: list[int]
    num_components: int
    granularity: str
    ablation: str
    metric: str
    values: dict[str, dict[str, Tensor]]
    random: dict[str, dict[str, Tensor]]
    full: dict[str, Tensor]
    empty: dict[str, Tensor]
    settings: dict[str, Any] = field(default_factory=dict)

    def faithfulness(self, mode: str, which: str = "circuit", seed: int = 0) -> dict[str, list]:
        """``{"value": [F], "ci": [F, 2]}`` of the normalised continuous metric
        (``which``: ``"circuit"`` or ``"random"``, the mean over random draws per graph)."""
        x = self._per_graph(mode, self.metric, which)
        base, full = self.empty[self.metric].double(), self.full[self.metric].double()
        out: dict[str, list] = {"value": [], "ci": []}
        for row in x:
            out["value"].append(_ratio(row - base, full - base))
            out["ci"].append(list(bootstrap_ratio(row - base, full - base, seed=seed)))
        return out

    def kept(self, mode: str, metric: str, which: str = "circuit", seed: int = 0) -> dict:
        """``{"value": [F], "ci": [F, 2], "absolute": [F]}``: a task metric (node or graph
        accuracy) of the model / that of the full model, with its bootstrap interval."""
        x = self._per_graph(mode, metric, which)
        full = self.full[metric].double()
        out: dict[str, list] = {"value": [], "ci": [], "absolute": []}
        for row in x:
            out["value"].append(_ratio(row, full))
            out["ci"].append(list(bootstrap_ratio(row, full, seed=seed)))
            out["absolute"].append(float(row[torch.isfinite(row)].mean()))
        return out

    def versus_random(self, mode: str, metric: str | None = None, seed: int = 0) -> dict:
        """Per size, the circuit against the random circuits of that size on ``metric``
        (default: the continuous one), with :mod:`patching.stats`: the paired per-graph
        difference (circuit minus the random circuits' mean) and its bootstrap interval over
        graphs and random circuits, the rank p-value among the random circuits (greater for
        sufficiency, less for necessity) and its Holm correction across the sizes where the
        two can differ (neither empty nor full)."""
        from patching.stats import holm, paired_difference, rank_p_value

        metric = metric or self.metric
        circuit = self.values[mode][metric].double()  # [F, G]
        random = self.random[mode][metric].double()  # [F, R, G]
        alternative = "greater" if mode == "sufficiency" else "less"
        diff, ci, p = [], [], []
        for f, c, r in zip(self.fractions, circuit, random, strict=True):
            if f in (0.0, 1.0):  # the same circuit as every random one
                diff.append(0.0)
                ci.append([0.0, 0.0])
                p.append(math.nan)
                continue
            d = paired_difference(c, r, seed=seed)
            diff.append(d.mean)
            ci.append(list(d.ci))
            p.append(rank_p_value(float(c.nanmean()), r.nanmean(-1), alternative))
        return {"diff": diff, "ci": ci, "p": p, "p_holm": holm(p), "metric": metric}

    def areas(self) -> dict[str, float]:
        """CPR and CMD (and the necessity area) of the circuit and of random circuits."""
        out = {}
        xs = np.asarray(self.fractions)
        for which in ("circuit", "random"):
            suff = np.asarray(self.faithfulness("sufficiency", which)["value"], dtype=float)
            nec = np.asarray(self.faithfulness("necessity", which)["value"], dtype=float)
            out[f"cpr_{which}"] = float(np.trapezoid(suff, xs))
            out[f"cmd_{which}"] = float(np.trapezoid(np.abs(1 - suff), xs))
            out[f"necessity_area_{which}"] = float(np.trapezoid(nec, xs))
        return out

    def smallest(self, metric: str, target: float = 0.9) -> dict[str, Any]:
        """The smallest size of the grid whose circuit-only model keeps at least ``target``
        of the full model's ``metric``; None when no size does."""
        kept = self.kept("sufficiency", metric)["value"]
        for f, n, v in zip(self.fractions, self.sizes, kept, strict=True):
            if v >= target:
                return {"fraction": f, "size": n, "kept": v}
        return {"fraction": None, "size": None, "kept": None}

    def _per_graph(self, mode: str, metric: str, which: str) -> Tensor:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} must be one of {MODES}")
        if which == "circuit":
            return self.values[mode][metric].double()
        if which == "random":
            return self.random[mode][metric].double().nanmean(1)
        raise ValueError(f"which={which!r} must be 'circuit' or 'random'")

    def as_dict(self) -> dict[str, Any]:
        """Summaries per size (values, intervals, random null) and areas, JSON-ready."""
        task = [m for m in self.full if m != self.metric]
        rows = {}
        for mode in MODES:
            rows[mode] = {
                "faithfulness": self.faithfulness(mode),
                "faithfulness_random": self.faithfulness(mode, "random"),
                "versus_random": self.versus_random(mode),
                **{f"{m}_versus_random": self.versus_random(mode, m) for m in task},
                **{f"{m}_kept": self.kept(mode, m) for m in task},
                **{f"{m}_kept_random": self.kept(mode, m, "random") for m in task},
            }
        return {
            "fractions": self.fractions,
            "sizes": self.sizes,
            "num_components": self.num_components,
            "granularity": self.granularity,
            "ablation": self.ablation,
            "metric": self.metric,
            "full": {k: float(v.double().nanmean()) for k, v in self.full.items()},
            "empty": {k: float(v.double().nanmean()) for k, v in self.empty.items()},
            "curves": rows,
            "areas": self.areas(),
            "settings": self.settings,
        }


def _ratio(num: Tensor, den: Tensor) -> float:
    ok = torch.isfinite(num) & torch.isfinite(den)
    d = float(den[ok].sum())
    return float(num[ok].sum()) / d if d != 0 else float("nan")


def faithfulness_curve(
    runs: AblationRuns,
    components: Components,
    scores: Scores,
    fractions=FRACTIONS,
    num_random: int = 16,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool | None = None,
) -> FaithfulnessCurve:
    """Sufficiency and necessity of the top-k circuits of ``scores`` at every fraction of
    ``components``, and of ``num_random`` random circuits per size, on ``runs``' graphs
    (which may differ from the graphs the scores came from: the components are addresses)."""
    fractions = [float(f) for f in fractions]
    if not fractions or any(not 0 <= f <= 1 for f in fractions):
        raise ValueError(f"fractions must be numbers in [0, 1], got {fractions}")
    if isinstance(num_random, bool) or not isinstance(num_random, int) or num_random < 1:
        raise ValueError(f"num_random must be a positive int, got {num_random!r}")
    if len(scores.components) != len(components):
        raise ValueError(
            f"scores cover {len(scores.components)} components, components has {len(components)}"
        )
    C, R = len(components), num_random
    gen = torch.Generator().manual_seed(seed)
    sizes = [int(round(f * C)) for f in fractions]
    rows = []  # (F, 1 + R) circuits
    for k in sizes:
        rows.append(top_k_circuit(scores, k))
        for _ in range(R):
            chosen = torch.zeros(C, dtype=torch.bool)
            chosen[torch.randperm(C, generator=gen)[:k]] = True
            rows.append(chosen)
    circuits = torch.stack(rows)  # [F * (1 + R), C]
    everything = torch.ones(1, C, dtype=torch.bool)
    # masks say what is ablated: the complement (sufficiency), the circuit (necessity)
    plan = torch.cat([~circuits, circuits, everything, ~everything])
    results: dict[str, list[Tensor]] = {}
    show = sys.stderr.isatty() if progress is None else bool(progress)
    with tqdm(total=len(plan), desc="faithfulness", disable=not show, leave=False) as bar:
        for start in range(0, len(plan), batch_size):
            chunk = plan[start : start + batch_size]
            with torch.no_grad():
                out = runs.run(components.masks(chunk))
            for name, v in out.items():
                results.setdefault(name, []).append(v.detach().double())
            bar.update(len(chunk))
    F, n = len(fractions), len(circuits)
    F_rows = n
    values: dict[str, dict[str, Tensor]] = {m: {} for m in MODES}
    random: dict[str, dict[str, Tensor]] = {m: {} for m in MODES}
    full, empty = {}, {}
    for name, parts in results.items():
        v = torch.cat(parts)  # [2 * F_rows + 2, G]
        for i, mode in enumerate(MODES):
            block = v[i * n : (i + 1) * n].view(F, 1 + R, -1)
            values[mode][name] = block[:, 0]
            random[mode][name] = block[:, 1:]
        empty[name], full[name] = v[2 * F_rows], v[2 * F_rows + 1]
    return FaithfulnessCurve(
        fractions,
        [int(c.sum()) for c in circuits[:: 1 + R]],
        C,
        components.granularity,
        runs.ablation,
        next(iter(runs.metrics)),
        values,
        random,
        full,
        empty,
        {"num_random": R, "seed": seed, "num_graphs": runs.num_graphs, "scores": scores.method},
    )
