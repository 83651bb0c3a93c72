"""HookedNAR hooks behave as in TransformerLens, one name per processor step."""

from __future__ import annotations

import pytest
import torch

from hooked_nar.data import collate
from hooked_nar.model import HookedNAR
from hooked_nar.model.hooked_nar import num_processor_steps
from hooked_nar.model.processors import PROCESSORS
from tests.model_helpers import small_batch, small_model

# Hook points of one step besides hook_node_in / hook_msg / hook_aggr / hook_node_out
OWN_HOOKS = {
    "mpnn": ["hook_gate"],
    "triplet_gmpnn": ["hook_triplet_msg", "hook_gate"],
    "transformer": ["hook_gate", "attn.hook_pattern"],
    "discrete": ["attn.hook_scores", "attn.hook_pattern", "hook_edge_state", "hook_state_logits",
                 "hook_state"],
}


def behaving_model(algorithm: str, processor: str, **kw) -> HookedNAR:
    """A small model whose steps do something: the shipped checkpoint for ``discrete`` (an
    untrained discrete model may keep every state as it is), a random one otherwise."""
    if processor == "discrete":
        return HookedNAR.from_pretrained(f"{algorithm}-discrete")
    return small_model(algorithm, processor=processor, **kw)


def _flat(logits):
    return {**{f"out.{k}": v for k, v in logits.outputs.items()}, **{f"hint.{k}": v for k, v in logits.hints.items()}}


@pytest.mark.parametrize("processor", PROCESSORS)
def test_identity_hooks_leave_outputs_bit_identical(processor):
    model = small_model("dijkstra", processor=processor)
    batch, _ = small_batch("dijkstra")
    plain = _flat(model(batch))
    hooked = _flat(model.run_with_hooks(batch, fwd_hooks=[(lambda n: True, lambda x, hook: x)]))
    for k in plain:
        assert torch.equal(plain[k], hooked[k]), k


@pytest.mark.parametrize("processor", PROCESSORS)
def test_every_step_has_its_own_hook_names(processor):
    model = behaving_model("bfs", processor)
    batch, _ = small_batch("bfs")
    _, cache = model.run_with_cache(batch)
    S = int(num_processor_steps(batch.length).max())
    for t in range(S):
        for name in ("hook_node_in", "hook_msg", "hook_aggr", "hook_node_out",
                     "decoder.hook_reach_h", "decoder.hook_pi_h", *OWN_HOOKS[processor]):
            assert f"steps.{t}.{name}" in cache.cache_dict
        assert model.hook_dict[f"steps.{t}.hook_node_out"].layer() == t
    # hidden states really differ between steps (a reused HookPoint would keep only the last)
    assert not torch.equal(cache["hook_node_out", 0], cache["hook_node_out", S - 1])


@pytest.mark.parametrize("processor", PROCESSORS)
def test_zeroing_a_step_changes_outputs_and_nothing_before_it(processor):
    model = behaving_model("bfs", processor, d_model=32)
    batch, _ = small_batch("bfs", sizes=(8,), num_graphs=4)
    t = 1
    _, clean = model.run_with_cache(batch)
    with model.hooks(fwd_hooks=[(f"steps.{t}.hook_node_out", lambda x, hook: torch.zeros_like(x))]):
        logits, patched = model.run_with_cache(batch)
    plain = model(batch)
    assert not torch.equal(logits.outputs["pi"], plain.outputs["pi"])
    order = list(clean.cache_dict)
    cut = order.index(f"steps.{t}.hook_node_out")
    for name in order[:cut]:
        assert torch.equal(clean[name], patched[name]), name
    assert torch.all(patched[f"steps.{t}.hook_node_out"] == 0)
    assert not torch.equal(clean[f"steps.{t + 1}.hook_node_in"], patched[f"steps.{t + 1}.hook_node_in"])


