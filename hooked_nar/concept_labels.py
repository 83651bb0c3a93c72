"""Per-(node, processor step) concept labels derived from CLRS hints.

Step alignment (:mod:`hooked_nar.data.loader`): hint step 0 is the state before the first iteration; processor
step t (t = 0 .. T-2) consumes hint state t and is supervised with hint t+1. So for an
activation of processor step t,

- ``state="computed"`` labels it with the concept at hint t+1 (the state the step computes),
- ``state="read"`` labels it with the concept at hint t (the state the step reads).

>>> from hooked_nar.concept_labels import concept_labels
>>> labels = concept_labels(batch)                # batch from hooked_nar.data.CLRSLoader
>>> labels["is_frontier"][labels["step_mask"]]    # only real (node, step) pairs

:data:`CONCEPTS` lists every concept of all 12 algorithms; :func:`concepts_markdown`
renders it as a table. Graph-level hints (e.g. ``phase``) are broadcast to every node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Bool
from torch import Tensor
from torch_geometric.data import Batch, Data

from hooked_nar.algorithms.specs import CATEGORIES, SPECS
from hooked_nar.data.loader import batch_algorithm, valid_processor_steps

__all__ = ["CONCEPTS", "Concept", "Target", "concept_labels", "concepts_markdown"]


@dataclass(frozen=True)
class Target:
    """The downstream consequence a concept should drive, relative to a node v where the
    concept holds at the state processor step t computes (hint t + 1).

    ``hint``: the CLRS hint whose prediction carries it; ``nodes``: whose prediction
    (``"self"``: v's own; ``"neighbours"``: v's neighbours, v excluded); ``step``: at which
    processor step (``"same"``: t, hint t + 1; ``"next"``: t + 1, hint t + 2). What "carries
    the consequence" means by hint type: a mask hint is on; a pointer points to v; a mask_one
    hint selects v. ``new``: only where the hint takes that value at this step and did not
    hold it at the step before (a newly reached node), else wherever it holds it.
    """

    hint: str
    nodes: Literal["self", "neighbours"]
    step: Literal["same", "next"]
    new: bool
    description: str
    #: for a categorical hint: the concept rule naming the consequence's classes
    rule: tuple = ("mask",)


@dataclass(frozen=True)
class Concept:
    """One per-(node, step) concept: what it means, its dtype, the CLRS field it reads, and
    (boolean concepts of the studied algorithms) the :class:`Target` it should drive."""

    description: str
    dtype: torch.dtype  # torch.bool or torch.float32
    source_hint: str  # CLRS field name (a hint, or the input ``s``)
    # ("mask",) | ("class", k) | ("not_class", k) | ("frontier",) | ("scalar",)
    rule: tuple = field(default=("mask",), repr=False, compare=False)
    target: Target | None = field(default=None, repr=False, compare=False)


def _b(
    description: str, source: str, rule: tuple = ("mask",), target: Target | None = None
) -> Concept:
    return Concept(description, torch.bool, source, rule, target)


# The consequences written once: the source's neighbours point to it after the first step;
# the current node's neighbours point to it in the same state; a queued node is extracted
# next; a settled / in-tree node stays marked.
_POINTED_TO_FIRST = Target(
    "pi_h", "neighbours", "same", True, "pi_h of its neighbours points to it (first step)"
)
_POINTED_TO_NOW = Target(
    "pi_h", "neighbours", "same", True, "pi_h of its newly attached neighbours points to it"
)
_EXTRACTED_NEXT = Target("u", "self", "next", True, "it is extracted as u at the next step")
_STAYS_MARKED = Target("mark", "self", "next", False, "its mark stays on at the next step")
_REACHES_NEIGHBOURS = "its unvisited neighbours are reached next"


def _f(description: str, source: str) -> Concept:
    return Concept(description, torch.float32, source, ("scalar",))


# ----------------------------------------------------------------- hand-written concepts

_WHITE, _GREY, _BLACK = 0, 1, 2

_MANUAL: dict[str, dict[str, Concept]] = {
    "bfs": {
        "is_source": _b("the BFS source node (input s)", "s", target=_POINTED_TO_FIRST),
        "is_visited": _b(
            "node reached so far (reach_h)",
            "reach_h",
            target=Target("reach_h", "neighbours", "next", True, _REACHES_NEIGHBOURS),
        ),
        "is_frontier": _b(
            "node newly reached at this step: reach_h[t] and not reach_h[t-1] "
            "(at hint 0 the source)",
            "reach_h",
            ("frontier",),
            Target(
                "pi_h", "neighbours", "next", True, "the nodes it reaches next point to it (pi_h)"
            ),
        ),
    },
    "dfs": {
        "is_source": _b("root of the current DFS tree (hint s)", "s"),
        "is_visited": _b("node discovered: color is not white", "color", ("not_class", _WHITE)),
        "is_active": _b("node on the DFS stack: color grey", "color", ("class", _GREY)),
        "is_finished": _b("node finished: color black", "color", ("class", _BLACK)),
        "is_current": _b("node the DFS is at (u)", "u"),
    },
    "dijkstra": {
        "is_source": _b("the source node (input s)", "s", target=_POINTED_TO_FIRST),
        "is_settled": _b(
            "node extracted from the queue, distance final (mark)", "mark", target=_STAYS_MARKED
        ),
        "is_in_queue": _b(
            "node reached but not settled (in_queue)", "in_queue", target=_EXTRACTED_NEXT
        ),
        "is_current": _b("node extracted at this step (u)", "u", target=_POINTED_TO_NOW),
        "distance_estimate": _f("tentative distance from the source (d)", "d"),
    },
    "mst_prim": {
        "is_source": _b("the root node (input s)", "s", target=_POINTED_TO_FIRST),
        "is_in_tree": _b("node added to the spanning tree (mark)", "mark", target=_STAYS_MARKED),
        "is_in_queue": _b(
            "node adjacent to the tree, not yet in it (in_queue)", "in_queue", target=_EXTRACTED_NEXT
        ),
        "is_current": _b("node added to the tree at this step (u)", "u", target=_POINTED_TO_NOW),
        "key_value": _f("lightest known edge weight to the tree (key)", "key"),
    },
}

# Readable names for the automatically derived concepts: (algorithm | "*", field) ->
# (name, description). Fields not listed become ``is_<field without _h>``.
_DFS_FAMILY = (
    "dfs",
    "topological_sort",
    "articulation_points",
    "bridges",
    "strongly_connected_components",
    "dag_shortest_paths",
)
_ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("*", "s"): ("is_source", "the source node (input s)"),
    ("*", "u"): ("is_current", "node the DFS is at (u)"),
    ("*", "v"): ("is_scanned", "neighbour of u scanned last (v)"),
    ("*", "s_last"): ("is_stack_top", "top of the DFS stack (s_last)"),
    ("*", "topo_head_h"): ("is_topo_head", "head of the topological order built so far"),
    ("*", "is_cut_h"): ("is_cut", "node found to be an articulation point so far"),
    ("bellman_ford", "msk"): ("is_reached", "node with a finite distance estimate (msk)"),
    ("dag_shortest_paths", "mark"): ("is_reached", "node with a distance estimate (mark)"),
    ("dag_shortest_paths", "phase"): (
        "is_relaxing",
        "graph in the relaxation phase, not the topological sort (phase)",
    ),
    ("strongly_connected_components", "phase"): (
        "is_second_pass",
        "graph in the second DFS pass, on the transposed graph (phase)",
    ),
    ("floyd_warshall", "k"): ("is_pivot", "current intermediate node k"),
    ("mst_kruskal", "u"): ("is_u", "endpoint u of the edge being considered"),
    ("mst_kruskal", "v"): ("is_v", "endpoint v of the edge being considered"),
    ("mst_kruskal", "root_u"): ("is_root_u", "current node on u's path to its root (root_u)"),
    ("mst_kruskal", "root_v"): ("is_root_v", "current node on v's path to its root (root_v)"),
    ("mst_kruskal", "mask_u"): ("is_on_path_u", "node seen on u's path to its root (mask_u)"),
    ("mst_kruskal", "mask_v"): ("is_on_path_v", "node seen on v's path to its root (mask_v)"),
}
for _alg in _DFS_FAMILY:
    _ALIASES[(_alg, "s")] = ("is_source", "root of the current DFS tree (hint s)")
_ALIASES[("dag_shortest_paths", "s")] = ("is_source", "the source node (input s)")

#: Class names of categorical hints.
CLASS_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("*", "color"): ("white", "grey", "black"),
    ("mst_kruskal", "phase"): ("idle", "find_root_u", "find_root_v"),
}

# Extra scalar concepts kept beside the automatic ones.
_EXTRA: dict[str, dict[str, Concept]] = {
    "bellman_ford": {"distance_estimate": _f("tentative distance from the source (d)", "d")},
    "dag_shortest_paths": {"distance_estimate": _f("tentative distance from the source (d)", "d")},
}


def _lookup(table: dict, alg: str, name: str):
    return table.get((alg, name), table.get(("*", name)))


def _auto(alg: str) -> dict[str, Concept]:
    out: dict[str, Concept] = {}
    for name, fs in SPECS[alg].items():
        if fs.location == "edge" or fs.stage == "output":
            continue
        if fs.stage == "input" and not (name == "s" and fs.type == "mask_one"):
            continue
        where = "; graph-level, the same for every node" if fs.location == "graph" else ""
        if fs.type in ("mask", "mask_one"):
            alias = _lookup(_ALIASES, alg, name)
            if alias is None:
                base = name[:-2] if name.endswith("_h") else name
                cname = base if base.startswith("is_") else f"is_{base}"
                alias = (cname, f"CLRS {fs.type} hint {name}")
            out[alias[0]] = _b(alias[1] + where, name)
        elif fs.type == "categorical":
            classes = _lookup(CLASS_NAMES, alg, name) or tuple(
                str(k) for k in range(CATEGORIES[alg][name])
            )
            for k, cls in enumerate(classes):
                out[f"{name}_is_{cls}"] = _b(
                    f"{name} hint is {cls} (class {k}){where}", name, ("class", k)
                )
    out.update(_EXTRA.get(alg, {}))
    return out


#: ``{algorithm: {concept: Concept}}`` for all 12 CLRS graph algorithms.
CONCEPTS: dict[str, dict[str, Concept]] = {
    alg: dict(_MANUAL[alg]) if alg in _MANUAL else _auto(alg) for alg in SPECS
}
CONCEPTS["bellman_ford"]["is_source"] = _b(
    "the source node (input s)", "s", target=_POINTED_TO_FIRST
)
CONCEPTS["bellman_ford"]["is_reached"] = _b(
    "node with a finite distance estimate (msk)",
    "msk",
    target=Target("msk", "neighbours", "next", True, "its unreached neighbours are reached next"),
)


def concepts_markdown(algorithms: list[str] | None = None) -> str:
    """The :data:`CONCEPTS` table as GitHub markdown (one row per algorithm and concept)."""
    rows = [
        "| algorithm | concept | dtype | source | description |",
        "|---|---|---|---|---|",
    ]
    for alg in algorithms or list(CONCEPTS):
        if alg not in CONCEPTS:
            raise ValueError(f"unknown algorithm={alg!r}")
        for name, c in CONCEPTS[alg].items():
            dtype = "bool" if c.dtype == torch.bool else "float"
            stage = SPECS[alg][c.source_hint].stage
            rows.append(
                f"| {alg} | `{name}` | {dtype} | `{c.source_hint}` ({stage}) | {c.description} |"
            )
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------- labels


def _timeline(data: Data | Batch, alg: str, name: str, batch_vec: Tensor, T: int) -> Tensor:
    """The field as [N, T, (C)] over all hint steps."""
    fs = SPECS[alg][name]
    x = data[name]
    if fs.stage == "input":
        return x.unsqueeze(1).expand(x.shape[0], T, *x.shape[1:])
    if fs.location == "graph":
        x = x[batch_vec]
    return x


def _apply(rule: tuple, x: Tensor) -> Tensor:
    kind = rule[0]
    if kind == "mask":
        return x > 0.5
    if kind == "class":
        return x.argmax(-1) == rule[1]
    if kind == "not_class":
        return x.argmax(-1) != rule[1]
    if kind == "frontier":
        now = x > 0.5
        before = torch.zeros_like(now)
        before[:, 1:] = now[:, :-1]
        return now & ~before
    if kind == "scalar":
        return x.to(torch.float32)
    raise ValueError(f"unknown concept rule {rule!r}")


def concept_labels(
    batch: Data | Batch,
    state: Literal["computed", "read"] = "computed",
    concepts: list[str] | None = None,
) -> dict[str, Tensor]:
    """Labels of every concept of ``batch.algorithm`` for every (node, processor step).

    Returns ``{concept: [N, S]}`` with ``S = T_max - 1`` processor steps (bool or float32,
    see :data:`CONCEPTS`) and ``"step_mask"`` [N, S] bool, True where ``t < length - 1`` of
    the node's graph. Column t holds the concept at hint t+1 (``state="computed"``) or at
    hint t (``state="read"``). Padded steps hold False / 0.0 and are False in the mask.
    Works on a batch from :func:`hooked_nar.data.collate` or on a single ``Data``.
    """
    if state not in ("computed", "read"):
        raise ValueError(f"state must be 'computed' or 'read', got {state!r}")
    alg = batch_algorithm(batch)
    table = CONCEPTS[alg]
    names = list(table) if concepts is None else list(concepts)
    unknown = [c for c in names if c not in table]
    if unknown:
        raise ValueError(f"unknown concepts={unknown} for {alg}; valid: {', '.join(table)}")
    batch_vec = getattr(batch, "batch", None)
    if batch_vec is None:
        batch_vec = torch.zeros(batch.num_nodes, dtype=torch.long, device=batch.length.device)
    length = batch.length.reshape(-1)  # [B]
    hints = [n for n, fs in SPECS[alg].items() if fs.stage == "hint" and n in batch]
    T = max((int(batch[h].shape[1]) for h in hints), default=int(length.max()))
    S = max(T - 1, 0)
    mask: Bool[Tensor, "N S"] = valid_processor_steps(length, S)[batch_vec]
    cols = slice(1, T) if state == "computed" else slice(0, S)
    out: dict[str, Tensor] = {}
    for name in names:
        c = table[name]
        full = _apply(c.rule, _timeline(batch, alg, c.source_hint, batch_vec, T))
        lab = full[:, cols]
        out[name] = torch.where(mask, lab, lab.new_zeros(()))
    out["step_mask"] = mask
    return out
