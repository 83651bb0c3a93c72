"""``processor="discrete"``: DNAR's processor (Rodionov & Prokhorenkova, ICML 2025), whose
states are the algorithm's own. How the hints map onto states and rounds depends on the
algorithm: one round of hard attention per step for bfs, dijkstra and mst_prim
(:mod:`.one_round`), two rounds, two selections and a clock for dfs (:mod:`.dfs_rounds`).
The hard choices and their loss are shared (:mod:`.attention`).
"""

from hooked_nar.model.processors.discrete.dfs_rounds import DFSRoundsProcessor
from hooked_nar.model.processors.discrete.dispatch import DiscreteProcessor, layout_class
from hooked_nar.model.processors.discrete.one_round import OneRoundProcessor

__all__ = ["DFSRoundsProcessor", "DiscreteProcessor", "OneRoundProcessor", "layout_class"]
