"""Controls, the causal rule, and causal concept tests on the shipped BFS checkpoint with a small
SAE trained here (runs/ is not needed)."""

from __future__ import annotations

import math

import pytest
import torch

from hooked_nar.data import TRAIN_SIZES, CLRSDataset, CLRSLoader
from hooked_nar.model import HookedNAR
from patching import (
    CAUSAL_RULE,
    CausalResult,
    ablation_passes,
    bootstrap_ci,
    causal_concept_test,
    concept_predictions,
    concept_tests_table,
    judge,
    matched_features,
    passes_rule,
    random_directions,
    steering_sites,
)

SMALL = {"num_graphs": 16, "num_controls": 4, "progress": False}


@pytest.fixture(scope="session")
def bfs():
    """The shipped BFS model, a small top-k SAE trained on it (~10 s), and a held-out store."""
    from sae import ActivationStore, train_sae

    model = HookedNAR.from_pretrained("bfs")
    train = CLRSDataset("bfs", 128, sizes=TRAIN_SIZES, seed=0, progress=False)
    sae = train_sae(
        ActivationStore.from_model(model, train, progress=False),
        "topk",
        d_sae=128,
        k=8,
        steps=300,
        lr=3e-3,
        batch_size=256,
        progress=False,
    )
    held_out = CLRSDataset("bfs", 32, sizes=(16,), seed=20_000, progress=False)
    store = ActivationStore.from_model(model, held_out, progress=False)
    return model, sae, store


@pytest.fixture(scope="session")
def visited(bfs):
    model, sae, store = bfs
    return causal_concept_test(model, sae, "is_visited", store=store, steer_scale=2.0, **SMALL)


# ------------------------------------------------------------------------------ controls


def test_controls_are_reproducible_with_a_seed():
    freq = torch.rand(200, generator=torch.Generator().manual_seed(0))
    assert matched_features(freq, 3, 8, seed=5) == matched_features(freq, 3, 8, seed=5)
    assert matched_features(freq, 3, 8, seed=5) != matched_features(freq, 3, 8, seed=6)
    d1, d2 = random_directions(16, 4, 2.5, seed=1), random_directions(16, 4, 2.5, seed=1)
    assert torch.equal(d1, d2) and not torch.equal(d1, random_directions(16, 4, 2.5, seed=2))
    assert torch.allclose(d1.norm(dim=1), torch.full((4,), 2.5))
    norms = torch.tensor([0.0, 1.0, 3.0])
    assert torch.allclose(random_directions(8, 3, norms, seed=0).norm(dim=1), norms)
    x = torch.randn(50, generator=torch.Generator().manual_seed(0))
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_matched_features_have_matched_frequency():
    freq = torch.logspace(-4, 0, 400)
    freq[::7] = 0.0  # dead features are never drawn
    for feature in (50, 200, 390):
        chosen = matched_features(freq, feature, 8, tolerance=0.5, seed=0)
        assert len(chosen) == 8 == len(set(chosen)) and feature not in chosen
        ratio = freq[chosen] / freq[feature]
        assert ((ratio <= 1.5) & (ratio >= 1 / 1.5)).all(), ratio
        assert (freq[chosen] > 0).all()
    assert 201 not in matched_features(freq, 200, 8, seed=0, exclude=[201])
    # too few close candidates: the nearest in log frequency fill the list
    sparse = torch.tensor([0.5, 0.01, 0.02, 0.9, 0.0])
    assert matched_features(sparse, 0, 3, seed=0)[0] == 3


def test_bootstrap_ci_contains_the_mean_and_ignores_nan():
    g = torch.Generator().manual_seed(0)
    for n in (5, 40, 400):
        x = torch.randn(n, generator=g) + 2.0
        lo, hi = bootstrap_ci(x, seed=0)
        assert lo <= float(x.mean()) <= hi
    wide, narrow = (
        bootstrap_ci(torch.randn(10, generator=g)),
        bootstrap_ci(torch.randn(1000, generator=g)),
    )
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with_nan = torch.tensor([1.0, 2.0, float("nan"), 3.0])
    assert bootstrap_ci(with_nan, seed=0) == bootstrap_ci(torch.tensor([1.0, 2.0, 3.0]), seed=0)
    assert all(math.isnan(v) for v in bootstrap_ci(torch.tensor([float("nan")])))


