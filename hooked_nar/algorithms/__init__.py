"""CLRS-30 graph algorithms that emit CLRS's inputs, hints and outputs exactly.

>>> from hooked_nar.algorithms import run
>>> traj = run("bfs", A, source=0)
>>> traj.hints["reach_h"]  # [T, n]
"""

# Importing a module registers its algorithms.
from hooked_nar.algorithms import bfs as _bfs  # noqa: F401
from hooked_nar.algorithms import depth_first as _depth_first  # noqa: F401
from hooked_nar.algorithms import mst as _mst  # noqa: F401
from hooked_nar.algorithms import shortest_paths as _shortest_paths  # noqa: F401
from hooked_nar.algorithms.registry import (
    Algorithm,
    GraphConvention,
    get_algorithm,
    registered_algorithms,
    run,
    run_many,
)
from hooked_nar.algorithms.specs import CATEGORIES, SPECS, FieldSpec
from hooked_nar.algorithms.trajectory import Trajectory

ALGORITHMS: tuple[str, ...] = (
    "bfs",
    "dfs",
    "topological_sort",
    "articulation_points",
    "bridges",
    "strongly_connected_components",
    "mst_kruskal",
    "mst_prim",
    "bellman_ford",
    "dijkstra",
    "dag_shortest_paths",
    "floyd_warshall",
)

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "GraphConvention",
    "CATEGORIES",
    "SPECS",
    "FieldSpec",
    "Trajectory",
    "get_algorithm",
    "registered_algorithms",
    "run",
    "run_many",
]
