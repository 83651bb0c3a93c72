"""Activation and attribution patching: self-patching identities, agreement of the batched
sites with one-at-a-time hooks, attribution against exact patching, seeded controls, and
clear errors that leave no hook behind."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hooked_nar.algorithms import run
from hooked_nar.data import CLRSDataset, collate, trajectory_to_data
from hooked_nar.model import HookedNAR
from patching import (
    activation_patching,
    attribution_patching,
    hint_log_prob,
    make_counterfactual,
    node_accuracy,
    normalised_effect,
    patched_metric,
    pointer_logit_diff,
    rank_correlation,
    site_control,
)
from tests.model_helpers import small_model


@pytest.fixture(scope="module")
def bfs_model():
    return HookedNAR.from_pretrained("bfs")


@pytest.fixture(scope="module")
def pairs():
    """Four clean / move-source counterfactual BFS graphs of 6..8 nodes."""
    ds = CLRSDataset("bfs", 4, sizes=(6, 7, 8), seed=5, progress=False)
    cfs = [make_counterfactual(ds[i], "move_source", seed=i) for i in range(4)]
    assert all(cf.changed_output for cf in cfs)
    return [cf.clean for cf in cfs], [cf.corrupted for cf in cfs]


def _no_hooks(model) -> bool:
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize("by", [("step", "node"), ("step",), ("node",)])
def test_clean_into_clean_is_one_and_corrupt_into_corrupt_is_zero(bfs_model, pairs, by):
    clean, corrupt = pairs
    metric = pointer_logit_diff(collate(clean), collate(corrupt))
    result = activation_patching(bfs_model, clean, corrupt, by=by, metric=metric, progress=False)
    ptr = result.ptr
    graph = torch.repeat_interleave(torch.arange(len(ptr) - 1), ptr.diff())
    for source_target, expected in ((clean, 1.0), (corrupt, 0.0)):
        tables, own, _ = patched_metric(
            bfs_model, source_target, source_target, by=by, metric=metric, progress=False
        )
        table = tables["hook_node_out"]
        if by == ("step",):
            eff = normalised_effect(table, result.clean, result.corrupt)
        else:
            eff = normalised_effect(table, result.clean, result.corrupt, graph)
        finite = torch.isfinite(eff)
        assert finite.any()
        assert torch.allclose(eff[finite], torch.full_like(eff[finite], expected), atol=1e-9)
        # every patched value is the run's own metric, bit for bit
        values = table[torch.isfinite(table)]
        assert torch.isin(values, own.double()).all()
    assert torch.equal(result.clean, metric(bfs_model(collate(clean)), collate(clean)).double())
    assert _no_hooks(bfs_model)


def test_batched_sites_equal_patching_one_site_by_hand(bfs_model, pairs):
    clean, corrupt = pairs[0][1], pairs[1][1]
    metric = pointer_logit_diff(clean, corrupt)
    result = activation_patching(bfs_model, clean, corrupt, metric=metric, progress=False)
    effects = result["hook_node_out"]
    cb, xb = collate([clean]), collate([corrupt])
    _, cache = bfs_model.run_with_cache(cb)
    checked = 0
    for t in range(effects.shape[0]):
        for v in (0, clean.num_nodes - 1, int(clean.s.argmax())):

            def put(x, hook, t=t, v=v):
                x = x.clone()
                x[v] = cache[f"steps.{t}.hook_node_out"][v]
                return x

            with torch.no_grad():
                logits = bfs_model.run_with_hooks(xb, fwd_hooks=[(f"steps.{t}.hook_node_out", put)])
            value = metric(logits, xb).double()
            expected = (value - result.corrupt) / (result.clean - result.corrupt)
            assert float(effects[t, v]) == pytest.approx(float(expected), abs=1e-5)
            checked += 1
    assert checked >= 3
    # the same graph inside a batch of pairs gets the same effects
    batch_result = activation_patching(
        bfs_model,
        pairs[0],
        pairs[1],
        metric=pointer_logit_diff(collate(pairs[0]), collate(pairs[1])),
        progress=False,
    )
    assert torch.allclose(batch_result.graph(1), effects, atol=1e-5, equal_nan=True)


def test_noising_and_denoising_of_every_site_at_once_recover_the_other_run(bfs_model, pairs):
    """Patching the whole hidden state of every step moves the run most of the way, never
    beyond the other run's behaviour by much; effect signs follow the direction."""
    clean, corrupt = pairs
    den = activation_patching(bfs_model, clean, corrupt, by=("step",), progress=False)
    noi = activation_patching(
        bfs_model, clean, corrupt, by=("step",), direction="noising", progress=False
    )
    assert torch.equal(den.clean, noi.clean) and torch.equal(den.corrupt, noi.corrupt)
    assert (den["hook_node_out"] > 0).all()  # denoising a step moves toward clean
    assert (noi["hook_node_out"] < 1).all()  # noising a step moves toward corrupt
    ci = den.ci()
    mean = den.per_graph().nanmean(1)
    assert (ci[:, 0] <= mean + 1e-9).all() and (mean <= ci[:, 1] + 1e-9).all()