def _result(effect, effect_ci, control, control_ci) -> CausalResult:
    return CausalResult("x", "m", effect, effect_ci, control, control_ci)


def test_the_causal_rule():
    strong = _result(0.5, (0.45, 0.55), 0.05, (0.04, 0.06))
    assert passes_rule(strong)
    assert not passes_rule(_result(0.5, (0.05, 0.9), 0.05, (0.04, 0.06)))  # intervals overlap
    assert not passes_rule(_result(0.03, (0.025, 0.035), 0.0, (0.0, 0.0)))  # below min_effect
    assert not passes_rule(_result(0.3, (0.28, 0.32), 0.2, (0.19, 0.21)))  # below min_ratio
    assert passes_rule(_result(0.3, (0.28, 0.32), 0.2, (0.19, 0.21)), {"min_ratio": 1.2})
    assert not passes_rule(_result(float("nan"), (0, 0), 0.0, (0, 0)))
    weak = _result(0.0, (0.0, 0.0), 0.0, (0.0, 0.0))
    assert judge(strong, [strong, strong]) == "causal"
    assert judge(strong, None) == "causal"  # steering not applicable
    assert judge(strong, [strong, weak]) == "causal (ablation only)"
    assert judge(weak, [strong, strong]) == "causal (steering only)"
    assert judge(weak, [weak, weak]) == judge(weak, None) == "correlational"
    assert CAUSAL_RULE == {"min_effect": 0.05, "min_ratio": 2.0}
    # a list of ablation results passes when a deciding metric (margin removed, flip rate) does
    flips = CausalResult("x", "flip rate", 0.5, (0.45, 0.55), 0.05, (0.04, 0.06))
    logp = CausalResult("x", "log-prob drop", 0.5, (0.45, 0.55), 0.05, (0.04, 0.06))
    margin = CausalResult("x", "margin removed", 0.0, (0.0, 0.0), 0.0, (0.0, 0.0))
    assert ablation_passes([margin, flips]) and judge([margin, flips], None) == "causal"
    assert not ablation_passes([margin, logp]) and judge([margin, logp], None) == "correlational"


# ------------------------------------------------------------------- causal concept tests


def test_is_visited_feature_is_causal_on_the_shipped_bfs_checkpoint(visited):
    t = visited
    assert t.auroc > 0.95 and t.targets == ["reach_h"]
    assert t.verdict == "causal" and t.ablation_causal and t.steering_causal
    margin = t.ablation[0]
    assert margin.metric == "margin removed" and margin.separated
    assert margin.effect > 3 * margin.control and margin.effect > 0.2, str(t)
    flips = t.steering[0]
    assert flips.effect > 0.5 and all(r.control < 0.1 for r in t.steering), str(t)
    assert t.settings["num_sites"] >= 16 and len(t.settings["control_features"]) == 4
    # readable, and serialisable
    assert "verdict: causal" in str(t) and "margin removed" in str(t)
    d = t.as_dict()
    assert d["feature"] == t.feature and d["steering_causal"] is True
    table = concept_tests_table([t], markdown=True)
    assert table.startswith("| concept |") and "| is_visited |" in table


def test_a_dead_feature_is_judged_not_causal(bfs, visited):
    model, sae, store = bfs
    freq = (sae.encode(store.rows()) > 0).float().mean(0)
    dead = int((freq == 0).nonzero()[0])
    t = causal_concept_test(model, sae, "is_visited", store=store, feature=dead, **SMALL)
    assert t.verdict == "correlational" and not t.causal
    assert t.auroc == pytest.approx(0.5)
    assert t.ablation[0].effect < 0.01 < visited.ablation[0].effect
    assert t.settings["steer_value"] == 0.0 and t.steering[0].effect == 0.0


