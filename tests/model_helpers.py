"""Small models and batches shared by the model tests."""

from __future__ import annotations

from pathlib import Path

from hooked_nar.data import CLRSDataset, collate
from hooked_nar.model import HookedNAR, NARConfig

#: The bellman_ford checkpoint shipped until it was replaced by a better one (d_model 64, hints
#: decoded and supervised but not re-encoded): the circuit tests' subject, whose planted facts
#: (linear metric, no hint feedback, initial weights shared with the dijkstra checkpoint) hold
#: for it whatever bellman_ford the package ships.
SUPERVISED_BELLMAN_FORD = Path(__file__).parent / "fixtures" / "bellman_ford_supervised"


def small_model(algorithm: str = "bfs", **kw) -> HookedNAR:
    kw.setdefault("d_model", 16)
    return HookedNAR(NARConfig(algorithm, **kw)).eval()


def small_batch(algorithm: str = "bfs", num_graphs: int = 3, sizes=(5, 8), seed: int = 0):
    ds = CLRSDataset(algorithm, num_graphs, sizes=sizes, seed=seed, progress=False)
    return collate([ds[i] for i in range(len(ds))]), [ds[i] for i in range(len(ds))]
