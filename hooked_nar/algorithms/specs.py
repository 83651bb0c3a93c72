"""CLRS-30 field specifications: ``{algorithm: {field: (stage, location, type)}}``."""

from __future__ import annotations

import json
from importlib import resources
from typing import NamedTuple


class FieldSpec(NamedTuple):
    """One field of a CLRS spec: its stage (input / output / hint), location (node / edge / graph)
    and type (mask, scalar, categorical, pointer, ...)."""

    stage: str  # input | hint | output
    location: str  # node | edge | graph
    type: str  # mask | mask_one | pointer | scalar | categorical


def _load() -> dict[str, dict[str, FieldSpec]]:
    raw = json.loads(resources.files(__package__).joinpath("specs.json").read_text())
    return {alg: {f: FieldSpec(*v) for f, v in fields.items()} for alg, fields in raw.items()}


SPECS: dict[str, dict[str, FieldSpec]] = _load()

# Number of classes of every categorical field.
CATEGORIES: dict[str, dict[str, int]] = {
    "dfs": {"color": 3},
    "topological_sort": {"color": 3},
    "strongly_connected_components": {"color": 3},
    "articulation_points": {"color": 3},
    "bridges": {"color": 3},
    "dag_shortest_paths": {"color": 3},
    "mst_kruskal": {"phase": 3},
}
