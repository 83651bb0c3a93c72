"""Feature ablation and steering hooks: exact where they should change nothing, edits only where
addressed, reproducible with a seed, and nothing left behind after an error."""

from __future__ import annotations

import pytest
import torch

from hooked_nar.data import CLRSDataset, collate
from hooked_nar.model import HookedNAR, NARConfig
from patching import Intervention, ablate_features, feature_acts, steer

D_MODEL, D_SAE = 16, 48


def _sae(kind: str = "standard", d_in: int = D_MODEL, seed: int = 0):
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    if kind == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=D_SAE, k=6))
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=D_SAE))
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.5)
        sae.b_enc.uniform_(-0.1, 0.3)  # some features on, some off
        sae.b_enc[5] = -1e4  # feature 5 never fires
    return sae


@pytest.fixture(scope="module")
def setup():
    model = HookedNAR(NARConfig("bfs", d_model=D_MODEL, initial_steps=10)).eval()
    data = CLRSDataset("bfs", 4, generator="path", sizes=(6, 9), seed=1, progress=False)
    batch = collate([data[i] for i in range(len(data))])  # 3-8 steps
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
    rows = torch.cat([cache["hook_node_out", t] for t in range(cache.num_processor_steps)])
    return model, batch, cache, rows


def _flat(logits) -> dict[str, torch.Tensor]:
    return {
        **{f"out.{k}": v for k, v in logits.outputs.items()},
        **{f"hint.{k}": v for k, v in logits.hints.items()},
    }


def _run(model, batch, intervention=()) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return _flat(model.run_with_hooks(batch, fwd_hooks=list(intervention)))


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _no_hooks(model) -> bool:
    return not any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize("kind", ["standard", "topk"])
@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_ablating_a_feature_that_never_fires_changes_nothing(setup, kind, mode):
    model, batch, _, rows = setup
    sae = _sae(kind)
    assert (feature_acts(sae, rows)[:, 5] == 0).all()  # dead on every step of the batch
    clean = _run(model, batch)
    ablation = ablate_features(model, sae, [5], mode, reference=rows, seed=3)
    _assert_identical(clean, _run(model, batch, ablation))
    # a feature that fires does change the outputs
    alive = int(feature_acts(sae, rows).gt(0).float().mean(0).argmax())
    assert any(
        not torch.equal(clean[k], v)
        for k, v in _run(model, batch, ablate_features(model, sae, [alive])).items()
    )
    assert _no_hooks(model)


@pytest.mark.parametrize("kind", ["standard", "topk"])
def test_zero_ablating_every_feature_equals_splicing_zero_into_the_sae(setup, kind):
    model, batch, _, _ = setup
    sae = _sae(kind)
    ablated = _run(model, batch, ablate_features(model, sae, range(D_SAE)))
    zero = [(lambda n: n.endswith("hook_sae_acts_post"), lambda x, hook: torch.zeros_like(x))]
    with model.saes(sae, use_error_term=True), torch.no_grad():
        spliced = _flat(model.run_with_hooks(batch, fwd_hooks=zero))
    _assert_identical(ablated, spliced)
    clean = _run(model, batch)
    assert any(not torch.equal(v, clean[k]) for k, v in ablated.items())


def test_zero_ablation_subtracts_the_features_decoder_contribution(setup):
    model, batch, cache, _ = setup
    sae = _sae()
    x = cache["hook_node_out", 2]
    acts = sae.encode(x)
    feats = acts.gt(0).float().mean(0).argsort(descending=True)[:3].tolist()
    with ablate_features(model, sae, feats, steps=[2]), torch.no_grad():
        _, edited = model.run_with_cache(batch)
    kept = acts.clone()
    kept[:, feats] = 0
    expected = x + sae.decode(kept) - sae.decode(acts)
    assert torch.allclose(edited["hook_node_out", 2], expected, atol=1e-6)
    for t in (0, 1):
        assert torch.equal(edited["hook_node_out", t], cache["hook_node_out", t])


