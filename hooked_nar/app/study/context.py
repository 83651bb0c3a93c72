"""What the stages of ``hooked-nar study`` share: :class:`Section` (what a stage adds),
:class:`StudyContext` (what the stages read and set), the dataset presets, the choice of
example graph and hints, and the markdown helpers of the report."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooked_nar.algorithms import registered_algorithms
from hooked_nar.app.common import PROG

#: Node hint drawn in the data stage, where the first node mask hint is not the best choice
#: (``Algorithm.trajectory_hint`` in the registry).
TRAJECTORY_HINTS = {
    name: algorithm.trajectory_hint
    for name, algorithm in registered_algorithms().items()
    if algorithm.trajectory_hint is not None
}
#: Node hint (and class, for categorical hints) compared with the model's prediction
#: (``Algorithm.prediction_hint`` in the registry).
PREDICTION_HINTS = {
    name: algorithm.prediction_hint
    for name, algorithm in registered_algorithms().items()
    if algorithm.prediction_hint is not None
}
#: Dataset size with ``--quick`` and without (the command line fills these in).
QUICK = {"num_graphs": 16, "num_nodes": 8}
DEFAULTS = {"num_graphs": 256, "num_nodes": 16}
#: Graphs run through ``run_with_cache`` in the model stage.
CACHE_GRAPHS = 4
#: SAE stage with ``--quick`` and without: training graphs (training sizes), optimiser
#: steps (None: the algorithm's recipe, :data:`hooked_nar.app.sae_study.RECIPES`), and held-out graphs
#: (the first ones of the study's dataset, plus the example).
SAE_QUICK = {"sae_graphs": 32, "sae_steps": 150, "sae_eval_graphs": 8}
SAE_DEFAULTS = {"sae_graphs": 512, "sae_steps": None, "sae_eval_graphs": 64}
#: Causal stage with ``--quick`` and without: test graphs (fresh ones, the study's size),
#: and matched features / random directions per test.
CAUSAL_QUICK = {"causal_graphs": 8, "num_null": 8}
CAUSAL_DEFAULTS = {"causal_graphs": 64, "num_null": None}


# ------------------------------------------------------------------------------- context


@dataclass
class Section:
    """What one stage adds: a report section, a results.json entry, summary lines."""

    key: str
    title: str
    markdown: str
    results: dict
    summary: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StudyContext:
    """Everything the stages share. Stages may read and set the attributes below."""

    args: argparse.Namespace
    algorithm: str
    out: Path
    progress: bool
    dataset: Any = None  # CLRSDataset (data stage)
    example: int = 0  # index of the graph drawn in figures
    layout: Any = None  # node positions of the example graph, shared by its figures
    model: Any = None  # HookedNAR (model stage), None without a checkpoint
    sae_eval: Any = None  # held-out graphs of the SAE stage (a subset of dataset)
    sae_example: int = 0  # index of the example graph within sae_eval
    sae: Any = None  # hooked_nar.app.sae_study.SAEStudy (SAE stage)
    sections: list[Section] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def log(self, message: str) -> None:
        """A progress line on stderr (silent with ``--quiet``)."""
        if not self.args.quiet:
            print(f"[{PROG} study] {message}", file=sys.stderr, flush=True)


def format_value(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(format_value(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def min_mean_max(values: list[float]) -> dict:
    return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)}


# ------------------------------------------------------------------------------- choices


def longest_trajectory(dataset) -> int:
    """Index of the graph with the longest trajectory (the first one on ties): the study's
    example graph."""
    lengths = [int(d.length.reshape(-1)[0]) for d in dataset]
    return max(range(len(lengths)), key=lambda i: (lengths[i], -i))


def sae_eval_indices(dataset, num_graphs: int, example: int) -> list[int]:
    """The graphs the SAE stage is evaluated on: the first ``num_graphs`` and the example."""
    return sorted(set(range(min(num_graphs, len(dataset)))) | {example})


def node_hints(algorithm: str) -> dict[str, Any]:
    """``{name: FieldSpec}`` of the algorithm's node-level hints."""
    from hooked_nar.algorithms import SPECS

    return {
        k: fs for k, fs in SPECS[algorithm].items() if fs.stage == "hint" and fs.location == "node"
    }


def trajectory_hint(algorithm: str) -> str | None:
    """The node hint that tells most about a run of ``algorithm`` (see TRAJECTORY_HINTS)."""
    if algorithm in TRAJECTORY_HINTS:
        return TRAJECTORY_HINTS[algorithm]
    hints = node_hints(algorithm)
    for kind in ("mask", "categorical", "mask_one", "scalar", "pointer"):
        for name, fs in hints.items():
            if fs.type == kind:
                return name
    return None


def prediction_hint(algorithm: str) -> tuple[str, str | None] | None:
    """``(hint, class name or None)`` compared with the model in the model stage."""
    if algorithm in PREDICTION_HINTS:
        return PREDICTION_HINTS[algorithm]
    from hooked_nar.concept_labels import CLASS_NAMES

    hints = node_hints(algorithm)
    for kind in ("mask", "categorical", "mask_one"):
        for name, fs in hints.items():
            if fs.type == kind:
                if kind != "categorical":
                    return name, None
                names = CLASS_NAMES.get((algorithm, name), CLASS_NAMES.get(("*", name)))
                return name, (names[-1] if names else "1")
    return None


def checkpoint_label(args: argparse.Namespace) -> str:
    """How a report names the study's checkpoint: as ``--checkpoint`` gave it (a shipped
    name or the user's directory), the default shipped one by its name, ``"none"`` when the
    study trained its own model (not an install path that means nothing elsewhere)."""
    if args.checkpoint_path is None:
        return "none"
    if args.checkpoint_source == "shipped":
        return args.checkpoint_path.name
    return str(args.checkpoint)
