"""A PyG user's first moves work: ``torch_geometric.loader.DataLoader`` over a CLRSDataset of
mixed trajectory lengths, and a model called on one unbatched graph ``dataset[i]``."""

from __future__ import annotations

import torch
from torch_geometric.loader import DataLoader

from hooked_nar.data import CLRSDataset, collate
from hooked_nar.model import HookedNAR


def _same_logits(a, b) -> None:
    for name in a.outputs:
        torch.testing.assert_close(a.outputs[name], b.outputs[name])
    for name in a.hints:
        torch.testing.assert_close(a.hints[name], b.hints[name])


def test_pyg_dataloader_batches_mixed_trajectory_lengths_like_collate():
    ds = CLRSDataset("bfs", 8, sizes=(4, 7, 11), seed=0, progress=False)
    assert len({int(d.length) for d in ds}) > 1  # the case that crashed
    model = HookedNAR.from_pretrained("bfs")
    batches = list(DataLoader(ds, batch_size=3))
    assert sum(b.num_graphs for b in batches) == len(ds)
    start = 0
    for b in batches:
        ref = collate([ds[i] for i in range(start, start + b.num_graphs)])
        start += b.num_graphs
        for key in ("reach_h", "pi_h", "step_mask", "length", "edge_index", "pi"):
            assert torch.equal(b[key], ref[key]), key
        _same_logits(model(b), model(ref))
    # the dataset's own graphs are unchanged (padding happens per batch)
    assert ds[0].reach_h.shape[1] == int(ds[0].length)


def test_model_runs_on_one_unbatched_graph():
    ds = CLRSDataset("dijkstra", 2, sizes=(6,), seed=1, progress=False)
    model = HookedNAR.from_pretrained("dijkstra")
    one = ds[1]
    _same_logits(model(one), model(collate([one])))
    assert torch.equal(model.predict(one)["pi"], model.predict(collate([one]))["pi"])
    _, cache = model.run_with_cache(one)
    assert cache.batch.num_graphs == 1
    loss = model(one, return_type="loss")
    assert torch.isclose(loss, model(collate([one]), return_type="loss"))
