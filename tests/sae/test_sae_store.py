"""ActivationStore: exactly the valid rows of the cache, labelled, in memory or on disk."""

from __future__ import annotations

import json

import pytest
import torch

from hooked_nar.data import CLRSDataset, CLRSLoader, collate
from hooked_nar.model import HookedNAR, NARConfig
from sae import ActivationStore


@pytest.fixture(scope="module")
def setup():
    model = HookedNAR(NARConfig("bfs", d_model=16)).eval()
    data = CLRSDataset("bfs", 10, sizes=(3, 6, 9), seed=3, progress=False)
    return model, data


def _expected_rows(model, data, batch_size, hook="hook_node_out"):
    """Valid rows built independently: each graph alone, every node, steps t + 1 < length."""
    rows, keys = [], []
    for g in range(len(data)):
        d = data[g]
        _, cache = model.run_with_cache(collate([d]))
        for t in range(int(d.length) - 1):
            x = cache[hook, t]
            for v in range(d.num_nodes):
                rows.append(x[v])
                keys.append((g, v, t))
    return rows, keys


def test_rows_equal_the_valid_rows_of_the_cache(setup):
    model, data = setup
    store = ActivationStore.from_model(model, data, batch_size=4, progress=False)
    rows, keys = _expected_rows(model, data, 4)
    index = store.index
    got = {
        (int(g), int(v), int(t)): store.rows()[i]
        for i, (g, v, t) in enumerate(zip(index.graph, index.node, index.step, strict=True))
    }
    assert len(got) == len(store) == len(keys)  # no padded step, no duplicate
    for key, row in zip(keys, rows, strict=True):
        assert torch.allclose(got[key], row, atol=1e-5), key
    # labels: the concept at the state each step computes (hint t + 1) and the one it reads
    for i in range(len(store)):
        g, v, t = (int(index.graph[i]), int(index.node[i]), int(index.step[i]))
        reach = data[g].reach_h[v]
        assert bool(index.concepts["is_visited"][i]) == bool(reach[t + 1] > 0.5)
        assert bool(index.concepts_read["is_visited"][i]) == bool(reach[t] > 0.5)


def test_same_rows_as_nar_cache_flatten_batch_by_batch(setup):
    model, data = setup
    store = ActivationStore.from_model(model, data, batch_size=4, progress=False)
    parts, offset = [], 0
    for batch in CLRSLoader(data, batch_size=4):
        _, cache = model.run_with_cache(batch)
        rows, idx = cache.flatten("hook_node_out")
        parts.append((rows, idx.graph + offset))
        offset += batch.num_graphs
    assert torch.equal(store.rows(), torch.cat([p[0] for p in parts]))
    assert torch.equal(store.index.graph, torch.cat([p[1] for p in parts]))


def test_steps_and_several_hooks(setup):
    model, data = setup
    full = ActivationStore.from_model(
        model, data, hooks=["hook_node_out", "hook_node_in"], progress=False
    )
    part = ActivationStore.from_model(
        model, data, hooks=["hook_node_out", "hook_node_in"], steps=[1], progress=False
    )
    keep = full.index.step == 1
    assert set(part.index.step.tolist()) == {1}
    for h in ("hook_node_out", "hook_node_in"):
        assert torch.equal(part.rows(h), full.rows(h)[keep])
    # the hidden state a step reads is the one the previous step wrote
    prev = {
        (int(g), int(v)): i
        for i, (g, v, t) in enumerate(
            zip(full.index.graph, full.index.node, full.index.step, strict=True)
        )
        if t == 0
    }
    for i in (part.index.step == 1).nonzero().flatten().tolist():
        j = prev[(int(part.index.graph[i]), int(part.index.node[i]))]
        assert torch.allclose(part.rows("hook_node_in")[i], full.rows("hook_node_out")[j])
    with pytest.raises(ValueError, match="pass hook="):
        full.rows()


def test_disk_store_is_the_same_store(setup, tmp_path):
    model, data = setup
    mem = ActivationStore.from_model(model, data, progress=False)
    disk = ActivationStore.from_model(
        model, data, path=tmp_path / "acts", shard_rows=50, progress=False
    )
    spilled = ActivationStore.from_model(
        model, data, memory_budget=0, shard_rows=64, progress=False
    )
    manifest = json.loads((tmp_path / "acts" / "manifest.json").read_text())
    assert len(manifest["shards"]) == -(-len(mem) // 50) and manifest["num_rows"] == len(mem)
    assert manifest["metadata"]["hooks"] == ["hook_node_out"]
    assert not disk.in_memory and not spilled.in_memory
    reopened = ActivationStore.load(tmp_path / "acts")
    for other in (disk, spilled, reopened):
        assert torch.equal(other.rows(), mem.rows())
        assert torch.equal(other.index.step, mem.index.step)
        assert torch.equal(other.labels()["is_frontier"], mem.labels()["is_frontier"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_batches_shuffle_every_row_once_per_epoch(setup, tmp_path):
    model, data = setup
    mem = ActivationStore.from_model(model, data, progress=False)
    disk = mem.save(tmp_path / "s", shard_rows=40)
    for store in (mem, disk):
        got = torch.cat(list(store.batches(32, seed=1, epochs=1)))
        assert got.shape == mem.rows().shape
        assert not torch.equal(got, mem.rows())  # shuffled
        key = lambda x: sorted(map(tuple, x.tolist()))  # noqa: E731
        assert key(got) == key(mem.rows())
    it = mem.batches(7)
    assert all(next(it).shape == (7, 16) for _ in range(3 * len(mem) // 7))  # endless


def test_bad_arguments(setup, tmp_path):
    model, data = setup
    with pytest.raises(ValueError, match="not per-step hook points"):
        ActivationStore.from_model(model, data, hooks="hook_nope", progress=False)
    with pytest.raises(ValueError, match="per-step names"):
        ActivationStore.from_model(model, data, hooks="steps.0.hook_node_out", progress=False)
    with pytest.raises(ValueError, match="no readable manifest"):
        ActivationStore.load(tmp_path)
    for kwargs in ({}, {"path": tmp_path / "empty"}):
        with pytest.raises(ValueError, match="no valid rows"):
            ActivationStore.from_model(model, data, steps=[50], progress=False, **kwargs)
    assert not (tmp_path / "empty").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
