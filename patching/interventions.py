"""Interventions on a HookedNAR: SAE-feature ablation and steering, addressable by hook,
processor step, node and feature.

Each function returns an :class:`Intervention`: a list of TransformerLens forward hooks that
is also a context manager::

    ablation = ablate_features(model, sae, [17], mode="mean", reference=store, steps=[2, 3])
    logits = model.run_with_hooks(batch, fwd_hooks=ablation)   # as hooks
    with ablation:                                             # or for a block
        logits = model(batch)

Feature edits never splice the SAE: the hook encodes the activation ``x`` [N, d_in], edits
the chosen features to get ``f'`` and returns ``x + decode(f') - decode(f)``, so the SAE's
reconstruction error is kept and rows whose features did not change are returned bit for
bit. Steps are processor steps (``steps.{t}.<hook>``); ``nodes`` selects rows of the batch:
an index tensor or bool mask ``[N]`` (the same nodes at every selected step) or a bool mask
``[N, S]`` (column t: the nodes edited at step t).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    from sae_lens import SAE

    from hooked_nar.model import HookedNAR

__all__ = ["Intervention", "ablate_features", "feature_acts", "steer"]

Hook = tuple["str | Callable[[str], bool]", Callable]
_STEP = re.compile(r"steps\.(\d+)\.")


class Intervention:
    """Forward hooks ``[(name or name filter, hook_fn), ...]`` with a readable description.

    Iterate it (or pass it as ``fwd_hooks=``) to use it with ``run_with_hooks``; use it as a
    context manager to keep it attached for a block (hooks are removed on exit, also after
    an exception). ``a + b`` applies both.
    """

    def __init__(self, model, hooks: list[Hook], description: str, min_steps: int = 0) -> None:
        self.model = model
        self.hooks = list(hooks)
        self.description = description
        self.min_steps = min_steps
        self._context = None

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    def __len__(self) -> int:
        return len(self.hooks)

    def __repr__(self) -> str:
        return f"Intervention({self.description})"

    def __add__(self, other: Intervention) -> Intervention:
        if other.model is not self.model:
            raise ValueError("cannot combine interventions on different models")
        return Intervention(
            self.model,
            self.hooks + other.hooks,
            f"{self.description} + {other.description}",
            max(self.min_steps, other.min_steps),
        )

    def __enter__(self):
        if self._context is not None:
            raise RuntimeError(f"{self!r} is already active")
        self.model.ensure_steps(self.min_steps)
        self._context = self.model.hooks(fwd_hooks=self.hooks)
        return self._context.__enter__()

    def __exit__(self, *exc) -> None:
        context, self._context = self._context, None
        context.__exit__(*exc)


# ----------------------------------------------------------------------------- addressing


def _per_step_hooks(model) -> list[str]:
    from transformer_lens.hook_points import HookPoint

    return [
        n
        for n, m in model.steps[0].named_modules()
        if isinstance(m, HookPoint) and ".hook_sae_" not in n and n
    ]


def _check_hook(model, hook: str, width: int | None, what: str) -> str:
    valid = _per_step_hooks(model)
    if hook not in valid:
        raise ValueError(f"hook={hook!r} is not a per-step hook point; valid: {valid}")
    node_hooks = ("hook_node_in", "hook_node_out")
    if width is not None and hook.rpartition(".")[2] in node_hooks and width != model.cfg.d_model:
        raise ValueError(f"{what} has width {width} but {hook} has d_model={model.cfg.d_model}")
    return hook


def _check_steps(steps) -> list[int] | None:
    if steps is None:
        return None
    steps = [steps] if isinstance(steps, int) else list(steps)
    for t in steps:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"steps must be non-negative ints (processor steps), got {t!r}")
    if not steps:
        raise ValueError("steps is empty; use steps=None for every step")
    return sorted(set(steps))


def _check_nodes(nodes) -> Tensor | None:
    if nodes is None:
        return None
    nodes = torch.as_tensor(nodes)
    if nodes.dtype == torch.bool:
        if nodes.ndim not in (1, 2):
            raise ValueError(f"a bool nodes mask must be [N] or [N, S], got {tuple(nodes.shape)}")
        return nodes
    if nodes.ndim != 1 or nodes.is_floating_point():
        raise ValueError(
            f"nodes must be node indices [K] or a bool mask, got {nodes.dtype} {tuple(nodes.shape)}"
        )
    return nodes.long()


def _row_mask(nodes: Tensor | None, step: int, num_rows: int, device) -> Tensor | None:
    """Rows of step ``step`` to edit (None: all)."""
    if nodes is None:
        return None
    if nodes.dtype != torch.bool:
        if nodes.numel() and (nodes.min() < 0 or nodes.max() >= num_rows):
            raise ValueError(f"nodes holds indices outside 0..{num_rows - 1}")
        mask = torch.zeros(num_rows, dtype=torch.bool, device=device)
        mask[nodes.to(device)] = True
        return mask
    if nodes.shape[0] != num_rows:
        raise ValueError(
            f"the nodes mask has {nodes.shape[0]} rows but the batch has {num_rows} nodes"
        )
    if nodes.ndim == 2:
        if step >= nodes.shape[1]:
            return torch.zeros(num_rows, dtype=torch.bool, device=device)
        return nodes[:, step].to(device)
    return nodes.to(device)


def _hooks_for(hook: str, steps: list[int] | None, fn: Callable) -> list[Hook]:
    if steps is not None:
        return [(f"steps.{t}.{hook}", fn) for t in steps]
    pattern = re.compile(rf"steps\.\d+\.{re.escape(hook)}")
    return [(lambda name: pattern.fullmatch(name) is not None, fn)]


def _step_of(name: str) -> int:
    return int(_STEP.match(name).group(1))


def _sae_hook(model, sae, hook: str | None) -> str:
    if not all(hasattr(sae, a) for a in ("encode", "decode", "cfg")):
        raise TypeError(f"sae must be a SAELens SAE, got {type(sae).__name__}")
    if hook is None:
        hook = getattr(sae.cfg.metadata, "hook_name", None) or "hook_node_out"
    return _check_hook(model, hook, sae.cfg.d_in, f"the SAE (d_in={sae.cfg.d_in})")


def _check_features(sae, features) -> Tensor:
    features = torch.as_tensor(
        [features] if isinstance(features, int) else list(features), dtype=torch.long
    )
    d_sae = sae.cfg.d_sae
    if features.numel() == 0:
        raise ValueError("features is empty")
    if features.min() < 0 or features.max() >= d_sae:
        raise ValueError(
            f"features must lie in 0..{d_sae - 1} (the SAE's d_sae), got {features.tolist()}"
        )
    return features


@torch.no_grad()
def feature_acts(
    sae: SAE, rows: Float[Tensor, "rows d_in"], batch_size: int = 8192
) -> Float[Tensor, "rows d_sae"]:
    """SAE feature activations ``[R, d_sae]`` of activation rows ``[R, d_in]`` (computed on
    the SAE's device, returned on the rows')."""
    if rows.ndim != 2 or rows.shape[1] != sae.cfg.d_in:
        raise ValueError(f"rows must be [R, {sae.cfg.d_in}], got {tuple(rows.shape)}")
    device = sae.W_dec.device
    return torch.cat(
        [sae.encode(c.to(device, sae.dtype)).to(rows.device) for c in rows.split(batch_size)]
    )


def _reference_rows(reference, hook: str) -> Tensor:
    if reference is None:
        raise ValueError(
            "mode='mean' and mode='resample' need reference= (an ActivationStore or rows [R, d_in])"
        )
    if isinstance(reference, Tensor):
        return reference
    if hasattr(reference, "rows"):
        return reference.rows(hook)
    raise TypeError(
        f"reference must be an ActivationStore or a tensor, got {type(reference).__name__}"
    )


def _edit_features(
    x: Tensor, sae, rows: Tensor | None, edit: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """``x`` with ``x + decode(edit(f)) - decode(f)`` on ``rows`` (f = encode(x))."""
    sel = slice(None) if rows is None else rows
    xs = x[sel]
    if xs.shape[0] == 0:
        return x
    acts = sae.encode(xs.to(sae.dtype))
    edited = edit(acts, torch.arange(x.shape[0], device=x.device)[sel])
    out = xs + (sae.decode(edited) - sae.decode(acts)).to(x.dtype)
    if rows is None:
        return out
    x = x.clone()
    x[rows] = out
    return x


# --------------------------------------------------------------------------- interventions


def ablate_features(
    model: HookedNAR,
    sae: SAE,
    features: int | Sequence[int] | Tensor,
    mode: Literal["zero", "mean", "resample"] = "zero",
    steps: int | Sequence[int] | None = None,
    nodes=None,
    *,
    reference=None,
    hook: str | None = None,
    seed: int = 0,
) -> Intervention:
    """Ablate SAE ``features`` at ``hook`` (default: the SAE's hook) on ``steps`` x ``nodes``.

    ``mode``: ``"zero"`` sets them to 0; ``"mean"`` to their mean activation over
    ``reference`` (an ActivationStore or activation rows [R, d_in]); ``"resample"`` to their
    values on a random reference row per node (one row for all ``features`` of a node, drawn
    with a generator seeded by ``seed`` and the step, so a run is reproducible).
    """
    hook = _sae_hook(model, sae, hook)
    features = _check_features(sae, features)
    steps, nodes = _check_steps(steps), _check_nodes(nodes)
    if mode not in ("zero", "mean", "resample"):
        raise ValueError(f"mode={mode!r} must be 'zero', 'mean' or 'resample'")
    ref_acts = None
    if mode != "zero":
        rows = _reference_rows(reference, hook)
        ref_acts = feature_acts(sae, rows)[:, features]  # [R, F]
    mean = ref_acts.mean(0) if mode == "mean" else None

    def replacement(acts: Tensor, row_ids: Tensor, step: int) -> Tensor:
        if mode == "zero":
            return torch.zeros(len(row_ids), len(features), dtype=acts.dtype, device=acts.device)
        if mode == "mean":
            return mean.to(acts).expand(len(row_ids), -1)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        pick = torch.randint(len(ref_acts), (len(row_ids),), generator=gen)
        return ref_acts[pick].to(acts)

    def fn(x: Tensor, hook) -> Tensor:
        step = _step_of(hook.name)

        def edit(acts: Tensor, row_ids: Tensor) -> Tensor:
            acts = acts.clone()
            acts[:, features.to(acts.device)] = replacement(acts, row_ids, step)
            return acts

        return _edit_features(x, sae, _row_mask(nodes, step, x.shape[0], x.device), edit)

    where = "every step" if steps is None else f"steps {steps}"
    return Intervention(
        model,
        _hooks_for(hook, steps, fn),
        f"{mode}-ablate features {features.tolist()} at {hook}, {where}"
        + ("" if nodes is None else ", chosen nodes"),
        0 if steps is None else steps[-1] + 1,
    )


def steer(
    model: HookedNAR,
    direction_or_feature: Float[Tensor, " d"] | int,
    alpha: float,
    steps: int | Sequence[int] | None = None,
    nodes=None,
    *,
    sae: SAE | None = None,
    hook: str | None = None,
) -> Intervention:
    """Steer the activation at ``hook`` on ``steps`` x ``nodes``.

    - ``direction_or_feature`` a tensor ``[d]``: add ``alpha * direction`` (``alpha = 0``
      leaves every output bit-identical).
    - an int (needs ``sae``): clamp that SAE feature to the value ``alpha`` and add
      ``decode(clamped) - decode(original)``, keeping the reconstruction error.

    ``hook`` defaults to the SAE's hook, else ``"hook_node_out"``.
    """
    steps, nodes = _check_steps(steps), _check_nodes(nodes)
    alpha = float(alpha)
    if isinstance(direction_or_feature, Tensor):
        direction = direction_or_feature
        if direction.ndim != 1 or not direction.is_floating_point():
            raise ValueError(
                f"direction must be a float vector [d], got {direction.dtype} {tuple(direction.shape)}"
            )
        if not torch.isfinite(direction).all():
            raise ValueError("direction holds NaN or inf")
        hook = _check_hook(model, hook or "hook_node_out", direction.shape[0], "direction")

        def fn(x: Tensor, hook) -> Tensor:
            rows = _row_mask(nodes, _step_of(hook.name), x.shape[0], x.device)
            delta = alpha * direction.to(x)
            if rows is None:
                return x + delta
            return torch.where(rows[:, None], x + delta, x)

        what = f"add {alpha:g} x direction (norm {float(direction.norm()):.3g})"
    elif isinstance(direction_or_feature, int) and not isinstance(direction_or_feature, bool):
        if sae is None:
            raise ValueError("steering a feature needs sae=")
        hook = _sae_hook(model, sae, hook)
        feature = int(_check_features(sae, direction_or_feature)[0])

        def fn(x: Tensor, hook) -> Tensor:
            rows = _row_mask(nodes, _step_of(hook.name), x.shape[0], x.device)

            def edit(acts: Tensor, row_ids: Tensor) -> Tensor:
                acts = acts.clone()
                acts[:, feature] = alpha
                return acts

            return _edit_features(x, sae, rows, edit)

        what = f"clamp feature {feature} to {alpha:g}"
    else:
        raise TypeError(
            f"direction_or_feature must be a tensor [d] or a feature index, got {type(direction_or_feature).__name__}"
        )
    where = "every step" if steps is None else f"steps {steps}"
    return Intervention(
        model,
        _hooks_for(hook, steps, fn),
        f"{what} at {hook}, {where}" + ("" if nodes is None else ", chosen nodes"),
        0 if steps is None else steps[-1] + 1,
    )
