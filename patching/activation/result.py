"""What activation and attribution patching return: :class:`PatchingResult`, and the
normalised effect ``(patched - corrupt) / (clean - corrupt)`` with its guard against gaps too
small to divide by."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from patching.stats import bootstrap_ci

__all__ = [
    "BY",
    "GAP_RELATIVE",
    "PatchingResult",
    "normalise_table",
    "normalised_effect",
    "usable_gap",
]

#: The site layouts ``by`` accepts.
BY = (("step", "node"), ("step",), ("node",))
#: A graph whose clean-corrupt gap is at most this fraction of the median gap over the run's
#: graphs has no normalised effect (NaN): a near-zero gap would divide noise into effects of
#: any size. (An absolute floor at float32 resolution of the metric's values applies too.)
GAP_RELATIVE = 0.05


@dataclass
class PatchingResult:
    """Normalised patching effects per hook, with what produced them.

    ``effects[hook]``: ``[S, N]`` for ``by=("step", "node")`` (N = nodes of all graphs,
    each normalised by its own graph's gap), ``[S]`` for ``("step",)`` (the mean over graphs
    of each graph's normalised effect, see :meth:`per_graph` and :meth:`ci`), ``[N]`` for
    ``("node",)``; NaN where a site is not patched (a step one run of the pair does not
    execute) or the graph's gap is too small to normalise by (``GAP_RELATIVE``).
    ``patched[hook]``: the metric after patching: ``[S, N]`` / ``[N]`` (the value of the
    node's graph) or ``[S, G]`` (per graph). ``clean`` / ``corrupt``: ``[G]`` metric of the
    unpatched runs. ``ptr`` ``[G + 1]``: node offsets of the graphs. ``steps`` ``[G]``:
    processor steps patched per graph.
    """

    effects: dict[str, Tensor]
    patched: dict[str, Tensor]
    clean: Tensor
    corrupt: Tensor
    by: tuple[str, ...]
    direction: str
    method: str
    metric: str
    ptr: Tensor
    steps: Tensor
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def hooks(self) -> list[str]:
        """The hook names patched (keys of ``effects``)."""
        return list(self.effects)

    @property
    def num_graphs(self) -> int:
        """Number of graph pairs patched."""
        return int(self.clean.numel())

    def __getitem__(self, hook: str) -> Tensor:
        return self.effects[self._hook(hook)]

    def _hook(self, hook: str | None) -> str:
        if hook is None:
            return self.hooks[0]
        if hook not in self.effects:
            raise ValueError(f"hook={hook!r} was not patched; patched hooks: {self.hooks}")
        return hook

    def per_graph(self, hook: str | None = None) -> Tensor:
        """Normalised effect per graph: ``[S, G]`` for step sites (``by=("step",)``),
        otherwise the effects themselves (a node site belongs to one graph)."""
        hook = self._hook(hook)
        if self.by != ("step",):
            return self.effects[hook]
        return normalised_effect(self.patched[hook], self.clean, self.corrupt)

    def ci(self, hook: str | None = None, level: float = 0.95, seed: int = 0) -> Tensor:
        """Bootstrap interval over graphs of each step's effect ``[S, 2]`` (``by=("step",)``;
        the mean of per-graph normalised effects is resampled)."""
        if self.by != ("step",):
            raise ValueError("intervals over graphs need by=('step',) (one site spans all graphs)")
        per = self.per_graph(hook)
        return torch.tensor(
            [bootstrap_ci(row, level=level, seed=seed) for row in per], dtype=torch.float64
        )

    def graph(self, g: int = 0, hook: str | None = None) -> Tensor:
        """Effects of graph ``g``: ``[S_g, n_g]`` / ``[n_g]`` for node sites, ``[S_g]`` for
        step sites (the per-graph normalised effect)."""
        hook = self._hook(hook)
        if not 0 <= g < self.num_graphs:
            raise ValueError(f"g={g} is not a graph of this result (0..{self.num_graphs - 1})")
        a, b = int(self.ptr[g]), int(self.ptr[g + 1])
        S = int(self.steps[g])
        if self.by == ("step", "node"):
            return self.effects[hook][:S, a:b]
        if self.by == ("node",):
            return self.effects[hook][a:b]
        return self.per_graph(hook)[:S, g]

    def top_sites(self, k: int = 5, hook: str | None = None, g: int = 0) -> list[tuple]:
        """The ``k`` sites of graph ``g`` with the largest effect (smallest under noising):
        ``[(step, node, effect), ...]`` (``step`` or ``node`` None when not addressed)."""
        table = self.graph(g, hook)
        flat = table.flatten()
        ok = torch.isfinite(flat)
        order = flat[ok].argsort(descending=self.direction == "denoising")
        ids = ok.nonzero().flatten()[order[:k]]
        out = []
        for i in ids.tolist():
            if self.by == ("step", "node"):
                t, v = divmod(i, table.shape[1])
                out.append((t, v, float(flat[i])))
            elif self.by == ("step",):
                out.append((i, None, float(flat[i])))
            else:
                out.append((None, i, float(flat[i])))
        return out

    def heatmap(self, path, hook: str | None = None, g: int = 0, title: str | None = None) -> Path:
        """Step x node heatmap PNG of graph ``g`` at ``hook`` (see :func:`plot_effects`)."""
        from patching.activation.heatmaps import plot_effects

        return plot_effects([self], path, hook=hook, g=g, title=title)

    def as_dict(self) -> dict[str, Any]:
        """Everything as JSON-able lists (NaN as None)."""
        return {
            "method": self.method,
            "direction": self.direction,
            "by": list(self.by),
            "metric": self.metric,
            "clean": _json(self.clean),
            "corrupt": _json(self.corrupt),
            "ptr": self.ptr.tolist(),
            "steps": self.steps.tolist(),
            "effects": {h: _json(v) for h, v in self.effects.items()},
            "patched": {h: _json(v) for h, v in self.patched.items()},
            "settings": self.settings,
        }


def _json(x: Tensor):
    x = x.detach().double().cpu()
    if x.dim() == 0:
        v = float(x)
        return None if math.isnan(v) else v
    return [_json(r) for r in x]


def normalised_effect(
    patched: Float[Tensor, "*sites columns"],
    clean: Float[Tensor, " graphs"],
    corrupt: Float[Tensor, " graphs"],
    graph: Int[Tensor, " columns"] | None = None,
) -> Float[Tensor, "*sites columns"]:
    """``(patched - corrupt) / (clean - corrupt)`` elementwise, NaN where the graph's gap is
    too small to normalise by (:func:`usable_gap`).

    ``clean``, ``corrupt``: ``[G]``. ``patched``: ``[..., G]`` (per graph), or any shape with
    ``graph`` (same shape as its last axis, e.g. ``[N]``) naming the graph of each column.
    """
    clean, corrupt = clean.double(), corrupt.double()
    patched = patched.double()
    ok = usable_gap(clean, corrupt)
    if graph is not None:
        clean, corrupt, ok = clean[graph], corrupt[graph], ok[graph]
    out = (patched - corrupt) / (clean - corrupt)
    return torch.where(ok, out, torch.full_like(out, float("nan")))


def usable_gap(clean: Float[Tensor, " G"], corrupt: Float[Tensor, " G"]) -> Bool[Tensor, " G"]:
    """Graphs whose clean-corrupt gap can normalise an effect: finite, above
    :data:`GAP_RELATIVE` times the median gap of the graphs, and above float32 resolution of
    the metric values (``1e-5 * max(|clean|, |corrupt|) + 1e-6``)."""
    clean, corrupt = clean.double(), corrupt.double()
    gap = (clean - corrupt).abs()
    finite = torch.isfinite(gap)
    median = gap[finite].median() if finite.any() else torch.zeros((), dtype=gap.dtype)
    noise = 1e-5 * torch.maximum(clean.abs(), corrupt.abs()).nan_to_num(0.0) + 1e-6
    return finite & (gap > GAP_RELATIVE * median) & (gap > noise)


def normalise_table(by, table: Tensor, clean: Tensor, corrupt: Tensor, ptr: Tensor) -> Tensor:
    if by == ("step",):  # a step site spans every graph: mean of the per-graph effects
        return normalised_effect(table, clean, corrupt).nanmean(1)
    graph = torch.repeat_interleave(torch.arange(len(ptr) - 1, device=ptr.device), ptr.diff())
    return normalised_effect(table, clean, corrupt, graph)
