"""Trajectory <-> PyG ``Data`` in the sparse (SALSA-CLRS style) layout, with an exact round trip.

Layout of ``trajectory_to_data(traj)`` (N nodes, E edges, T hint steps, C classes)::

    num_nodes    int                 N
    edge_index   [2, E] long         row 0 = source i, row 1 = target j of matrix entry (i, j),
                                     sorted by (i, j); the edge set of EDGE_SETS below
    length       [1] long            T
    algorithm    str                 CLRS algorithm name
    <field>      CLRS name, by location x stage:
                 node inputs/outputs [N]      edge inputs/outputs [E]     graph [1]
                 node hints  [N, T]           edge hints [E, T]           graph hints [1, T]
                 categorical fields add a trailing one-hot class axis [..., C]

Pointers (node or edge located) are long tensors holding CLRS's value: the index of the
target node WITHIN ITS GRAPH. PyG batching does not offset them (no field name contains
"index"), so after batching a pointer of a node of graph g still refers to local node
``ptr`` and the global node is ``batch.ptr[g] + ptr``. Masks, mask_one, scalars and
one-hot categoricals are float (``dtype``, float32 by default).
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from hooked_nar.algorithms.specs import SPECS, FieldSpec
from hooked_nar.algorithms.trajectory import Trajectory

__all__ = [
    "EDGE_DEFAULTS",
    "EDGE_SETS",
    "batch_to_trajectories",
    "data_to_trajectory",
    "edge_mask",
    "trajectory_to_data",
]

#: Which (i, j) pairs become edges, per algorithm. ``"adj"``: every pair where CLRS's
#: ``adj`` input is 1 (``A != 0`` plus self-loops). ``"symmetric"``: ``adj`` or its
#: transpose (strongly_connected_components: the ``A_t`` hint is the transposed graph).
#: ``"complete"``: all n^2 pairs (floyd_warshall: ``D``, ``Pi_h``, ``msk``, ``Pi`` are
#: all-pairs). Non-edges inside these sets carry ``adj = 0`` and ``A = 0``.
#: Edge fields of the other algorithms (``is_bridge``, ``in_mst``) live on graph edges.
EDGE_SETS: dict[str, str] = {
    "strongly_connected_components": "symmetric",
    "floyd_warshall": "complete",
}

#: Value of an edge field at pairs outside the edge set, where it is not 0. CLRS's bridges
#: marks non-edges of ``is_bridge`` / ``is_bridge_h`` with -1 (its "masked" class); inside
#: the edge set those fields are 0/1.
EDGE_DEFAULTS: dict[tuple[str, str], float] = {
    ("bridges", "is_bridge"): -1.0,
    ("bridges", "is_bridge_h"): -1.0,
}


def edge_mask(algorithm: str, adj: np.ndarray) -> np.ndarray:
    """Boolean [n, n] matrix of the pairs that become edges of ``algorithm`` (see EDGE_SETS)."""
    adj = np.asarray(adj) != 0
    kind = EDGE_SETS.get(algorithm, "adj")
    if kind == "complete":
        return np.ones_like(adj, dtype=bool)
    if kind == "symmetric":
        return adj | adj.T
    return adj | np.eye(adj.shape[0], dtype=bool)


def _differs_outside(arr: np.ndarray, lead: int, mask: np.ndarray, default: float) -> bool:
    """Whether the edge field ``arr`` ([(T,) n, n, (C)]) differs from ``default`` outside
    ``mask``; checked in blocks of steps so big hints are never copied whole."""
    outside = ~mask
    if not outside.any():
        return False
    blocks = [arr[None]] if lead == 0 else (arr[t : t + 64] for t in range(0, len(arr), 64))
    for blk in blocks:
        diff = (blk != default).any(axis=0)  # [n, n, (C)]
        if diff.ndim > 2:
            diff = diff.reshape(diff.shape[0], diff.shape[1], -1).any(axis=-1)
        if (diff & outside).any():
            return True
    return False


def _expected_shape(spec: FieldSpec, n: int, T: int, trailing: tuple[int, ...]) -> tuple:
    loc = {"node": (n,), "edge": (n, n), "graph": ()}[spec.location]
    return ((T,) if spec.stage == "hint" else ()) + loc + trailing


def _stage_dict(traj: Trajectory, stage: str) -> dict[str, np.ndarray]:
    return {"input": traj.inputs, "hint": traj.hints, "output": traj.outputs}[stage]


def trajectory_to_data(traj: Trajectory, *, dtype: torch.dtype = torch.float32) -> Data:
    """Convert one trajectory to a PyG ``Data`` in the sparse layout (see module docstring).

    Raises ``ValueError`` if an edge-located field is nonzero (or, for the fields of
    EDGE_DEFAULTS, differs from its default) outside the edge set, so no data is ever
    silently dropped. With ``dtype=torch.float64`` the round trip through
    :func:`data_to_trajectory` is bit-exact; with float32 only float scalars are rounded.
    """
    alg = traj.algorithm
    if alg not in SPECS:
        raise ValueError(f"unknown algorithm={alg!r}")
    spec = SPECS[alg]
    n, T = traj.num_nodes, traj.length
    mask = edge_mask(alg, traj.inputs["adj"])
    ii, jj = np.nonzero(mask)  # row-major: sorted by (i, j)
    fields: dict[str, torch.Tensor] = {}
    for stage in ("input", "hint", "output"):
        for name, value in _stage_dict(traj, stage).items():
            if name not in spec or spec[name].stage != stage:
                raise ValueError(f"{alg}: field {name!r} is not a CLRS {stage} of this algorithm")
            fs = spec[name]
            arr = np.asarray(value)
            trailing = (arr.shape[-1],) if fs.type == "categorical" else ()
            shape = _expected_shape(fs, n, T, trailing)
            if arr.shape != shape:
                if arr.size != int(np.prod(shape)):
                    raise ValueError(
                        f"{alg}: field {name!r} has shape {arr.shape}, expected {shape}"
                    )
                arr = arr.reshape(shape)  # CLRS-squeezed 1-node inputs/outputs
            lead = 1 if fs.stage == "hint" else 0  # axes before the location axes
            if fs.location == "edge":
                default = EDGE_DEFAULTS.get((alg, name), 0.0)
                if _differs_outside(arr, lead, mask, default):
                    raise ValueError(
                        f"{alg}: edge field {name!r} differs from {default} outside the edge "
                        f"set {EDGE_SETS.get(alg, 'adj')!r}; extend EDGE_SETS or EDGE_DEFAULTS"
                    )
                flat = arr.reshape(arr.shape[:lead] + (n * n,) + arr.shape[lead + 2 :])
                arr = np.take(flat, ii * n + jj, axis=lead)  # [(T,) E, (C)]
            elif fs.location == "graph":
                arr = np.expand_dims(arr, lead)  # [(T,) 1, (C)]
            if fs.stage == "hint":
                arr = np.moveaxis(arr, 0, 1)  # step axis second: [N|E|1, T, (C)]
            if fs.type == "pointer":
                ints = np.rint(arr)
                if not np.array_equal(ints, arr) or (
                    arr.size and (ints.min() < 0 or ints.max() >= n)
                ):
                    raise ValueError(f"{alg}: pointer field {name!r} holds non node indices")
                fields[name] = torch.from_numpy(np.ascontiguousarray(ints, dtype=np.int64))
            else:
                fields[name] = torch.tensor(np.ascontiguousarray(arr), dtype=dtype)
    edge_index = torch.from_numpy(np.stack([ii, jj]).astype(np.int64))
    return Data(
        num_nodes=n,
        edge_index=edge_index,
        length=torch.tensor([T], dtype=torch.long),
        algorithm=alg,
        **fields,
    )


def data_to_trajectory(data: Data) -> Trajectory:
    """Scatter a single-graph ``Data`` back to dense CLRS numpy arrays.

    Hints are cut to ``data.length`` steps (so padded data converts back too); edge fields
    are zero (or their EDGE_DEFAULTS value) outside ``edge_index``; pointers come back
    int64, everything else float64.
    """
    if isinstance(data, Batch):
        raise TypeError("data_to_trajectory takes one graph; use batch_to_trajectories")
    alg = data.algorithm
    if alg not in SPECS:
        raise ValueError(f"unknown algorithm={alg!r}")
    n = int(data.num_nodes)
    T = int(data.length.reshape(-1)[0])
    ii, jj = data.edge_index.cpu().numpy()
    out: dict[str, dict[str, np.ndarray]] = {"input": {}, "hint": {}, "output": {}}
    for name, fs in SPECS[alg].items():
        if name not in data:
            continue
        x = data[name].detach().cpu().numpy()
        x = x.astype(np.int64) if fs.type == "pointer" else x.astype(np.float64)
        if fs.stage == "hint":
            x = np.moveaxis(x[:, :T], 1, 0)  # [T, N|E|1, (C)]
        lead = 1 if fs.stage == "hint" else 0
        if fs.location == "edge":
            shape = x.shape[:lead] + (n, n) + x.shape[lead + 1 :]
            dense = np.full(shape, EDGE_DEFAULTS.get((alg, name), 0), dtype=x.dtype)
            dense[(slice(None),) * lead + (ii, jj)] = x
            x = dense
        elif fs.location == "graph":
            x = x.squeeze(lead)
        out[fs.stage][name] = x
    return Trajectory(alg, out["input"], out["hint"], out["output"])


def batch_to_trajectories(batch: Batch) -> list[Trajectory]:
    """Every graph of a (possibly step-padded) batch as a :class:`Trajectory`."""
    return [data_to_trajectory(d) for d in batch.to_data_list()]
