"""Activation patching and attribution patching between a clean and a corrupted graph.

Clean and corrupted are graphs with the same node set (e.g. a :class:`Counterfactual`):
one ``Data``, or batches of graph pairs (``Batch`` or lists of ``Data``) in the same order.

- **denoising** runs the *corrupted* graph with one site's activation taken from the clean
  run: does this site carry enough to restore the clean behaviour?
- **noising** runs the *clean* graph with one site's activation taken from the corrupted
  run: is this site necessary?

Both report the normalised effect ``(patched - corrupt) / (clean - corrupt)`` of a metric
(:mod:`patching.metrics`). Under denoising 0 means no effect and 1 full recovery of the
clean metric; under noising 1 means no effect (the site is not needed) and ``1 - effect`` is
the fraction of the clean-corrupt gap the site destroys (0: patching it alone makes the clean
run as bad as the corrupted one).

Sites are addressed by ``by``: ``("step", "node")`` one node at one processor step,
``("step",)`` every node at one step, ``("node",)`` one node at every step. Step ``t`` is
processor step t (``steps.{t}.<hook>``, computing hint step t + 1); only steps that both
runs of a pair execute are patched (others are NaN). Exact patching batches ``batch_size``
copies of the target graphs with :func:`~hooked_nar.data.collate`, each copy patched at a
different site, so one forward pass covers many sites; graphs of a batch never interact in
a HookedNAR, so a copy patches the same local site in every graph pair at once.
:func:`attribution_patching` approximates the same tables to first order
(``grad(metric) . (source - target)`` at each site) from two forward passes and one backward.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from hooked_nar.data.loader import batch_algorithm, collate
from hooked_nar.model.cache import row_layout
from hooked_nar.model.steps import num_processor_steps
from patching.controls import CausalResult, bootstrap_ci
from patching.interventions import _per_step_hooks
from patching.metrics import Metric, as_metric, pointer_logit_diff

__all__ = [
    "BY",
    "PatchingResult",
    "activation_patching",
    "attribution_patching",
    "normalised_effect",
    "patched_metric",
    "plot_effects",
    "rank_correlation",
    "site_control",
    "usable_gap",
]

#: The site layouts ``by`` accepts.
BY = (("step", "node"), ("step",), ("node",))
#: A graph whose clean-corrupt gap is at most this fraction of the median gap over the run's
#: graphs has no normalised effect (NaN): a near-zero gap would divide noise into effects of
#: any size. (An absolute floor at float32 resolution of the metric's values applies too.)
GAP_RELATIVE = 0.05

Direction = Literal["denoising", "noising"]


# ------------------------------------------------------------------------------ result


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


# ---------------------------------------------------------------------------- helpers


def _graphs(x, name: str) -> list[Data]:
    if isinstance(x, Batch):
        return x.to_data_list()
    if isinstance(x, Data):
        return [x]
    if isinstance(x, (list, tuple)) and x and all(isinstance(d, Data) for d in x):
        return list(x)
    raise TypeError(f"{name} must be a PyG Data, a Batch or a list of Data, got {type(x).__name__}")


def _check_pair(
    model, clean: list[Data], corrupted: list[Data], names=("clean", "corrupted")
) -> None:
    a_name, b_name = names
    if len(clean) != len(corrupted):
        raise ValueError(
            f"{a_name} has {len(clean)} graphs but {b_name} has {len(corrupted)}; pass graph pairs"
        )
    algs = {batch_algorithm(d) for d in clean} | {batch_algorithm(d) for d in corrupted}
    if len(algs) != 1:
        raise ValueError(f"{a_name} and {b_name} must run one algorithm, got {sorted(algs)}")
    (alg,) = algs
    if alg != model.cfg.algorithm:
        raise ValueError(
            f"{a_name}/{b_name} run {alg!r} but the model runs {model.cfg.algorithm!r}"
        )
    for g, (a, b) in enumerate(zip(clean, corrupted, strict=True)):
        if int(a.num_nodes) != int(b.num_nodes):
            raise ValueError(
                f"graph {g}: {a_name} has {a.num_nodes} nodes but {b_name} has {b.num_nodes}; "
                "patching needs the same node set"
            )


def _hooks(model, hooks) -> list[str]:
    names = [hooks] if isinstance(hooks, str) else list(hooks)
    valid = _per_step_hooks(model)
    if not names:
        raise ValueError("hooks is empty")
    for h in names:
        if h not in valid:
            raise ValueError(
                f"hooks contains {h!r}, which is not a per-step hook name (steps are chosen by "
                f"`by`); valid: {valid}"
            )
    return list(dict.fromkeys(names))


def _by(by) -> tuple[str, ...]:
    by = (by,) if isinstance(by, str) else tuple(by)
    if by not in BY:
        raise ValueError(f"by={by!r} must be one of {BY}")
    return by


def _direction(direction: str) -> str:
    if direction not in ("denoising", "noising"):
        raise ValueError(f"direction={direction!r} must be 'denoising' or 'noising'")
    return direction


def _default_metric(model, clean: list[Data], corrupted: list[Data], metric) -> Metric:
    if metric is not None:
        return as_metric(metric)
    if "pi" not in clean[0]:
        raise ValueError(f"{model.cfg.algorithm} has no output 'pi': pass metric=")
    return pointer_logit_diff(collate(clean), collate(corrupted), "pi")


class _Run:
    """Source (activations taken from) and target (graph run) of one patching direction."""

    def __init__(self, model, target: list[Data], source: list[Data], hooks: list[str], metric):
        self.model, self.target, self.hooks, self.metric = model, target, hooks, metric
        self.tb, self.sb = collate(target), collate(source)
        steps_t = num_processor_steps(self.tb.length.view(-1))
        steps_s = num_processor_steps(self.sb.length.view(-1))
        self.steps = torch.minimum(steps_t, steps_s)  # [G] steps both runs execute
        self.S = int(self.steps.max())
        names = [f"steps.{t}.{h}" for h in hooks for t in range(self.S)]
        with torch.no_grad():
            self.source_logits, cache = model.run_with_cache(self.sb, names_filter=names)
            self.target_logits, tcache = model.run_with_cache(self.tb, names_filter=names)
        self.source_value = metric(self.source_logits, self.sb).detach()
        self.target_value = metric(self.target_logits, self.tb).detach()
        self.acts = {h: [cache[f"steps.{t}.{h}"] for t in range(self.S)] for h in hooks}
        self.target_acts = {h: [tcache[f"steps.{t}.{h}"] for t in range(self.S)] for h in hooks}
        self.layout = {}
        for h in hooks:
            a, b = self.acts[h][0], self.target_acts[h][0]
            if a.shape != b.shape:
                raise ValueError(
                    f"hook {h!r} has activations {tuple(a.shape)} on one graph and "
                    f"{tuple(b.shape)} on the other (edge rows after an edge was removed?); "
                    "patch a node hook such as 'hook_node_out'"
                )
            graph, local = row_layout(model, self.tb, a.shape[0])
            if (local < 0).all() and not torch.equal(self.tb.edge_index, self.sb.edge_index):
                raise ValueError(
                    f"hook {h!r} has edge rows and clean/corrupted have different edge sets"
                )
            self.layout[h] = (graph, local)
        self._copies: dict[int, Batch] = {}

    @property
    def num_graphs(self) -> int:
        return len(self.target)

    def copies(self, k: int) -> Batch:
        if k not in self._copies:
            self._copies = {k: collate(self.target * k)}  # keep one size (the last chunk differs)
        return self._copies[k]

    def run_masks(self, hook: str, masks: Tensor) -> Tensor:
        """Metric ``[K, G]`` of K copies of the target, copy k patched where ``masks[k]``
        ``[S, R]`` is True (with the source's activation at that step and row)."""
        K = masks.shape[0]
        big = self.copies(K)
        acts = self.acts[hook]

        def fn(x: Tensor, hook) -> Tensor:
            t = int(hook.name.split(".")[1])
            m = masks[:, t].reshape(-1)
            src = acts[t].repeat(K, *([1] * (acts[t].dim() - 1))).to(x)
            return torch.where(m.view(-1, *([1] * (x.dim() - 1))), src, x)

        fwd = [(f"steps.{t}.{hook}", fn) for t in range(self.S) if masks[:, t].any()]
        with torch.no_grad():
            logits = self.model.run_with_hooks(big, fwd_hooks=fwd)
            return self.metric(logits, big).detach().view(K, self.num_graphs)


def _sites(by, S: int, max_n: int) -> list[tuple[int | None, int | None]]:
    if by == ("step", "node"):
        return [(t, i) for t in range(S) for i in range(max_n)]
    if by == ("step",):
        return [(t, None) for t in range(S)]
    return [(None, i) for i in range(max_n)]


def _site_mask(site, S: int, valid_rows: Tensor, local: Tensor) -> Tensor:
    """``[S, R]``: rows patched for one site (``valid_rows[r]``: steps the row's graph has)."""
    t, i = site
    steps = torch.arange(S, device=valid_rows.device)[:, None]
    rows = torch.ones_like(local, dtype=torch.bool) if i is None else local == i
    m = rows[None, :] & (steps < valid_rows[None, :])
    if t is not None:
        m = m & (steps == t)
    return m


def _table(by, run: _Run, hook: str, sites, values: Tensor) -> Tensor:
    """Patched metric per site (``values`` [C, G]) as ``[S, N]``, ``[S, G]`` or ``[N]``."""
    ptr, steps, G = run.tb.ptr, run.steps, run.num_graphs
    N = int(ptr[-1])
    sizes = ptr.diff()
    nan = float("nan")
    if by == ("step",):
        out = torch.full((run.S, G), nan, dtype=torch.float64)
        for k, (t, _) in enumerate(sites):
            ok = steps > t
            out[t, ok] = values[k, ok].double()
        return out
    out = torch.full((run.S, N) if by == ("step", "node") else (N,), nan, dtype=torch.float64)
    for k, (t, i) in enumerate(sites):
        for g in range(G):
            if i >= int(sizes[g]) or (t is not None and t >= int(steps[g])):
                continue
            v = int(ptr[g]) + i
            if t is None:
                out[v] = float(values[k, g])
            else:
                out[t, v] = float(values[k, g])
    return out


def normalised_effect(
    patched: Tensor, clean: Tensor, corrupt: Tensor, graph: Tensor | None = None
) -> Tensor:
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


def _normalise(by, table: Tensor, clean: Tensor, corrupt: Tensor, ptr: Tensor) -> Tensor:
    if by == ("step",):  # a step site spans every graph: mean of the per-graph effects
        return normalised_effect(table, clean, corrupt).nanmean(1)
    graph = torch.repeat_interleave(torch.arange(len(ptr) - 1, device=ptr.device), ptr.diff())
    return normalised_effect(table, clean, corrupt, graph)


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


class _EvalMode:
    def __init__(self, model) -> None:
        self.model = model

    def __enter__(self):
        self.was = self.model.training
        self.model.eval()

    def __exit__(self, *exc) -> None:
        self.model.train(self.was)


# --------------------------------------------------------------------------- patching


def patched_metric(
    model,
    target,
    source,
    hooks: str | Sequence[str] = "hook_node_out",
    by: Sequence[str] = ("step", "node"),
    metric=None,
    *,
    batch_size: int = 64,
    progress: bool | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Run ``target`` with one site at a time taken from the ``source`` run (same node set).

    Returns ``(tables, target_value [G], source_value [G])``: per hook the metric after
    patching each site, ``[S, N]`` / ``[S, G]`` / ``[N]`` as in :class:`PatchingResult`.
    Patching a run into itself (``source`` = ``target``) reproduces its own metric at every
    site. ``metric`` is required (see :mod:`patching.metrics`).
    """
    by, hooks = _by(by), _hooks(model, hooks)
    if metric is None:
        raise ValueError("patched_metric needs metric=")
    tg, sg = _graphs(target, "target"), _graphs(source, "source")
    _check_pair(model, tg, sg, ("target", "source"))
    with _EvalMode(model):
        run = _Run(model, tg, sg, hooks, as_metric(metric))
        tables = _patch_tables(run, hooks, by, batch_size, progress)
    return tables, run.target_value, run.source_value


def _patch_tables(run: _Run, hooks: list[str], by, batch_size: int, progress) -> dict[str, Tensor]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    max_n = int(run.tb.ptr.diff().max())
    sites = _sites(by, run.S, max_n)
    tables = {}
    with tqdm(
        total=len(sites) * len(hooks),
        desc="activation patching",
        disable=not _progress(progress),
        leave=False,
    ) as bar:
        for h in hooks:
            graph, local = run.layout[h]
            if by != ("step",) and (local < 0).all():
                raise ValueError(f"hook {h!r} has no node rows; patch it with by=('step',)")
            valid_rows = run.steps[graph]
            values = []
            for start in range(0, len(sites), batch_size):
                chunk = sites[start : start + batch_size]
                masks = torch.stack([_site_mask(s, run.S, valid_rows, local) for s in chunk])
                values.append(run.run_masks(h, masks))
                bar.update(len(chunk))
            values = torch.cat(values) if values else torch.zeros(0, run.num_graphs)
            tables[h] = _table(by, run, h, sites, values)
    return tables


def _result(by, direction, method, run: _Run, tables, metric, settings) -> PatchingResult:
    clean, corrupt = (
        (run.source_value, run.target_value)
        if direction == "denoising"
        else (run.target_value, run.source_value)
    )
    clean, corrupt = clean.double().cpu(), corrupt.double().cpu()
    if not usable_gap(clean, corrupt).any():
        raise ValueError(
            f"the metric {metric.name} does not separate clean from corrupted (clean "
            f"{clean.tolist()}, corrupt {corrupt.tolist()}); use a counterfactual that changes "
            "the ground truth or another metric"
        )
    ptr = run.tb.ptr.cpu()
    effects = {h: _normalise(by, tab, clean, corrupt, ptr) for h, tab in tables.items()}
    return PatchingResult(
        effects,
        tables,
        clean,
        corrupt,
        by,
        direction,
        method,
        metric.name,
        ptr,
        run.steps.cpu(),
        settings,
    )


def _setup(model, clean, corrupted, hooks, by, metric, direction):
    by, hooks, direction = _by(by), _hooks(model, hooks), _direction(direction)
    cg, xg = _graphs(clean, "clean"), _graphs(corrupted, "corrupted")
    _check_pair(model, cg, xg)
    metric = _default_metric(model, cg, xg, metric)
    target, source = (xg, cg) if direction == "denoising" else (cg, xg)
    return by, hooks, direction, metric, target, source


def _settings(model, hooks, by, direction, metric, run: _Run, **extra) -> dict:
    return {
        "algorithm": model.cfg.algorithm,
        "hooks": hooks,
        "by": list(by),
        "direction": direction,
        "metric": metric.name,
        "num_graphs": run.num_graphs,
        "nodes": run.tb.ptr.diff().tolist(),
        "processor_steps_target": num_processor_steps(run.tb.length.view(-1)).tolist(),
        "processor_steps_source": num_processor_steps(run.sb.length.view(-1)).tolist(),
        **extra,
    }


def activation_patching(
    model,
    clean,
    corrupted,
    hooks: str | Sequence[str] = "hook_node_out",
    by: Sequence[str] = ("step", "node"),
    metric=None,
    direction: Direction = "denoising",
    *,
    batch_size: int = 64,
    progress: bool | None = None,
) -> PatchingResult:
    """Exact activation patching of every site (module docstring) at each hook.

    ``clean`` / ``corrupted``: one graph each (``Data``) or graph pairs (``Batch`` or lists)
    with the same node sets. ``hooks``: per-step hook names (``"hook_node_out"``,
    ``"hook_aggr"``, ...; node hooks for node sites). ``metric``: a
    :class:`~patching.metrics.Metric` or callable ``(logits, batch) -> [G]``; default
    ``pointer_logit_diff(clean, corrupted, "pi")``. ``batch_size``: patched copies per
    forward pass. Returns a :class:`PatchingResult` (effects ``[S, N]``, ``[S]`` or ``[N]``).
    """
    by, hooks, direction, metric, target, source = _setup(
        model, clean, corrupted, hooks, by, metric, direction
    )
    with _EvalMode(model):
        run = _Run(model, target, source, hooks, metric)
        tables = _patch_tables(run, hooks, by, batch_size, progress)
    settings = _settings(model, hooks, by, direction, metric, run, batch_size=batch_size)
    return _result(by, direction, "exact", run, tables, metric, settings)


def attribution_patching(
    model,
    clean,
    corrupted,
    hooks: str | Sequence[str] = "hook_node_out",
    by: Sequence[str] = ("step", "node"),
    metric=None,
    direction: Direction = "denoising",
) -> PatchingResult:
    """First-order approximation of :func:`activation_patching` (same arguments and output).

    The patched metric of a site is ``metric(target) + sum over the site's rows and features
    of grad(metric)(target) * (source - target)``, the gradient taken on the target run
    (corrupted for denoising, clean for noising): two forward passes and one backward pass
    for every site of every hook. ``metric`` must be differentiable (``ValueError`` for
    accuracies).
    """
    by, hooks, direction, metric, target, source = _setup(
        model, clean, corrupted, hooks, by, metric, direction
    )
    if not getattr(metric, "differentiable", True):
        raise ValueError(f"metric {metric.name} is not differentiable; attribution needs gradients")
    with _EvalMode(model):
        run = _Run(model, target, source, hooks, metric)
        names = [f"steps.{t}.{h}" for h in hooks for t in range(run.S)]
        kept: dict[str, Tensor] = {}

        def keep(x: Tensor, hook) -> Tensor:
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            kept[hook.name] = x
            return x

        with torch.enable_grad():
            logits = model.run_with_hooks(run.tb, fwd_hooks=[(n, keep) for n in names])
            total = torch.nansum(metric(logits, run.tb))
            if not total.requires_grad:
                raise ValueError(f"metric {metric.name} does not depend on the activations")
            grads = torch.autograd.grad(total, [kept[n] for n in names], allow_unused=True)
    grad = dict(zip(names, grads, strict=True))
    tables = {}
    ptr, G = run.tb.ptr, run.num_graphs
    base = run.target_value.double()
    for h in hooks:
        graph, local = run.layout[h]
        if by != ("step",) and (local < 0).all():
            raise ValueError(f"hook {h!r} has no node rows; patch it with by=('step',)")
        contrib = []
        for t in range(run.S):
            g_t = grad[f"steps.{t}.{h}"]
            delta = (run.acts[h][t] - kept[f"steps.{t}.{h}"].detach()).double()
            c = (
                torch.zeros(delta.shape[0], dtype=torch.float64, device=delta.device)
                if g_t is None
                else (g_t.double() * delta).reshape(delta.shape[0], -1).sum(1)
            )
            c = torch.where(t < run.steps[graph], c, torch.full_like(c, float("nan")))
            contrib.append(c)
        contrib = torch.stack(contrib)  # [S, R]
        if by == ("step", "node"):
            tables[h] = base[graph][None, :] + contrib
        elif by == ("node",):
            tables[h] = base[graph] + contrib.nan_to_num().sum(0)
        else:
            from torch_geometric.utils import scatter

            summed = scatter(contrib.nan_to_num().T, graph, 0, dim_size=G, reduce="sum").T
            tables[h] = torch.where(
                torch.arange(run.S, device=run.steps.device)[:, None] < run.steps[None, :],
                base[None, :] + summed,
                torch.full_like(summed, float("nan")),
            )
        if by != ("step",) and tables[h].shape[-1] != int(ptr[-1]):
            raise ValueError(f"hook {h!r} has no node rows; patch it with by=('step',)")
    settings = _settings(model, hooks, by, direction, metric, run)
    return _result(by, direction, "attribution", run, tables, metric, settings)


# --------------------------------------------------------------------------- analysis


def rank_correlation(a: PatchingResult, b: PatchingResult, hook: str | None = None) -> float:
    """Spearman rank correlation of two results' effects over the sites finite in both."""
    from scipy.stats import spearmanr

    hook = a._hook(hook)
    x, y = a.effects[hook].flatten(), b[hook].flatten()
    if x.shape != y.shape:
        raise ValueError(f"the results have different site tables ({x.numel()} vs {y.numel()})")
    ok = torch.isfinite(x) & torch.isfinite(y)
    if int(ok.sum()) < 3:
        return float("nan")
    return float(spearmanr(x[ok].numpy(), y[ok].numpy()).statistic)


def site_control(
    model,
    clean,
    corrupted,
    result: PatchingResult,
    hook: str | None = None,
    metric=None,
    fraction: float = 0.1,
    num_controls: int = 16,
    seed: int = 0,
) -> CausalResult:
    """Patch each graph's top ``fraction`` of sites of ``result`` together, beside random
    site sets of the same size (the control), with bootstrap intervals over graphs.

    ``result``: a ``by=("step", "node")`` result of the same graphs and direction, and
    ``metric`` the one it used (default: the same default);
    top sites are its largest effects (smallest under noising), chosen on these same graphs,
    so the comparison measures how concentrated the effect is, not generalisation. The
    measure is the fraction of the clean-corrupt gap recovered (denoising) or destroyed
    (noising, ``1 - effect``); the control of a graph is the mean over ``num_controls``
    random sets drawn with a generator seeded by ``seed`` (same seed, same draw).
    ``settings["all_sites"]``: the same measure with every site patched.
    """
    if result.by != ("step", "node"):
        raise ValueError("site_control needs a result with by=('step', 'node')")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if isinstance(num_controls, bool) or not isinstance(num_controls, int) or num_controls < 1:
        raise ValueError(f"num_controls must be a positive int, got {num_controls!r}")
    hook = result._hook(hook)
    direction = result.direction
    by, hooks, direction, metric, target, source = _setup(
        model, clean, corrupted, hook, ("step", "node"), metric, direction
    )
    if metric.name != result.metric:
        raise ValueError(
            f"result was computed with {result.metric} but site_control got {metric.name}; "
            "pass the same metric="
        )
    with _EvalMode(model):
        run = _Run(model, target, source, hooks, metric)
        effects = result.effects[hook]
        if effects.shape != (run.S, int(run.tb.ptr[-1])):
            raise ValueError("result does not match these graphs (different sites)")
        gen = torch.Generator().manual_seed(seed)
        C = num_controls
        masks = torch.zeros(C + 2, run.S, effects.shape[1], dtype=torch.bool)
        sizes = []
        for g in range(run.num_graphs):
            a, b, S_g = int(run.tb.ptr[g]), int(run.tb.ptr[g + 1]), int(run.steps[g])
            table = effects[:S_g, a:b]
            ok = torch.isfinite(table).flatten()
            ids = ok.nonzero().flatten()
            if ids.numel() == 0:
                sizes.append(0)
                continue
            k = max(1, round(fraction * ids.numel()))
            sizes.append(k)
            order = table.flatten()[ids].argsort(descending=direction == "denoising", stable=True)
            for row, chosen in [(0, ids[order[:k]])] + [
                (1 + c, ids[torch.randperm(ids.numel(), generator=gen)[:k]]) for c in range(C)
            ]:
                t, v = chosen // (b - a), chosen % (b - a)
                masks[row, t, a + v] = True
            masks[C + 1, :S_g, a:b] = True
        values = run.run_masks(hook, masks).double()  # [C + 2, G]
    clean_v, corrupt_v = (
        (run.source_value, run.target_value)
        if direction == "denoising"
        else (run.target_value, run.source_value)
    )
    eff = normalised_effect(values, clean_v, corrupt_v)  # [C + 2, G]
    if direction == "noising":
        eff = 1 - eff
    measure = "gap recovered" if direction == "denoising" else "gap destroyed"
    settings = _settings(
        model,
        [hook],
        by,
        direction,
        metric,
        run,
        fraction=fraction,
        num_controls=C,
        seed=seed,
        sites_per_graph=sizes,
        all_sites=float(eff[C + 1].nanmean()),
        control=f"{C} random site sets, same size",
    )
    return CausalResult.from_per_graph(
        f"top {fraction:.0%} sites at {hook} ({direction})",
        f"{measure} ({metric.name})",
        eff[0],
        eff[1 : C + 1].nanmean(0),
        settings,
        seed=seed,
    )


# --------------------------------------------------------------------------- plotting


def plot_effects(
    results: Sequence[PatchingResult],
    path,
    hook: str | None = None,
    g: int = 0,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    node_labels: Sequence[str] | None = None,
    ncols: int = 2,
) -> Path:
    """Step x node heatmaps of graph ``g``, one panel per result, as a PNG at ``path``.

    Rows are processor steps t (computing hint t + 1), columns nodes; ``("step",)`` results
    draw one column and ``("node",)`` results one row. The colour map is diverging and
    symmetric about "no effect" (0 for denoising, 1 for noising); cells are annotated when
    few; NaN cells (steps a run does not execute) are blank. Panels wrap after ``ncols``.
    """
    from matplotlib.colors import Normalize

    from hooked_nar.figures import pyplot, save_figure

    results = list(results)
    if not results:
        raise ValueError("results is empty")
    if titles is not None and len(titles) != len(results):
        raise ValueError(f"titles has {len(titles)} entries for {len(results)} results")
    plt = pyplot()
    tables = []
    for r in results:
        x = r.graph(g, hook).double()
        tables.append(x[:, None] if r.by == ("step",) else x[None, :] if r.by == ("node",) else x)
    ncols = max(1, min(int(ncols), len(tables)))
    nrows = math.ceil(len(tables) / ncols)
    width = ncols * max(3.0, 0.42 * max(t.shape[1] for t in tables) + 1.8)
    height = nrows * max(2.2, 0.36 * max(t.shape[0] for t in tables) + 1.2) + 0.4 * bool(title)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(tables) :]:
        ax.set_axis_off()
    for k, (r, x, ax) in enumerate(zip(results, tables, axes.flat, strict=False)):
        center = 0.0 if r.direction == "denoising" else 1.0
        finite = x[torch.isfinite(x)]
        span = float((finite - center).abs().max()) if finite.numel() else 1.0
        norm = Normalize(center - max(span, 1e-3), center + max(span, 1e-3))
        im = ax.imshow(x.numpy(), cmap="RdBu_r", norm=norm, aspect="auto")
        S, n = x.shape
        if r.by != ("step",):
            labels = list(node_labels) if node_labels is not None else [str(i) for i in range(n)]
            ax.set_xticks(range(n), labels[:n], fontsize=8)
            ax.set_xlabel("node")
        else:
            ax.set_xticks([])
        if r.by != ("node",):
            ax.set_yticks(range(S), [str(t) for t in range(S)], fontsize=8)
            ax.set_ylabel("step t (→ hint t+1)")
        else:
            ax.set_yticks([])
        if S * n <= 260:
            for t in range(S):
                for i in range(n):
                    v = float(x[t, i])
                    if math.isfinite(v):
                        ax.text(
                            i,
                            t,
                            f"{v:.2f}",
                            ha="center",
                            va="center",
                            fontsize=6,
                            color="white" if abs(norm(v) - 0.5) > 0.35 else "black",
                        )
        hook_name = r._hook(hook)
        ax.set_title(
            titles[k] if titles is not None else f"{r.method} {r.direction}\n{hook_name}",
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, shrink=0.85, label="normalised effect")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
