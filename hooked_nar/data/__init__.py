"""Graph generators, CLRS trajectories as PyG ``Data``, datasets and step-masked batching.

>>> from hooked_nar.data import CLRSDataset, CLRSLoader
>>> ds = CLRSDataset("bfs", 100, sizes=(4, 7, 11, 13, 16), seed=0)
>>> batch = next(iter(CLRSLoader(ds, batch_size=32, shuffle=True, seed=0)))
>>> batch.reach_h.shape, batch.step_mask.shape   # [N, T_max], [32, T_max]
"""

from hooked_nar.data.convert import (
    EDGE_DEFAULTS,
    EDGE_SETS,
    batch_to_trajectories,
    data_to_trajectory,
    edge_mask,
    trajectory_to_data,
)
from hooked_nar.data.dataset import FORMAT_VERSION, TRAIN_SIZES, CLRSDataset, make_splits
from hooked_nar.data.generators import (
    GENERATORS,
    GRAPH_CONVENTIONS,
    SELF_LOOP_PROB,
    GraphConvention,
    complete,
    delaunay,
    er_probability_range,
    erdos_renyi,
    grid,
    path,
    random_tree,
    sample_graph,
    watts_strogatz,
)
from hooked_nar.data.loader import (
    CLRSLoader,
    batch_algorithm,
    collate,
    edge_step_mask,
    hint_names,
    node_step_mask,
    num_hint_steps,
    pad_steps,
    processor_step_mask,
)

__all__ = [
    "EDGE_DEFAULTS",
    "EDGE_SETS",
    "FORMAT_VERSION",
    "GENERATORS",
    "GRAPH_CONVENTIONS",
    "SELF_LOOP_PROB",
    "TRAIN_SIZES",
    "CLRSDataset",
    "CLRSLoader",
    "GraphConvention",
    "batch_algorithm",
    "batch_to_trajectories",
    "collate",
    "complete",
    "data_to_trajectory",
    "delaunay",
    "edge_mask",
    "edge_step_mask",
    "er_probability_range",
    "erdos_renyi",
    "grid",
    "hint_names",
    "make_splits",
    "node_step_mask",
    "num_hint_steps",
    "pad_steps",
    "path",
    "processor_step_mask",
    "random_tree",
    "sample_graph",
    "trajectory_to_data",
    "watts_strogatz",
]
