"""Figures of a trajectory: a hint over the steps of one run, and truth against the model's
predictions step by step (thin wrappers of :func:`~hooked_nar.figures.draw_graph_panels`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hooked_nar.figures.backend import as_numpy
from hooked_nar.figures.graph_panels import draw_graph_panels

__all__ = ["draw_prediction_vs_truth", "draw_trajectory"]


def _select_steps(total: int, steps: Sequence[int] | None, max_panels: int) -> list[int]:
    if steps is not None:
        steps = [int(s) for s in steps]
        bad = [s for s in steps if not 0 <= s < total]
        if bad:
            raise ValueError(f"steps {bad} out of range 0..{total - 1}")
        return steps
    if max_panels < 1:
        raise ValueError(f"max_panels must be >= 1, got {max_panels}")
    if total <= max_panels:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, max_panels)})


def _class_names(algorithm: str, hint: str, num_classes: int) -> list[str]:
    from hooked_nar.concept_labels import CLASS_NAMES

    names = CLASS_NAMES.get((algorithm, hint), CLASS_NAMES.get(("*", hint)))
    return (
        list(names) if names and len(names) == num_classes else [str(c) for c in range(num_classes)]
    )


def draw_trajectory(
    traj,
    hint: str,
    path: str | os.PathLike,
    steps: Sequence[int] | None = None,
    max_panels: int = 8,
    layout_seed: int = 0,
    *,
    pointer: str | None = "auto",
    title: str | None = None,
    layout: Any = None,
) -> Path:
    """Draw a :class:`~hooked_nar.algorithms.Trajectory`'s graph once per hint step.

    Nodes are coloured by the node hint ``hint`` (mask: two colours; scalar: colormap with a
    colorbar; mask_one: highlighted node; categorical: one colour per class; pointer:
    parent -> child arrows). ``pointer``: a node pointer hint overlaid as arrows (``"auto"``:
    ``pi_h`` or ``pi`` when the algorithm has one; None: none). ``steps``: hint steps to
    draw (default: all, or ``max_panels`` evenly spaced ones including the first and last).
    The input source ``s`` is drawn as a square; directed algorithms get arrows.
    """
    from hooked_nar.algorithms import SPECS
    from hooked_nar.data.generators import GRAPH_CONVENTIONS

    alg = traj.algorithm
    node_hints = [k for k, fs in SPECS[alg].items() if fs.stage == "hint" and fs.location == "node"]
    if hint not in node_hints:
        raise ValueError(
            f"hint={hint!r} is not a node hint of {alg}; node hints: {', '.join(node_hints)}"
        )
    fs = SPECS[alg][hint]
    chosen = _select_steps(traj.length, steps, max_panels)
    x = np.asarray(traj.hints[hint])[chosen]  # [P, n(, C)]
    kind = fs.type
    class_names = None
    ptrs = None
    if kind == "categorical":
        class_names = _class_names(alg, hint, x.shape[-1])
        x = x.argmax(-1)
    if kind == "pointer":
        ptrs, x = x, None
        pointer_label = hint
    else:
        if pointer == "auto":
            pointer = next(
                (p for p in ("pi_h", "pi") if p in node_hints and SPECS[alg][p].type == "pointer"),
                None,
            )
        if pointer is not None:
            if pointer not in node_hints or SPECS[alg][pointer].type != "pointer":
                raise ValueError(f"pointer={pointer!r} is not a node pointer hint of {alg}")
            ptrs = np.asarray(traj.hints[pointer])[chosen]
        pointer_label = pointer or "pointer"
    source = None
    if "s" in traj.inputs:
        source = int(np.argmax(np.asarray(traj.inputs["s"]).reshape(-1)))
    A = np.asarray(traj.inputs["A"])
    if title is None:
        title = f"{alg}: {hint} per hint step (n = {traj.num_nodes}, T = {traj.length})"
    return draw_graph_panels(
        A,
        x,
        path,
        kind=kind,
        titles=[f"t = {t}" for t in chosen],
        title=title,
        source=source,
        pointers=ptrs,
        directed=GRAPH_CONVENTIONS[alg].directed,
        class_names=class_names,
        value_label=hint,
        pointer_label=pointer_label,
        layout=layout,
        layout_seed=layout_seed,
    )


def draw_prediction_vs_truth(
    A: Any,
    true_values: Any,
    predicted_values: Any,
    path: str | os.PathLike,
    title: str,
    *,
    kind: str = "mask",
    step_labels: Sequence[str] | None = None,
    max_panels: int = 6,
    source: int | None = None,
    directed: bool | None = None,
    value_label: str = "value",
    mask_labels: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    tolerance: float | None = None,
    layout: Any = None,
    layout_seed: int = 0,
) -> Path:
    """Truth (top row) against the model (bottom row) for a per-node value over steps.

    ``true_values`` and ``predicted_values`` are ``[S, n]`` (one column per processor step,
    e.g. hint t+1 and the model's prediction of it from step t). Mistakes are outlined in
    red: any difference for mask / mask_one / categorical values, ``|diff| > tolerance``
    for scalars (no outlines when ``tolerance`` is None). ``step_labels`` default to
    ``"t = s+1"`` (the hint step each processor step computes); at most ``max_panels``
    evenly spaced steps are drawn.
    """
    truth, pred = as_numpy(true_values), as_numpy(predicted_values)
    if truth.shape != pred.shape or truth.ndim != 2:
        raise ValueError(
            f"true_values {truth.shape} and predicted_values {pred.shape} must both be [S, n]"
        )
    S = truth.shape[0]
    chosen = _select_steps(S, None, max_panels)
    if step_labels is None:
        step_labels = [f"t = {s + 1}" for s in range(S)]
    elif len(step_labels) != S:
        raise ValueError(f"step_labels has {len(step_labels)} entries for {S} steps")
    if kind == "scalar":
        wrong = (np.abs(pred - truth) > tolerance) if tolerance is not None else None
    else:
        wrong = pred != truth
    vals = np.stack([truth[chosen], pred[chosen]]).astype(float)
    outl = None if wrong is None else np.stack([np.zeros_like(wrong[chosen]), wrong[chosen]])
    return draw_graph_panels(
        A,
        vals,
        path,
        kind=kind,
        titles=[step_labels[s] for s in chosen],
        row_labels=["truth", "model"],
        title=title,
        source=source,
        outlines=outl,
        directed=directed,
        value_label=value_label,
        mask_labels=mask_labels,
        class_names=class_names,
        layout=layout,
        layout_seed=layout_seed,
        outline_label="wrong prediction",
    )
