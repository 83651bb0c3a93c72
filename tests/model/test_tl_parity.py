"""TransformerLens parity: the package export, hook names that build steps, errors that say
what to do, TransformerLens cache methods with processor steps as layers, and module names
that nnsight wraps cleanly (checked against run_with_cache)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hooked_nar.data import CLRSDataset, collate
from hooked_nar.model import HookedNAR, NARConfig


@pytest.fixture(scope="module")
def bfs():
    model = HookedNAR.from_pretrained("bfs")
    data = CLRSDataset("bfs", 3, sizes=(6, 9), seed=2, progress=False)
    return model, collate([data[i] for i in range(len(data))])


def test_package_exports_the_model_without_importing_torch():
    from hooked_nar import HookedNAR as exported

    assert exported is HookedNAR
    code = "import sys, hooked_nar; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_permanent_hook_and_a_longer_batch_say_how_to_proceed():
    model = HookedNAR(NARConfig("bfs", d_model=8, initial_steps=1)).eval()
    batch = collate(
        list(CLRSDataset("bfs", 2, generator="path", sizes=(6,), seed=0, progress=False))
    )
    model.add_hook("steps.0.hook_node_out", lambda x, hook: x, is_permanent=True)
    for run in (model, model.run_with_hooks, lambda b: model.run_with_cache(b)):
        with pytest.raises(RuntimeError, match=r"ensure_steps\(\d+\) before adding permanent") as e:
            run(batch)
        assert "do this for you" not in str(e.value)
    model.reset_hooks(including_permanent=True)
    assert model(batch).num_processor_steps > 1


def test_add_hook_builds_the_steps_its_name_refers_to():
    model = HookedNAR(NARConfig("bfs", d_model=8, initial_steps=2))
    seen = []
    model.add_hook("steps.30.hook_node_out", lambda x, hook: seen.append(hook.name))
    assert len(model.steps) == 31 and "steps.30.hook_node_out" in model.hook_dict
    import numpy as np

    from hooked_nar.algorithms import run
    from hooked_nar.data import trajectory_to_data

    A = np.eye(32, k=1) + np.eye(32, k=-1)  # BFS from one end of a 32-node path: 31 steps
    path = trajectory_to_data(run("bfs", A, 0))
    assert int(path.length) - 1 == 31
    model(path)
    assert seen == ["steps.30.hook_node_out"]
    model.reset_hooks()
    with pytest.raises(ValueError, match="does not exist"):
        model.add_hook("steps.3.hook_nope", lambda x, hook: x)


def test_incl_bwd_asks_for_the_loss(bfs):
    model, batch = bfs
    with pytest.raises(ValueError, match="return_type='loss'"):
        model.run_with_cache(batch, incl_bwd=True)
    loss, cache = model.run_with_cache(batch, incl_bwd=True, return_type="loss")
    grad = cache["steps.0.hook_node_out_grad"]
    assert loss.ndim == 0 and grad.shape == cache["hook_node_out", 0].shape and grad.abs().sum() > 0


def test_tl_cache_methods_take_processor_steps_as_layers(bfs):
    model, batch = bfs
    _, cache = model.run_with_cache(batch)
    S = cache.num_processor_steps
    stacked = cache.stack_activation("hook_node_out")
    assert torch.equal(stacked, cache.stack("hook_node_out").values) and stacked.shape[0] == S
    assert torch.equal(
        cache.stack_activation("hook_msg", layer=2), cache.stack("hook_msg").values[:2]
    )
    resid, labels = cache.accumulated_resid(return_labels=True)
    assert resid.shape == (S + 1, batch.num_nodes, model.cfg.d_model)
    assert labels[0] == "steps.0.hook_node_in" and labels[-1] == f"steps.{S - 1}.hook_node_out"
    for t in range(1, S + 1):  # the state step t reads is the one step t - 1 wrote
        assert torch.equal(resid[t], cache["hook_node_out", t - 1])
    assert torch.equal(cache.accumulated_resid(layer=2), resid[:2])
    with pytest.raises(ValueError, match="no token positions"):
        cache.accumulated_resid(pos_slice=0)
    with pytest.raises(ValueError, match="no final LayerNorm"):
        cache.accumulated_resid(apply_ln=True)
    with pytest.raises(ValueError, match="processor steps are 0"):
        cache.stack_activation("hook_node_out", layer=S + 1)
    with pytest.raises(ValueError, match="3 graphs whose rows are concatenated"):
        cache.remove_batch_dim()
    with pytest.raises(ValueError, match="no batch dimension"):
        cache.apply_slice_to_batch_dim(0)
    for name in ("decompose_resid", "stack_head_results", "logit_attrs", "apply_ln_to_stack"):
        with pytest.raises(NotImplementedError, match=f"{name} is about transformer blocks"):
            getattr(cache, name)()
    _, one = model.run_with_cache(batch.get_example(0))
    assert one.remove_batch_dim() is one


def test_checkpoints_with_earlier_parameter_names_load():
    from safetensors.torch import load_file

    from hooked_nar.model.checkpoint import WEIGHTS_NAME, resolve_checkpoint

    raw = load_file(resolve_checkpoint("bfs") / WEIGHTS_NAME)
    model = HookedNAR.from_pretrained("bfs")
    old = [k for k in raw if k.startswith("encoder.inputs.")]
    assert old, "the shipped bfs checkpoint still uses the earlier names"
    for key in old:
        new = key.replace("encoder.inputs.", "encoder.input_embeddings.")
        assert torch.equal(model.state_dict()[new], raw[key])


def test_nnsight_wraps_the_model_like_run_with_cache(bfs):
    nnsight = pytest.importorskip("nnsight")
    model, batch = bfs
    logits, cache = model.run_with_cache(batch)
    wrapped = nnsight.NNsight(model)
    assert isinstance(wrapped.encoder.input_embeddings, type(wrapped.encoder))  # an Envoy
    S = cache.num_processor_steps
    states = []
    with wrapped.trace(batch):  # requested in the order the forward runs them
        emb = wrapped.encoder.hook_node_emb.output.save()
        for t in range(S):
            states.append(wrapped.steps[t].hook_node_out.output.save())
    for t in range(S):
        assert torch.equal(states[t], cache["hook_node_out", t])
    assert torch.equal(emb, cache["encoder.hook_node_emb"])
    # an intervention through nnsight equals the same one through run_with_hooks
    with wrapped.trace(batch):
        wrapped.steps[1].hook_node_out.output[:] = 0
        out = wrapped.output.save()
    zeroed = model.run_with_hooks(
        batch, fwd_hooks=[("steps.1.hook_node_out", lambda x, hook: torch.zeros_like(x))]
    )
    assert torch.equal(out.outputs["pi"], zeroed.outputs["pi"])
    assert not torch.equal(zeroed.outputs["pi"], logits.outputs["pi"])