@pytest.mark.parametrize("processor", PROCESSORS)
def test_cache_equals_a_forward_without_hooks(processor):
    model = small_model("dijkstra", processor=processor)
    batch, _ = small_batch("dijkstra")
    logits, cache = model.run_with_cache(batch)
    plain = model(batch)
    assert torch.equal(cache["decoder.hook_pi"], plain.outputs["pi"])
    for t in range(plain.num_processor_steps):
        for hint, value in plain.hints.items():
            assert torch.equal(cache[f"steps.{t}.decoder.hook_{hint}"], value[:, t])
    assert not model.is_caching and all(not hp.fwd_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize("processor", ["mpnn", "transformer", "discrete"])
def test_batch_cache_equals_graphs_run_one_by_one(processor):
    model = small_model("bfs", processor=processor)
    batch, graphs = small_batch("bfs", num_graphs=3, sizes=(4, 9))
    _, cache = model.run_with_cache(batch)
    stacked = cache.stack("hook_node_out")
    for g, data in enumerate(graphs):
        _, single = model.run_with_cache(collate([data]))
        one = single.stack("hook_node_out")
        rows = stacked.graph == g
        S = int(one.mask.sum(0).max()) if one.mask.any() else 0
        mine = stacked.values[:, rows][:S]
        assert torch.allclose(mine, one.values[:S], atol=1e-5)
        assert torch.equal(stacked.mask[:, rows][:S], one.mask[:S])
        assert not stacked.mask[S:, rows].any()


@pytest.mark.parametrize("processor", PROCESSORS)
def test_flatten_returns_only_valid_rows_with_concepts(processor):
    model = small_model("bfs", processor=processor)
    batch, _ = small_batch("bfs", num_graphs=4, sizes=(3, 6, 9))
    _, cache = model.run_with_cache(batch)
    rows, index = cache.flatten("hook_node_out")
    lengths = batch.length.view(-1)
    assert torch.all(index.step + 1 < lengths[index.graph])
    expected = sum(int(n) * (int(T) - 1) for n, T in zip(batch.ptr.diff(), lengths, strict=True))
    assert rows.shape[0] == len(index) == expected
    for r in torch.randperm(len(index))[:10].tolist():
        g, node, t = int(index.graph[r]), int(index.node[r]), int(index.step[r])
        assert torch.equal(rows[r], cache["hook_node_out", t][batch.ptr[g] + node])
        assert index.concepts["is_visited"][r] == batch.reach_h[batch.ptr[g] + node, t + 1]
        assert index.concepts_read["is_visited"][r] == batch.reach_h[batch.ptr[g] + node, t]


@pytest.mark.parametrize("processor", PROCESSORS)
def test_no_hook_remains_after_a_hook_raises(processor):
    model = small_model("bfs", processor=processor)
    batch, _ = small_batch("bfs")

    def boom(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(batch, fwd_hooks=[("steps.1.hook_msg", boom)])
    with pytest.raises(RuntimeError, match="boom"):
        with model.hooks(fwd_hooks=[("steps.0.hook_aggr", boom)]):
            model(batch)
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize("processor", PROCESSORS)
def test_unknown_hook_name_is_a_clear_error_and_leaves_nothing(processor):
    model = small_model("bfs", processor=processor)
    batch, _ = small_batch("bfs")
    with pytest.raises(ValueError, match="steps.0.hook_node_ot"):
        model.run_with_hooks(batch, fwd_hooks=[("steps.0.hook_msg", lambda x, hook: x),
                                              ("steps.0.hook_node_ot", lambda x, hook: x)])
    with pytest.raises(ValueError, match="does not exist"):
        model.run_with_cache(batch, names_filter=["hook_node_out"])
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize("processor", PROCESSORS)
def test_backward_hooks_deliver_gradients_for_every_step(processor):
    model = small_model("bfs", processor=processor).train()
    batch, _ = small_batch("bfs", sizes=(8,))
    grads = {}

    def save(grad, hook):
        grads[hook.name] = grad

    with model.hooks(bwd_hooks=[(lambda n: n.endswith("hook_node_out"), save)]):
        model(batch, return_type="loss").backward()
    S = int(num_processor_steps(batch.length).max())
    if processor == "discrete":  # its outputs are the last step's pointers: nothing reads
        assert f"steps.{S - 1}.hook_node_out" not in grads  # the last hidden state
        S -= 1
    for t in range(S):
        g = grads[f"steps.{t}.hook_node_out"]
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert all(not hp.bwd_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize(("processor", "algorithm"), [("mpnn", "dfs"), ("discrete", "dijkstra")])
def test_hook_points_grow_for_long_trajectories(processor, algorithm):
    model = small_model(algorithm, processor=processor, initial_steps=2)
    batch, _ = small_batch(algorithm, sizes=(6,))
    S = int(num_processor_steps(batch.length).max())
    assert S > 2
    _, cache = model.run_with_cache(batch)
    assert f"steps.{S - 1}.hook_node_out" in cache.cache_dict
    fresh = small_model(algorithm, processor=processor, initial_steps=2)
    with pytest.raises(RuntimeError, match="ensure_steps"):
        with fresh.hooks(fwd_hooks=[("steps.0.hook_msg", lambda x, hook: x)]):
            fresh(batch)
    assert all(not hp.fwd_hooks for hp in fresh.hook_dict.values())


@pytest.mark.parametrize("processor", ["transformer", "discrete"])
def test_attention_pattern_is_a_distribution_over_in_neighbours(processor):
    model = small_model("bfs", processor=processor)
    batch, _ = small_batch("bfs")
    _, cache = model.run_with_cache(batch, names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = cache["steps.0.attn.hook_pattern"]  # [E, H]
    sums = torch.zeros(batch.num_nodes, pattern.shape[1]).index_add_(0, batch.edge_index[1], pattern)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_several_layers_per_step_are_hooked_per_layer():
    model = small_model("bfs", num_layers=2)
    batch, _ = small_batch("bfs")
    _, cache = model.run_with_cache(batch)
    for t in range(cache.num_processor_steps):
        assert torch.equal(cache[f"steps.{t}.layers.1.hook_node_out"], cache[f"steps.{t}.hook_node_out"])
        assert not torch.equal(cache[f"steps.{t}.layers.0.hook_node_out"], cache[f"steps.{t}.hook_node_out"])
        assert f"steps.{t}.layers.0.hook_msg" in cache.cache_dict


def test_global_readout_is_hooked_and_used():
    model = small_model("dijkstra", global_readout=True)
    batch, _ = small_batch("dijkstra")
    plain = model(batch)
    _, cache = model.run_with_cache(batch, names_filter=lambda n: n.endswith("hook_graph_in"))
    assert cache["steps.1.hook_graph_in"].shape == (batch.num_graphs, model.cfg.d_model)
    zeroed = model.run_with_hooks(
        batch, fwd_hooks=[(lambda n: n.endswith("hook_graph_in"), lambda x, hook: torch.zeros_like(x))])
    assert not torch.equal(zeroed.outputs["pi"], plain.outputs["pi"])
