"""Exact activation patching: one forward pass of ``batch_size`` target copies, each patched
at a different site (graphs of a batch never interact in a HookedNAR)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from patching.activation.result import PatchingResult
from patching.activation.runs import (
    Direction,
    EvalMode,
    PatchingRun,
    as_graphs,
    check_by,
    check_hooks,
    check_pair,
    patching_result,
    run_settings,
    setup_pair,
    show_progress,
)
from patching.metrics import as_metric

if TYPE_CHECKING:
    from hooked_nar.model import HookedNAR

__all__ = ["activation_patching", "patched_metric"]


def patched_metric(
    model: HookedNAR,
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
    by, hooks = check_by(by), check_hooks(model, hooks)
    if metric is None:
        raise ValueError("patched_metric needs metric=")
    tg, sg = as_graphs(target, "target"), as_graphs(source, "source")
    check_pair(model, tg, sg, ("target", "source"))
    with EvalMode(model):
        run = PatchingRun(model, tg, sg, hooks, as_metric(metric))
        tables = _patch_tables(run, hooks, by, batch_size, progress)
    return tables, run.target_value, run.source_value


def _patch_tables(
    run: PatchingRun, hooks: list[str], by, batch_size: int, progress
) -> dict[str, Tensor]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    max_n = int(run.tb.ptr.diff().max())
    sites = _sites(by, run.S, max_n)
    tables = {}
    with tqdm(
        total=len(sites) * len(hooks),
        desc="activation patching",
        disable=not show_progress(progress),
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


def _table(by, run: PatchingRun, hook: str, sites, values: Tensor) -> Tensor:
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


def activation_patching(
    model: HookedNAR,
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
    by, hooks, direction, metric, target, source = setup_pair(
        model, clean, corrupted, hooks, by, metric, direction
    )
    with EvalMode(model):
        run = PatchingRun(model, target, source, hooks, metric)
        tables = _patch_tables(run, hooks, by, batch_size, progress)
    settings = run_settings(model, hooks, by, direction, metric, run, batch_size=batch_size)
    return patching_result(by, direction, "exact", run, tables, metric, settings)
