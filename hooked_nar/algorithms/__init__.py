"""CLRS-30 graph algorithms that emit CLRS's inputs, hints and outputs exactly.

>>> from hooked_nar.algorithms import run
>>> traj = run("bfs", A, source=0)
>>> traj.hints["reach_h"]  # [T, n]
"""

import importlib
import pkgutil

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


def _import_implementations() -> None:
    """Import every module of this package: an implementation module registers its algorithms
    (``@register(...)`` beside each trace function) when it is imported, so adding an
    algorithm touches its spec and its implementation file only."""
    for module in pkgutil.iter_modules(__path__):  # sorted by file name
        importlib.import_module(f"{__name__}.{module.name}")


_import_implementations()

#: Every registered algorithm's name, in registration order (implementation files by name,
#: then the order of their ``@register`` records).
ALGORITHMS: tuple[str, ...] = tuple(registered_algorithms())

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
