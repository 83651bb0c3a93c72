"""Seeded PyG datasets of CLRS trajectories, cached to disk safely, and the standard splits."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data, Dataset
from tqdm.auto import tqdm

from hooked_nar.algorithms import SPECS, run_many
from hooked_nar.algorithms.registry import get_algorithm
from hooked_nar.atomic import atomic_file
from hooked_nar.data.convert import trajectory_to_data
from hooked_nar.data.generators import GENERATORS, sample_graph
from hooked_nar.data.loader import pad_steps

__all__ = ["FORMAT_VERSION", "CLRSDataset", "make_splits"]

#: Bump when generation or the Data layout changes: old cache files are then ignored.
FORMAT_VERSION = 1

_CHUNK = 256  # graphs per run_many call (progress bar granularity)


def _graph_rng(seed: int, i: int) -> np.random.Generator:
    # Graph i depends only on (seed, i): a dataset is a prefix of a larger one with the same seed.
    return np.random.default_rng(np.random.SeedSequence([seed, i]))


class CLRSDataset(Dataset):
    """``num_graphs`` executions of a CLRS ``algorithm`` as PyG ``Data`` (layout: convert.py).

    Graph ``i`` has ``n`` drawn uniformly from ``sizes`` and is drawn by
    :func:`~hooked_nar.data.generators.sample_graph` with ``generator`` from a generator
    seeded by ``(seed, i)``, so the same parameters always give the same dataset. With
    ``root`` the dataset is cached in ``root/<cache_key>.pt`` (written atomically, read with
    ``torch.load(weights_only=True)``). Behaves like any PyG dataset: ``len``, integer
    indexing, slicing / index lists (returning a view), iteration.
    """

    def __init__(
        self,
        algorithm: str,
        num_graphs: int,
        generator: str = "er",
        sizes: Sequence[int] = (16,),
        seed: int = 0,
        root: str | os.PathLike | None = None,
        progress: bool = True,
        transform=None,
    ) -> None:
        if not isinstance(algorithm, str) or algorithm not in SPECS:
            raise ValueError(f"unknown algorithm={algorithm!r}; valid names: {', '.join(SPECS)}")
        try:
            get_algorithm(algorithm)
        except ValueError:
            raise ValueError(f"algorithm={algorithm!r} has no registered implementation") from None
        if not isinstance(generator, str) or generator not in GENERATORS:
            raise ValueError(
                f"unknown generator={generator!r}; valid names: {', '.join(GENERATORS)}"
            )
        if isinstance(num_graphs, bool) or not isinstance(num_graphs, int) or num_graphs < 0:
            raise ValueError(f"num_graphs must be a non-negative integer, got {num_graphs!r}")
        sizes = tuple(int(s) for s in (sizes if isinstance(sizes, Sequence) else [sizes]))
        if not sizes or min(sizes) < 1:
            raise ValueError(f"sizes must be a non-empty sequence of positive ints, got {sizes}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.algorithm = algorithm
        self.num_graphs = num_graphs
        self.generator = generator
        self.sizes = sizes
        self.seed = int(seed)
        self.progress = progress
        super().__init__(None if root is None else str(root), transform=transform, log=False)
        self.cache_root = None if root is None else Path(root)
        self._data: list[Data] = self._load_or_generate()

    # -- identity -------------------------------------------------------------------------

    @property
    def params(self) -> dict:
        """Every parameter the content depends on (the cache key hashes exactly this)."""
        return {
            "algorithm": self.algorithm,
            "num_graphs": self.num_graphs,
            "generator": self.generator,
            "sizes": list(self.sizes),
            "seed": self.seed,
            "format_version": FORMAT_VERSION,
        }

    @property
    def cache_key(self) -> str:
        """``<algorithm>-<generator>-<num_graphs>-<hash of params>``."""
        blob = json.dumps(self.params, sort_keys=True).encode()
        digest = hashlib.sha256(blob).hexdigest()[:16]
        return f"{self.algorithm}-{self.generator}-{self.num_graphs}-{digest}"

    @property
    def cache_path(self) -> Path | None:
        """The file this dataset is cached in under ``root`` (None without a root)."""
        return None if self.cache_root is None else self.cache_root / f"{self.cache_key}.pt"

    # -- PyG Dataset API ------------------------------------------------------------------

    def len(self) -> int:
        """Number of graphs."""
        return len(self._data)

    def get(self, idx: int) -> Data:
        """Graph ``idx`` as a PyG ``Data`` in the SALSA-CLRS layout."""
        return self._data[idx]

    def __getitems__(self, indices: Sequence[int]) -> list[Data]:
        """The graphs at ``indices`` padded to their longest trajectory (:func:`pad_steps`,
        with ``step_mask``). A torch or PyG ``DataLoader`` fetches each batch through this,
        so ``torch_geometric.loader.DataLoader(dataset)`` batches graphs of different
        trajectory lengths into what :func:`~hooked_nar.data.collate` gives."""
        graphs = [self[int(i)] for i in indices]
        if not graphs:
            return graphs
        T = max(int(g.length.reshape(-1)[0]) for g in graphs)
        return [pad_steps(g, T) for g in graphs]

    def __repr__(self) -> str:
        return (
            f"CLRSDataset({self.algorithm!r}, num_graphs={len(self)}, "
            f"generator={self.generator!r}, sizes={self.sizes}, seed={self.seed})"
        )

    # -- generation and caching -----------------------------------------------------------

    def _generate(self) -> list[Data]:
        graphs, sources = [], []
        for i in range(self.num_graphs):
            rng = _graph_rng(self.seed, i)
            n = int(rng.choice(self.sizes))
            A, s = sample_graph(self.algorithm, n, self.generator, rng)
            graphs.append(A)
            sources.append(s)
        needs_source = sources and sources[0] is not None
        show = self.progress and sys.stderr.isatty()
        out: list[Data] = []
        with tqdm(
            total=self.num_graphs,
            desc=f"{self.algorithm} ({self.generator})",
            disable=not show,
            leave=False,
        ) as bar:
            for lo in range(0, self.num_graphs, _CHUNK):
                hi = min(lo + _CHUNK, self.num_graphs)
                trajs = run_many(
                    self.algorithm, graphs[lo:hi], sources[lo:hi] if needs_source else None
                )
                out.extend(trajectory_to_data(t) for t in trajs)
                bar.update(hi - lo)
        return out

    def _load_or_generate(self) -> list[Data]:
        path = self.cache_path
        if path is not None and path.exists():
            try:
                return _unpack(torch.load(path, weights_only=True), self.params)
            except Exception:  # unreadable or stale cache: regenerate and overwrite it
                pass
        data = self._generate()
        if path is not None:
            with atomic_file(path) as fh:
                torch.save(_pack(data, self.params), fh)
        return data


# ---------------------------------------------------------------------------------------------
# On-disk format: a dict of plain tensors / strings / ints (safe for weights_only loading).
# Every field is flattened per graph and concatenated; shapes are rebuilt from the per-graph
# (num_nodes, num_edges, length) and the trailing class count stored per field.


def _pack(data: list[Data], params: dict) -> dict:
    num_nodes = torch.tensor([d.num_nodes for d in data], dtype=torch.long)
    num_edges = torch.tensor([d.edge_index.shape[1] for d in data], dtype=torch.long)
    length = torch.cat([d.length for d in data]) if data else torch.zeros(0, dtype=torch.long)
    fields, trailing = {}, {}
    if data:
        for name in SPECS[params["algorithm"]]:
            if name in data[0]:
                fields[name] = torch.cat([d[name].reshape(-1) for d in data])
                categorical = SPECS[params["algorithm"]][name].type == "categorical"
                trailing[name] = int(data[0][name].shape[-1]) if categorical else 0
    edge_index = (
        torch.cat([d.edge_index for d in data], dim=1) if data else torch.zeros(2, 0).long()
    )
    return {
        "params": json.dumps(params, sort_keys=True),
        "num_nodes": num_nodes,
        "num_edges": num_edges,
        "length": length,
        "edge_index": edge_index,
        "fields": fields,
        "trailing": trailing,
        "checksum": _checksum(num_nodes, num_edges, length),
    }


def _checksum(*tensors: torch.Tensor) -> int:
    return zlib.crc32(b"".join(t.numpy().tobytes() for t in tensors))


def _unpack(blob: dict, params: dict) -> list[Data]:
    if blob["params"] != json.dumps(params, sort_keys=True):
        raise ValueError("cache file holds a dataset with other parameters")
    num_nodes, num_edges, length = blob["num_nodes"], blob["num_edges"], blob["length"]
    if blob["checksum"] != _checksum(num_nodes, num_edges, length):
        raise ValueError("cache file is corrupt")
    alg = params["algorithm"]
    spec = SPECS[alg]
    G = len(num_nodes)
    edge_chunks = torch.split(blob["edge_index"], num_edges.tolist(), dim=1)
    per_graph: dict[str, tuple[torch.Tensor, ...]] = {}
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for name, flat in blob["fields"].items():
        fs = spec[name]
        c = blob["trailing"][name]
        shp = []
        for g in range(G):
            loc = {"node": int(num_nodes[g]), "edge": int(num_edges[g]), "graph": 1}[fs.location]
            s = (loc,) + ((int(length[g]),) if fs.stage == "hint" else ()) + ((c,) if c else ())
            shp.append(s)
        shapes[name] = shp
        per_graph[name] = torch.split(flat, [int(np.prod(s)) for s in shp])
    out = []
    for g in range(G):
        fields = {name: per_graph[name][g].reshape(shapes[name][g]) for name in per_graph}
        out.append(
            Data(
                num_nodes=int(num_nodes[g]),
                edge_index=edge_chunks[g],
                length=length[g : g + 1].clone(),
                algorithm=alg,
                **fields,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------

#: SALSA-CLRS / CLRS-30 style splits: train on small ER graphs, validate at 16 nodes, test
#: out of distribution on larger graphs: CLRS-30's own ER sampler (p = 0.5), sparse ER,
#: the library's ER, Watts-Strogatz and Delaunay.
TRAIN_SIZES = (4, 7, 11, 13, 16)


def _split_seed(seed: int, name: str) -> int:
    state = np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)
    return int(state[0])


def make_splits(
    algorithm: str,
    num_train: int = 1000,
    num_val: int = 32,
    num_test: int = 32,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    *,
    train_sizes: Sequence[int] = TRAIN_SIZES,
    val_size: int = 16,
    test_sizes: Sequence[int] = (64, 160),
    test_generators: Sequence[str] = ("clrs", "sparse", "er", "ws", "delaunay"),
    train_generator: str = "er",
    progress: bool = True,
) -> dict[str, CLRSDataset]:
    """Standard splits: ``train`` (``train_generator``, n in ``train_sizes``; ``"mixed"``
    adds CLRS-30's dense graphs of every p to the sparse ones), ``val`` (the same generator,
    n = ``val_size``) and ``test_<generator>_<n>`` for every test generator and size
    (default ``test_clrs_64`` ... ``test_delaunay_160``; ``test_clrs_64`` is CLRS-30's own
    out-of-distribution test). Each split gets its own seed derived from ``seed`` and its
    name, so no two splits share graphs by construction."""
    specs = {
        "train": (train_generator, tuple(train_sizes), num_train),
        "val": (train_generator, (val_size,), num_val),
    }
    for gen in test_generators:
        for n in test_sizes:
            specs[f"test_{gen}_{n}"] = (gen, (int(n),), num_test)
    return {
        name: CLRSDataset(
            algorithm,
            count,
            generator=gen,
            sizes=sizes,
            seed=_split_seed(seed, name),
            root=root,
            progress=progress,
        )
        for name, (gen, sizes, count) in specs.items()
    }