def test_steering_with_alpha_zero_is_exact(setup):
    model, batch, _, _ = setup
    clean = _run(model, batch)
    direction = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(0))
    _assert_identical(clean, _run(model, batch, steer(model, direction, 0.0)))
    _assert_identical(
        clean, _run(model, batch, steer(model, direction, 0.0, steps=[1], nodes=[0, 3]))
    )
    moved = _run(model, batch, steer(model, direction, 2.0, steps=[1]))
    assert any(not torch.equal(clean[k], v) for k, v in moved.items())


def test_clamping_a_feature_to_its_own_value_changes_nothing_where_it_does_not_fire(setup):
    model, batch, _, _ = setup
    sae = _sae()
    # feature 5 is 0 everywhere: clamping it to 0 is the identity
    _assert_identical(_run(model, batch), _run(model, batch, steer(model, 5, 0.0, sae=sae)))


def test_mean_and_resample_are_reproducible_with_a_seed(setup):
    model, batch, _, rows = setup
    sae = _sae()
    feats = feature_acts(sae, rows).gt(0).float().mean(0).argsort(descending=True)[:4].tolist()
    run = lambda **kw: _run(model, batch, ablate_features(model, sae, feats, reference=rows, **kw))  # noqa: E731
    _assert_identical(run(mode="resample", seed=0), run(mode="resample", seed=0))
    a, b = run(mode="resample", seed=0), run(mode="resample", seed=1)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    mean = run(mode="mean")
    _assert_identical(mean, run(mode="mean", seed=7))  # the mean has nothing random
    zero = run(mode="zero")
    assert any(not torch.equal(mean[k], zero[k]) for k in mean)


def _node_forms(batch, step: int, chosen: list[int]):
    N, S = batch.num_nodes, 10
    as_bool = torch.zeros(N, dtype=torch.bool)
    as_bool[chosen] = True
    grid = torch.zeros(N, S, dtype=torch.bool)
    grid[chosen, step] = True
    return {
        "index": (torch.tensor(chosen), [step]),
        "bool [N]": (as_bool, [step]),
        "bool [N, S]": (grid, None),
    }


@pytest.mark.parametrize("form", ["index", "bool [N]", "bool [N, S]"])
@pytest.mark.parametrize("what", ["ablate", "steer"])
def test_nodes_masks_change_only_the_chosen_rows_at_the_chosen_step(setup, form, what):
    model, batch, clean, _ = setup
    sae = _sae()
    chosen = [1, 4, 9]
    nodes, steps = _node_forms(batch, 2, chosen)[form]
    if what == "ablate":
        intervention = ablate_features(model, sae, range(D_SAE), steps=steps, nodes=nodes)
    else:
        intervention = steer(model, torch.ones(D_MODEL), 3.0, steps=steps, nodes=nodes)
    with intervention, torch.no_grad():
        _, edited = model.run_with_cache(batch)
    assert _no_hooks(model)
    for t in (0, 1):
        assert torch.equal(edited["hook_node_out", t], clean["hook_node_out", t])
    other = torch.ones(batch.num_nodes, dtype=torch.bool)
    other[chosen] = False
    x, y = edited["hook_node_out", 2], clean["hook_node_out", 2]
    assert torch.equal(x[other], y[other])
    assert all(not torch.equal(x[i], y[i]) for i in chosen)


def test_a_step_mask_edits_each_step_on_top_of_the_earlier_edits(setup):
    model, batch, _, _ = setup
    direction = torch.ones(D_MODEL)
    grid = torch.zeros(batch.num_nodes, 10, dtype=torch.bool)
    grid[[0, 2], 1] = True
    grid[[5, 7], 3] = True
    only_first = grid.clone()
    only_first[:, 3] = False
    with steer(model, direction, 2.0, nodes=only_first), torch.no_grad():
        _, first = model.run_with_cache(batch)
    with steer(model, direction, 2.0, nodes=grid), torch.no_grad():
        _, both = model.run_with_cache(batch)
    for t in (0, 1, 2):
        assert torch.equal(both["hook_node_out", t], first["hook_node_out", t])
    x, y = both["hook_node_out", 3], first["hook_node_out", 3]
    assert torch.equal(x[~grid[:, 3]], y[~grid[:, 3]])
    assert torch.allclose(x[grid[:, 3]], y[grid[:, 3]] + 2.0 * direction)


