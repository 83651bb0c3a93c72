"""SAEs spliced into HookedNAR: exact with the error term, per-step hook points, no leftovers."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from hooked_nar.data import CLRSDataset, collate
from hooked_nar.model import HookedNAR, NARConfig


def _sae(d_in: int = 16, d_sae: int = 48, seed: int = 0):
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.b_enc.uniform_(-0.1, 0.3)  # some features on, some off
    return sae


@pytest.fixture(scope="module")
def setup():
    model = HookedNAR(NARConfig("bfs", d_model=16, initial_steps=4)).eval()
    data = CLRSDataset(
        "bfs", 4, generator="path", sizes=(6, 9), seed=1, progress=False
    )  # 3-6 steps
    return model, collate([data[i] for i in range(len(data))])


def _flat(logits):
    return {
        **{f"out.{k}": v for k, v in logits.outputs.items()},
        **{f"hint.{k}": v for k, v in logits.hints.items()},
    }


def _no_splice(model):
    assert model._sae_splices == {} and model._sae_every_step == {}
    assert not any(".hook_sae_" in n for n in model.hook_dict)
    assert all(type(m.hook_node_out) is HookPoint for m in model.steps)


def test_error_term_is_exact_and_sae_hooks_are_per_step(setup):
    model, batch = setup
    sae = _sae()
    clean, clean_cache = model.run_with_cache(batch)
    keys = set(model.state_dict())
    with model.saes(sae, use_error_term=True):
        assert set(model.state_dict()) == keys  # the SAE's weights stay out of the model's
        spliced, cache = model.run_with_cache(batch)
        for t in range(cache.num_processor_steps):
            assert model.hook_dict[f"steps.{t}.hook_node_out.hook_sae_acts_post"].layer() == t
    clean, spliced = _flat(clean), _flat(spliced)
    for k in clean:
        assert torch.equal(clean[k], spliced[k]), k
    for t in range(cache.num_processor_steps):
        x = clean_cache["hook_node_out", t]
        assert torch.equal(cache["hook_node_out", t], x)
        assert torch.equal(cache[f"steps.{t}.hook_node_out.hook_sae_input"], x)
        assert torch.allclose(cache[f"steps.{t}.hook_node_out.hook_sae_acts_post"], sae.encode(x))
        assert torch.allclose(
            cache[f"steps.{t}.hook_node_out.hook_sae_recons"], sae.decode(sae.encode(x))
        )
    # stacked over steps like any other hook
    assert cache.stack("hook_node_out.hook_sae_acts_post").values.shape[-1] == 48
    _no_splice(model)


def test_without_error_term_the_reconstruction_flows_on(setup):
    model, batch = setup
    sae = _sae()
    clean = _flat(model(batch))
    model.add_sae(sae, steps=[1])
    try:
        _, cache = model.run_with_cache(batch)
        spliced = _flat(model(batch))
    finally:
        model.reset_saes()
    recon = sae.decode(sae.encode(cache["steps.1.hook_node_out.hook_sae_input"]))
    assert torch.allclose(cache["hook_node_out", 1], recon)
    assert "steps.0.hook_node_out.hook_sae_input" not in cache.cache_dict  # only step 1
    assert any(not torch.equal(clean[k], spliced[k]) for k in clean)
    _no_splice(model)
    after = _flat(model(batch))
    assert all(torch.equal(clean[k], after[k]) for k in clean)


def test_feature_edit_at_one_step_changes_only_later_steps(setup):
    model, batch = setup
    sae = _sae()
    with model.saes(sae, use_error_term=True):
        _, base = model.run_with_cache(batch)
        kill = [("steps.2.hook_node_out.hook_sae_acts_post", lambda x, hook: torch.zeros_like(x))]
        with model.hooks(fwd_hooks=kill):
            _, edited = model.run_with_cache(batch)
    for t in (0, 1):
        assert torch.equal(base["hook_node_out", t], edited["hook_node_out", t])
    assert torch.allclose(
        edited["hook_node_out", 2],
        base["hook_node_out", 2] - base["steps.2.hook_node_out.hook_sae_recons"] + sae.b_dec,
        atol=1e-5,
    )
    assert not torch.equal(base["hook_node_out", 3], edited["hook_node_out", 3])
    _no_splice(model)


def test_new_steps_get_the_sae_when_steps_is_none():
    model = HookedNAR(NARConfig("bfs", d_model=16, initial_steps=2)).eval()
    data = CLRSDataset("bfs", 2, sizes=(12,), seed=4, progress=False)
    batch = collate([data[0], data[1]])
    with model.saes(_sae()):
        _, cache = model.run_with_cache(batch)
        assert len(model.steps) == cache.num_processor_steps > 2
        assert all(
            f"steps.{t}.hook_node_out.hook_sae_acts_post" in cache.cache_dict
            for t in range(cache.num_processor_steps)
        )
    _no_splice(model)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sae": "wide"}, "d_in=24"),
        ({"hook": "hook_nope"}, "not a hook point"),
        ({"steps": [0, 99]}, "steps contains 99"),
        ({"steps": [-1]}, "steps contains -1"),
        ({"hook": "steps.1.hook_node_out", "steps": [1]}, "per-step name"),
    ],
)
def test_bad_arguments_leave_nothing_spliced(setup, kwargs, match):
    model, batch = setup
    sae = _sae(d_in=24) if kwargs.pop("sae", None) else _sae()
    model.add_sae(_sae(seed=5), steps=[3])  # an earlier splice survives the failed call
    before = dict(model._sae_splices)
    with pytest.raises(ValueError, match=match):
        model.add_sae(sae, **kwargs)
    assert model._sae_splices == before
    with pytest.raises(ValueError, match=match), model.saes(sae, **kwargs):
        pass
    assert model._sae_splices == before
    model.reset_saes()
    _no_splice(model)


def test_context_restores_after_an_exception_and_keeps_earlier_splices(setup):
    model, batch = setup
    outer, inner = _sae(seed=1), _sae(seed=2)
    model.add_sae(outer, steps=[0, 1])
    with pytest.raises(RuntimeError, match="boom"), model.saes(inner, steps=[1, 2]):
        assert model.steps[1].hook_node_out.sae is inner
        raise RuntimeError("boom")
    assert model.steps[0].hook_node_out.sae is outer and model.steps[1].hook_node_out.sae is outer
    assert type(model.steps[2].hook_node_out) is HookPoint
    model.reset_saes()
    _no_splice(model)
    with pytest.raises(TypeError, match="SAELens SAE"):
        model.add_sae(torch.nn.Linear(16, 16))


def test_an_sae_of_the_wrong_width_for_its_hook_is_refused_before_splicing(setup):
    """``hook_msg`` carries [E, d] messages: a d_in that differs is an error, not a splice
    that breaks every forward until ``reset_saes()``."""
    model, batch = setup
    clean = _flat(model(batch))
    with pytest.raises(ValueError, match=r"d_in=24 but hook_msg carries vectors of 16"):
        model.add_sae(_sae(d_in=24), hook="hook_msg")
    _no_splice(model)
    for k, v in _flat(model(batch)).items():
        torch.testing.assert_close(v, clean[k])
    model.add_sae(_sae(d_in=16), hook="hook_msg", steps=[0])  # the right width splices
    assert list(model._sae_splices) == ["steps.0.hook_msg"]
    model.reset_saes()


def test_an_sae_of_another_algorithm_is_refused(setup):
    model, _ = setup
    sae = _sae()
    sae.cfg.metadata.algorithm = "dijkstra"
    with pytest.raises(ValueError, match="trained on a dijkstra model.*runs bfs"):
        model.add_sae(sae)
    _no_splice(model)


def test_run_with_saes_splices_for_one_call_only(setup):
    """SAELens's run_with_saes / run_with_cache_with_saes / run_with_hooks_with_saes: the
    same numbers as the saes() context, nothing left spliced after (or after a bad hook)."""
    model, batch = setup
    sae = _sae()
    plain = _flat(model(batch))
    with model.saes(sae):
        expected = _flat(model(batch))
    got = _flat(model.run_with_saes(batch, saes=[sae]))
    _no_splice(model)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not all(torch.equal(got[k], plain[k]) for k in plain)  # the reconstruction flowed on
    logits, cache = model.run_with_cache_with_saes(batch, saes=sae, use_error_term=True)
    _no_splice(model)
    assert "steps.0.hook_node_out.hook_sae_acts_post" in cache
    assert all(torch.equal(_flat(logits)[k], plain[k]) for k in plain)  # the error term is exact
    seen = []
    model.run_with_hooks_with_saes(
        batch,
        saes=sae,
        fwd_hooks=[("steps.1.hook_node_out.hook_sae_acts_post", lambda x, hook: seen.append(x))],
    )
    _no_splice(model)
    assert len(seen) == 1 and seen[0].shape == (batch.num_nodes, 48)
    with pytest.raises(ValueError, match="hook_nope"):
        model.run_with_saes(batch, saes=sae, hook="hook_nope")
    _no_splice(model)