def test_the_same_seed_gives_the_same_numbers(bfs):
    model, sae, store = bfs
    run = lambda seed: causal_concept_test(  # noqa: E731
        model,
        sae,
        "is_frontier",
        store=store,
        num_graphs=8,
        num_controls=3,
        seed=seed,
        progress=False,
    ).as_dict()
    a, b, c = run(0), run(0), run(1)
    assert a == b
    assert a["settings"]["control_features"] != c["settings"]["control_features"] or (
        a["ablation"][0]["per_graph_effect"] != c["ablation"][0]["per_graph_effect"]
    )


def test_an_input_concept_has_no_hint_to_steer(bfs):
    model, sae, store = bfs
    t = causal_concept_test(
        model, sae, "is_source", store=store, num_graphs=8, num_controls=2, progress=False
    )
    assert t.targets == ["pi_h", "reach_h"] and t.steering == []
    assert "not applicable" in t.steering_note and "input" in t.steering_note
    assert t.steering_causal is None and t.verdict in ("causal", "correlational")


def test_bad_concepts_and_options_raise(bfs):
    model, sae, store = bfs
    with pytest.raises(ValueError, match="not a concept of bfs"):
        causal_concept_test(model, sae, "is_settled", store=store)
    with pytest.raises(ValueError, match="scalar concept"):
        causal_concept_test(HookedNAR.from_pretrained("dijkstra"), sae, "distance_estimate")
    with pytest.raises(ValueError, match="feature must be"):
        causal_concept_test(model, sae, "is_visited", store=store, feature=10_000)
    with pytest.raises(ValueError, match="mode"):
        causal_concept_test(model, sae, "is_visited", store=store, mode="median")


def test_steering_sites_are_where_the_concept_is_false_and_could_turn_true(bfs):
    model, _, _ = bfs
    data = CLRSDataset("bfs", 6, sizes=(16,), seed=30_000, progress=False)
    batch = next(iter(CLRSLoader(data, batch_size=6, shuffle=False)))
    pred, truth = concept_predictions(model, batch, "is_frontier")
    assert (pred == truth).float().mean() > 0.95  # the shipped model is accurate
    rounds, cand = steering_sites(model, batch, "is_frontier", sites_per_graph=3, seed=0)
    assert not (cand & (truth | pred)).any()
    with torch.no_grad():
        reach = model(batch).hints["reach_h"] > 0  # column t: the prediction of hint t + 1
    S = cand.shape[1]
    reached_before = torch.cat([batch.reach_h[:, :1] > 0.5, reach[:, : S - 1]], 1)  # hint t
    assert not (cand & reached_before).any()  # a reached node cannot become a frontier
    assert cand.any()
    for r in rounds:
        assert not (r & ~cand).any()
        per_graph = torch.zeros(batch.num_graphs).index_add_(0, batch.batch, r.sum(1).float())
        assert (per_graph <= 1).all()
    again, _ = steering_sites(model, batch, "is_frontier", sites_per_graph=3, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(rounds, again, strict=True))


def test_plots_write_pngs(visited, bfs, tmp_path):
    from patching import steer
    from patching.plots import causal_bars, draw_before_after

    model, sae, _ = bfs
    assert causal_bars([visited], tmp_path / "bars.png").stat().st_size > 0
    data = CLRSDataset("bfs", 1, sizes=(8,), seed=3, progress=False)
    batch = next(iter(CLRSLoader(data, batch_size=1, shuffle=False)))
    site = torch.zeros(batch.num_nodes, 10, dtype=torch.bool)
    site[0, 0] = True
    hooks = steer(model, visited.feature, visited.settings["steer_value"], nodes=site, sae=sae)
    clean, truth = concept_predictions(model, batch, "is_visited")
    steered, _ = concept_predictions(model, batch, "is_visited", fwd_hooks=hooks)
    path = draw_before_after(
        data[0],
        {"truth": truth.T, "clean": clean.T, "steered": steered.T},
        tmp_path / "graph.png",
        title="steering",
        outlines={"steered": (steered != clean).T},
    )
    assert path.stat().st_size > 0