def test_attribution_patching_ranks_sites_like_exact_patching(bfs_model, pairs):
    clean, corrupt = pairs
    for direction in ("denoising", "noising"):
        exact = activation_patching(bfs_model, clean, corrupt, direction=direction, progress=False)
        approx = attribution_patching(bfs_model, clean, corrupt, direction=direction)
        assert approx.method == "attribution" and torch.equal(approx.clean, exact.clean)
        assert torch.equal(
            torch.isnan(exact["hook_node_out"]), torch.isnan(approx["hook_node_out"])
        )
        assert rank_correlation(exact, approx) > 0.7, direction
    assert _no_hooks(bfs_model)


def test_attribution_is_exact_for_a_site_that_does_not_matter(bfs_model, pairs):
    """Where source and target activations agree, both methods give exactly no effect."""
    A = np.zeros((8, 8))
    for i in range(7):  # a path: nodes far from both sources see the same inputs at step 0
        A[i, i + 1] = A[i + 1, i] = 1.0
    clean = trajectory_to_data(run("bfs", A, 0))
    corrupt = make_counterfactual(clean, "move_source", source=1).corrupted
    exact = activation_patching(bfs_model, clean, corrupt, progress=False)
    approx = attribution_patching(bfs_model, clean, corrupt)
    _, c1 = bfs_model.run_with_cache(collate([clean]))
    _, c2 = bfs_model.run_with_cache(collate([corrupt]))
    found = 0
    for t in range(exact["hook_node_out"].shape[0]):
        same = (c1["hook_node_out", t] == c2["hook_node_out", t]).all(1)
        for v in same.nonzero().flatten().tolist():
            assert exact["hook_node_out"][t, v] == 0 and approx["hook_node_out"][t, v] == 0
            found += 1
    assert found > 0


def test_hint_metrics_and_several_hooks(bfs_model, pairs):
    clean, corrupt = pairs
    metric = hint_log_prob("reach_h", reference=collate(clean))
    result = activation_patching(
        bfs_model,
        clean,
        corrupt,
        hooks=["hook_node_out", "hook_aggr"],
        by=("node",),
        metric=metric,
        progress=False,
    )
    assert result.hooks == ["hook_node_out", "hook_aggr"]
    assert (result.clean > result.corrupt).all()
    for h in result.hooks:
        assert torch.isfinite(result[h]).all()
    with pytest.raises(ValueError, match="differentiable"):
        attribution_patching(bfs_model, clean, corrupt, metric=node_accuracy("pi", collate(clean)))