def test_context_manager_leaves_no_hooks_after_an_exception(setup):
    model, batch, _, _ = setup
    sae = _sae()
    ablation = ablate_features(model, sae, [0, 1])
    with pytest.raises(RuntimeError, match="boom"), ablation:
        assert not _no_hooks(model)
        raise RuntimeError("boom")
    assert _no_hooks(model)
    # an error inside a hook, during the forward pass
    bad = ablate_features(model, sae, [0], nodes=torch.tensor([10_000]))
    with pytest.raises(ValueError, match="outside"), bad, torch.no_grad():
        model(batch)
    assert _no_hooks(model)
    with pytest.raises(ValueError, match="outside"):
        model.run_with_hooks(batch, fwd_hooks=list(bad))
    assert _no_hooks(model)
    # re-entering an active intervention is refused; a finished one can be reused
    with ablation, pytest.raises(RuntimeError, match="already active"), ablation:
        pass
    assert _no_hooks(model)
    combined = ablation + steer(model, torch.ones(D_MODEL), 0.5, steps=[1])
    assert isinstance(combined, Intervention) and len(combined) == 2
    with combined:
        pass
    assert _no_hooks(model)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, s: ablate_features(m, s, [0], hook="hook_nope"), ValueError, "hook_nope"),
        (lambda m, s: ablate_features(m, _sae(d_in=24), [0]), ValueError, "width 24"),
        (lambda m, s: ablate_features(m, s, [D_SAE]), ValueError, "0..47"),
        (lambda m, s: ablate_features(m, s, [-1]), ValueError, "0..47"),
        (lambda m, s: ablate_features(m, s, []), ValueError, "empty"),
        (lambda m, s: ablate_features(m, s, [0], "mean"), ValueError, "reference"),
        (lambda m, s: ablate_features(m, s, [0], "resample"), ValueError, "reference"),
        (lambda m, s: ablate_features(m, s, [0], "mean", reference=[1.0]), TypeError, "reference"),
        (lambda m, s: ablate_features(m, s, [0], "median"), ValueError, "mode"),
        (lambda m, s: ablate_features(m, s, [0], steps=[-1]), ValueError, "steps"),
        (lambda m, s: ablate_features(m, s, [0], steps=[]), ValueError, "steps"),
        (lambda m, s: ablate_features(m, s, [0], nodes=torch.rand(3)), ValueError, "nodes"),
        (lambda m, s: ablate_features(m, torch.nn.Linear(16, 16), [0]), TypeError, "SAELens"),
        (lambda m, s: steer(m, torch.ones(24), 1.0), ValueError, "width 24"),
        (lambda m, s: steer(m, torch.ones(16), 1.0, hook="hook_nope"), ValueError, "hook_nope"),
        (lambda m, s: steer(m, torch.full((16,), float("nan")), 1.0), ValueError, "NaN"),
        (lambda m, s: steer(m, 3, 1.0), ValueError, "sae="),
        (lambda m, s: steer(m, D_SAE, 1.0, sae=s), ValueError, "0..47"),
        (lambda m, s: steer(m, "up", 1.0), TypeError, "direction_or_feature"),
    ],
)
def test_bad_arguments_raise_clear_errors(setup, call, error, match):
    model = setup[0]
    with pytest.raises(error, match=match):
        call(model, _sae())
    assert _no_hooks(model)


def test_a_mask_for_the_wrong_batch_is_refused_at_run_time(setup):
    model, batch, _, _ = setup
    wrong = torch.zeros(batch.num_nodes + 1, dtype=torch.bool)
    with pytest.raises(ValueError, match="rows"):
        model.run_with_hooks(batch, fwd_hooks=list(steer(model, torch.ones(16), 1.0, nodes=wrong)))
    assert _no_hooks(model)
