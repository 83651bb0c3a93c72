"""One patching run: checked inputs (graph pairs, hooks, sites, direction, metric), the source
and target runs with their cached activations, and target copies patched at chosen sites."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from hooked_nar.data.loader import batch_algorithm, collate
from hooked_nar.model.cache import row_layout
from hooked_nar.model.steps import num_processor_steps
from patching.activation.result import BY, PatchingResult, normalise_table, usable_gap
from patching.interventions import _per_step_hooks
from patching.metrics import Metric, as_metric, pointer_logit_diff

if TYPE_CHECKING:
    from hooked_nar.model import HookedNAR

__all__ = [
    "Direction",
    "EvalMode",
    "PatchingRun",
    "as_graphs",
    "check_by",
    "check_hooks",
    "check_pair",
    "patching_result",
    "run_settings",
    "setup_pair",
    "show_progress",
]

Direction = Literal["denoising", "noising"]


def as_graphs(x, name: str) -> list[Data]:
    if isinstance(x, Batch):
        return x.to_data_list()
    if isinstance(x, Data):
        return [x]
    if isinstance(x, (list, tuple)) and x and all(isinstance(d, Data) for d in x):
        return list(x)
    raise TypeError(f"{name} must be a PyG Data, a Batch or a list of Data, got {type(x).__name__}")


def check_pair(
    model: HookedNAR, clean: list[Data], corrupted: list[Data], names=("clean", "corrupted")
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


def check_hooks(model: HookedNAR, hooks) -> list[str]:
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


def check_by(by) -> tuple[str, ...]:
    by = (by,) if isinstance(by, str) else tuple(by)
    if by not in BY:
        raise ValueError(f"by={by!r} must be one of {BY}")
    return by


def check_direction(direction: str) -> str:
    if direction not in ("denoising", "noising"):
        raise ValueError(f"direction={direction!r} must be 'denoising' or 'noising'")
    return direction


def default_metric(model: HookedNAR, clean: list[Data], corrupted: list[Data], metric) -> Metric:
    if metric is not None:
        return as_metric(metric)
    if "pi" not in clean[0]:
        raise ValueError(f"{model.cfg.algorithm} has no output 'pi': pass metric=")
    return pointer_logit_diff(collate(clean), collate(corrupted), "pi")


class PatchingRun:
    """Source (activations taken from) and target (graph run) of one patching direction."""

    def __init__(self, model, target: list[Data], source: list[Data], hooks: list[str], metric):
        self.model, self.target, self.hooks, self.metric = model, target, hooks, metric
        # bookkeeping (layouts, masks, tables) on the CPU; the model runs on its own device
        self.tb, self.sb = collate(target), collate(source)
        self.run_tb = collate(target, device=model.device)
        run_sb = collate(source, device=model.device)
        steps_t = num_processor_steps(self.tb.length.view(-1))
        steps_s = num_processor_steps(self.sb.length.view(-1))
        self.steps = torch.minimum(steps_t, steps_s)  # [G] steps both runs execute
        self.S = int(self.steps.max())
        names = [f"steps.{t}.{h}" for h in hooks for t in range(self.S)]
        with torch.no_grad():
            source_logits, cache = model.run_with_cache(run_sb, names_filter=names)
            target_logits, tcache = model.run_with_cache(self.run_tb, names_filter=names)
        self.source_value = metric(source_logits, run_sb).detach().cpu()
        self.target_value = metric(target_logits, self.run_tb).detach().cpu()
        self.acts = {h: [cache[f"steps.{t}.{h}"].cpu() for t in range(self.S)] for h in hooks}
        self.target_acts = {
            h: [tcache[f"steps.{t}.{h}"].cpu() for t in range(self.S)] for h in hooks
        }
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
            # keep one size (the last chunk differs)
            self._copies = {k: collate(self.target * k, device=self.model.device)}
        return self._copies[k]

    def run_masks(self, hook: str, masks: Tensor) -> Tensor:
        """Metric ``[K, G]`` of K copies of the target, copy k patched where ``masks[k]``
        ``[S, R]`` is True (with the source's activation at that step and row)."""
        K = masks.shape[0]
        big = self.copies(K)
        acts = self.acts[hook]

        def fn(x: Tensor, hook) -> Tensor:
            t = int(hook.name.split(".")[1])
            m = masks[:, t].reshape(-1).to(x.device)
            src = acts[t].repeat(K, *([1] * (acts[t].dim() - 1))).to(x)
            return torch.where(m.view(-1, *([1] * (x.dim() - 1))), src, x)

        fwd = [(f"steps.{t}.{hook}", fn) for t in range(self.S) if masks[:, t].any()]
        with torch.no_grad():
            logits = self.model.run_with_hooks(big, fwd_hooks=fwd)
            return self.metric(logits, big).detach().cpu().view(K, self.num_graphs)


def show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


class EvalMode:
    def __init__(self, model) -> None:
        self.model = model

    def __enter__(self):
        self.was = self.model.training
        self.model.eval()

    def __exit__(self, *exc) -> None:
        self.model.train(self.was)


def setup_pair(model: HookedNAR, clean, corrupted, hooks, by, metric, direction):
    by, hooks, direction = check_by(by), check_hooks(model, hooks), check_direction(direction)
    cg, xg = as_graphs(clean, "clean"), as_graphs(corrupted, "corrupted")
    check_pair(model, cg, xg)
    metric = default_metric(model, cg, xg, metric)
    target, source = (xg, cg) if direction == "denoising" else (cg, xg)
    return by, hooks, direction, metric, target, source


def run_settings(model: HookedNAR, hooks, by, direction, metric, run: PatchingRun, **extra) -> dict:
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


def patching_result(
    by, direction, method, run: PatchingRun, tables, metric, settings
) -> PatchingResult:
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
    effects = {h: normalise_table(by, tab, clean, corrupt, ptr) for h, tab in tables.items()}
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