def test_controls_are_reproducible_with_a_seed(bfs_model, pairs):
    clean, corrupt = pairs
    result = activation_patching(bfs_model, clean, corrupt, progress=False)
    a = site_control(bfs_model, clean, corrupt, result, fraction=0.2, num_controls=6, seed=3)
    b = site_control(bfs_model, clean, corrupt, result, fraction=0.2, num_controls=6, seed=3)
    c = site_control(bfs_model, clean, corrupt, result, fraction=0.2, num_controls=6, seed=4)
    assert a.per_graph_control == b.per_graph_control and a.control_ci == b.control_ci
    assert a.per_graph_effect == c.per_graph_effect  # the top sites do not depend on the seed
    assert a.per_graph_control != c.per_graph_control
    assert a.effect_ci[0] <= a.effect <= a.effect_ci[1]
    assert a.settings["sites_per_graph"] == b.settings["sites_per_graph"]


def test_result_serialises_and_draws(bfs_model, pairs, tmp_path):
    clean, corrupt = pairs
    result = activation_patching(bfs_model, clean[0], corrupt[0], progress=False)
    data = json.loads(json.dumps(result.as_dict()))
    assert data["direction"] == "denoising" and data["method"] == "exact"
    flat = [x for row in data["effects"]["hook_node_out"] for x in row]
    assert all(x is None or math.isfinite(x) for x in flat)
    png = result.heatmap(tmp_path / "effects.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = result.top_sites(3)
    assert len(top) == 3 and top[0][2] >= top[1][2] >= top[2][2]


def test_bad_input_is_a_clear_error_and_leaves_no_hook(bfs_model, pairs):
    clean, corrupt = pairs
    with pytest.raises(ValueError, match="hooks"):
        activation_patching(bfs_model, clean, corrupt, hooks="hook_node_ot")
    with pytest.raises(ValueError, match="by"):
        activation_patching(bfs_model, clean, corrupt, by=("node", "step"))
    with pytest.raises(ValueError, match="direction"):
        activation_patching(bfs_model, clean, corrupt, direction="sideways")
    n = clean[0].num_nodes
    bigger = CLRSDataset("bfs", 1, sizes=(n + 1,), seed=0, progress=False)[0]
    with pytest.raises(ValueError, match="same node set"):
        activation_patching(bfs_model, clean[0], bigger)
    with pytest.raises(ValueError, match="graph pairs"):
        activation_patching(bfs_model, clean, corrupt[:2])
    dij = CLRSDataset("dijkstra", 1, sizes=(clean[0].num_nodes,), seed=0, progress=False)[0]
    with pytest.raises(ValueError, match="one algorithm"):
        activation_patching(bfs_model, clean[0], dij)
    with pytest.raises(ValueError, match="separate"):
        activation_patching(bfs_model, clean, clean, metric=hint_log_prob("reach_h"))

    calls = []

    def broken(logits, batch):  # fails inside a patched forward pass, after two clean ones
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("metric failed")
        return logits.outputs["pi"].new_tensor([float(len(calls))] * batch.num_graphs)

    was_training = bfs_model.training
    bfs_model.train()
    with pytest.raises(RuntimeError, match="metric failed"):
        activation_patching(bfs_model, clean, corrupt, metric=broken)
    assert _no_hooks(bfs_model) and bfs_model.training
    bfs_model.train(was_training)


def test_edge_hooks_need_the_same_edges():
    model = small_model("bfs")
    data = CLRSDataset("bfs", 1, sizes=(8,), seed=2, progress=False)[0]
    cf = make_counterfactual(data, "remove_edge", seed=0)
    with pytest.raises(ValueError, match="hook_msg"):
        activation_patching(
            model,
            cf.clean,
            cf.corrupted,
            hooks="hook_msg",
            by=("step",),
            metric=hint_log_prob("reach_h", reference=cf.clean),
        )
    moved = make_counterfactual(data, "move_source", seed=0)
    result = activation_patching(
        model,
        moved.clean,
        moved.corrupted,
        hooks="hook_msg",
        by=("step",),
        metric=hint_log_prob("reach_h", moved.clean),
        progress=False,
    )
    assert torch.isfinite(result["hook_msg"]).any()
    with pytest.raises(ValueError, match="node rows"):
        activation_patching(
            model,
            moved.clean,
            moved.corrupted,
            hooks="hook_msg",
            metric=hint_log_prob("reach_h", moved.clean),
            progress=False,
        )
    assert _no_hooks(model)
