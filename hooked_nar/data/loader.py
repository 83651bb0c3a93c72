"""Batching graphs whose trajectories have different lengths, with boolean step masks.

A batch of B graphs is padded to ``T_max`` = the longest trajectory: every hint is
extended along its step axis (axis 1) by repeating its last valid step, and
``batch.step_mask`` [B, T_max] is True where ``t < length`` of the graph. Masks at other
granularities::

    node_mask = batch.step_mask[batch.batch]                    # [N, T_max]
    edge_mask = batch.step_mask[batch.batch[batch.edge_index[0]]]  # [E, T_max]
    # processor step t (t = 0 .. T_max-2) is supervised with hint t+1; it is real iff
    # t + 1 < length, i.e. the mask of processor steps is step_mask[:, 1:]   [B, T_max-1]

(:func:`node_step_mask`, :func:`edge_step_mask`, :func:`processor_step_mask` compute these.)
Nothing downstream may count a padded step: multiply or index with these masks.

Two step counts, named apart everywhere: *hint steps* ``T`` (``length``, ``num_hint_steps``,
the data's step axis) and *processor steps* ``S = T - 1`` (``num_processor_steps`` of the
model's logits and cache, the hook points ``steps.{t}``). The PyG attribute ``length`` keeps
its SALSA-CLRS name.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from torch.utils.data import DataLoader
from torch_geometric.data import Batch, Data

from hooked_nar.algorithms.specs import SPECS

__all__ = [
    "CLRSLoader",
    "as_batch",
    "batch_algorithm",
    "collate",
    "edge_step_mask",
    "hint_names",
    "node_step_mask",
    "num_hint_steps",
    "pad_steps",
    "processor_step_mask",
    "valid_processor_steps",
]


def batch_algorithm(data: Data | Batch) -> str:
    """The CLRS algorithm of a graph or of a batch (ValueError for a mixed or unknown one)."""
    alg = data.algorithm
    if isinstance(alg, (list, tuple)):
        if len(set(alg)) != 1:
            raise ValueError(f"a batch must hold one algorithm, got {sorted(set(alg))}")
        alg = alg[0]
    if alg not in SPECS:
        raise ValueError(f"unknown algorithm={alg!r}")
    return alg


def hint_names(data: Data | Batch) -> list[str]:
    """Names of the CLRS hint fields present on ``data`` (step axis 1: [N|E|B, T, (C)])."""
    spec = SPECS[batch_algorithm(data)]
    return [name for name, fs in spec.items() if fs.stage == "hint" and name in data]


def pad_steps(data: Data, T: int) -> Data:
    """Copy of one graph's ``data`` with every hint padded to ``T`` steps along axis 1 by
    repeating its last valid step (``length - 1``); steps beyond ``length`` already present
    are overwritten the same way. Adds ``step_mask`` [1, T] bool (t < length)."""
    length = int(data.length.reshape(-1)[0])
    if T < length:
        raise ValueError(f"T={T} is shorter than the trajectory (length={length})")
    out = copy.copy(data)
    dev = data.length.device
    idx = torch.arange(T, device=dev).clamp(max=length - 1)
    for name in hint_names(data):
        x = data[name]
        out[name] = x.index_select(1, idx.to(x.device))
    out.step_mask = (torch.arange(T, device=dev) < length).unsqueeze(0)
    return out


def collate(data_list: Sequence[Data], device: torch.device | str | None = None) -> Batch:
    """Pad every graph to the longest trajectory of the list and batch them (on ``device``
    when given, e.g. ``model.device``; the graphs themselves stay where they are).

    The batch has ``step_mask`` [B, T_max] bool (True where t < length of graph b) and every
    hint padded to ``T_max``; pointers stay node indices local to their graph.
    """
    if len(data_list) == 0:
        raise ValueError("data_list is empty")
    algs = {d.algorithm for d in data_list}
    if len(algs) != 1:
        raise ValueError(f"a batch must hold one algorithm, got {sorted(algs)}")
    T = max(int(d.length.reshape(-1)[0]) for d in data_list)
    batch = Batch.from_data_list([pad_steps(d, T) for d in data_list])
    return batch if device is None else batch.to(device)


def as_batch(data: Data | Batch) -> Batch:
    """``data`` itself when it is a ``Batch``, else the one-graph batch :func:`collate`
    makes of it (so models take ``dataset[i]`` as PyG users expect)."""
    return data if isinstance(data, Batch) else collate([data])


def _batch_vector(data: Data | Batch) -> Tensor:
    b = getattr(data, "batch", None)
    if b is None:
        return torch.zeros(data.num_nodes, dtype=torch.long, device=data.length.device)
    return b


def _step_mask(data: Data | Batch) -> Bool[Tensor, "B T"]:
    m = getattr(data, "step_mask", None)
    if m is not None:
        return m
    length = int(data.length.reshape(-1)[0])
    T = max((data[h].shape[1] for h in hint_names(data)), default=length)
    return (torch.arange(T, device=data.length.device) < length).unsqueeze(0)


def num_hint_steps(data: Data | Batch) -> int:
    """T_max: the number of hint steps of the (padded) batch (the model's
    ``num_processor_steps`` is T_max - 1)."""
    return int(_step_mask(data).shape[1])


def node_step_mask(data: Data | Batch) -> Bool[Tensor, "N T"]:
    """[N, T_max] bool: hint step t of node i is real (t < length of i's graph)."""
    return _step_mask(data)[_batch_vector(data)]


def edge_step_mask(data: Data | Batch) -> Bool[Tensor, "E T"]:
    """[E, T_max] bool: hint step t of edge e is real (t < length of e's graph)."""
    return _step_mask(data)[_batch_vector(data)[data.edge_index[0]]]


def valid_processor_steps(
    length: Int[Tensor, " B"], num_processor_steps: int
) -> Bool[Tensor, "B S"]:
    """The one rule for which processor steps are real: step t of a graph whose trajectory
    has ``length`` = T hint steps computes hint t + 1, so it is real iff ``t + 1 < T``.
    Returns ``[B, num_processor_steps]`` bool on ``length``'s device."""
    t = torch.arange(num_processor_steps, device=length.device)
    return (t[None, :] + 1) < length.reshape(-1, 1)


def processor_step_mask(data: Data | Batch) -> Bool[Tensor, "B S"]:
    """[B, T_max - 1] bool: processor step t (supervised with hint t+1) is real."""
    return valid_processor_steps(data.length, num_hint_steps(data) - 1)


class CLRSLoader(DataLoader):
    """``torch.utils.data.DataLoader`` over a dataset of CLRS ``Data`` using :func:`collate`.

    ``seed`` fixes the shuffling order (a fresh ``torch.Generator`` seeded with it), so two
    loaders with the same seed yield the same batches. ``device``: where the batches are
    put (e.g. ``model.device``).
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int | None = None,
        device: torch.device | str | None = None,
        **kwargs,
    ) -> None:
        if "collate_fn" in kwargs:
            raise ValueError("CLRSLoader sets collate_fn itself")
        generator = kwargs.pop("generator", None)
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        super().__init__(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=collate if device is None else functools.partial(collate, device=device),
            generator=generator,
            **kwargs,
        )
