"""The model, SAE and patching paths on a GPU give what they give on the CPU.

Each test runs one path twice, on the CPU and on ``HOOKED_NAR_TEST_DEVICE`` (default
``cuda``), from the same weights and graphs, and compares the results. Without that device
the tests are skipped: the CPU-only run checks device-cleanliness with the ``meta`` device
instead (test_device_clean.py).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from hooked_nar.data import CLRSDataset, collate
from hooked_nar.model import HookedNAR
from hooked_nar.model.checkpoint import checkpoint_config, resolve_checkpoint, shipped_checkpoints

DEVICE = torch.device(os.environ.get("HOOKED_NAR_TEST_DEVICE", "cuda"))


def _available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available()
    return device.type == "cpu"


pytestmark = pytest.mark.skipif(not _available(DEVICE), reason=f"no {DEVICE} device")

#: float32 kernels differ between devices in the last bits; effects are compared loosely
TOL = {"atol": 2e-4, "rtol": 2e-4}


def _graphs(algorithm: str, count: int = 4, seed: int = 0) -> list:
    ds = CLRSDataset(algorithm, count, sizes=(5, 9), seed=seed, progress=False)
    return [ds[i] for i in range(len(ds))]


def _pair(name: str) -> tuple[HookedNAR, HookedNAR]:
    cpu = HookedNAR.from_pretrained(name).eval()
    return cpu, copy.deepcopy(cpu).to(DEVICE)


def _on_device(tensor: torch.Tensor) -> bool:
    return tensor.device.type == DEVICE.type


@pytest.mark.parametrize("checkpoint", shipped_checkpoints())
def test_forward_cache_loss_and_predictions_match_the_cpu(checkpoint):
    algorithm = checkpoint_config(resolve_checkpoint(checkpoint))["algorithm"]
    cpu, gpu = _pair(checkpoint)
    graphs = _graphs(algorithm)
    batch, gpu_batch = collate(graphs), collate(graphs).to(DEVICE)
    with torch.no_grad():
        want, want_cache = cpu.run_with_cache(batch)
        got, got_cache = gpu.run_with_cache(gpu_batch)
        assert set(got_cache.keys()) == set(want_cache.keys())
        for kind in ("outputs", "hints"):
            for name, value in getattr(want, kind).items():
                assert _on_device(getattr(got, kind)[name])
                torch.testing.assert_close(getattr(got, kind)[name].cpu(), value, **TOL)
        for hook in ("hook_node_out", "hook_msg"):
            if f"steps.0.{hook}" in want_cache.keys():
                stacked = got_cache.stack(hook)
                assert _on_device(stacked.values)
                torch.testing.assert_close(
                    stacked.values.cpu(), want_cache.stack(hook).values, **TOL
                )
        rows, index = got_cache.flatten()
        want_rows, want_index = want_cache.flatten()
        assert _on_device(rows) and _on_device(index.graph)
        torch.testing.assert_close(rows.cpu(), want_rows, **TOL)
        assert torch.equal(index.node.cpu(), want_index.node)
        resid = got_cache.accumulated_resid()
        torch.testing.assert_close(resid.cpu(), want_cache.accumulated_resid(), **TOL)
        for name, value in cpu.predict(batch, hints=True).items():
            pred = gpu.predict(gpu_batch, hints=True)[name]
            assert _on_device(pred)
            if value.dtype.is_floating_point:
                torch.testing.assert_close(pred.cpu(), value, **TOL)
            else:
                assert (pred.cpu() == value).float().mean() >= 0.99, name
    loss = gpu(gpu_batch, return_type="loss")
    loss.backward()
    torch.testing.assert_close(loss.detach().cpu(), cpu(batch, return_type="loss").detach(), **TOL)
    assert all(p.grad is None or _on_device(p.grad) for p in gpu.parameters())


def test_training_steps_on_the_device_follow_the_cpu():
    """Three optimiser steps from the same weights on the same batch: the same losses."""
    cpu, gpu = _pair("bfs")
    batch = collate(_graphs("bfs", 8))
    losses = {}
    for model, b in ((cpu, batch), (gpu, collate(_graphs("bfs", 8)).to(DEVICE))):
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses[model is gpu] = []
        for _ in range(3):
            opt.zero_grad()
            loss = model(b, return_type="loss")
            loss.backward()
            opt.step()
            losses[model is gpu].append(float(loss.detach()))
    torch.testing.assert_close(
        torch.tensor(losses[True]), torch.tensor(losses[False]), atol=1e-3, rtol=1e-3
    )


def test_the_training_loop_on_the_device_follows_the_cpu(tmp_path):
    """``train(..., device=)`` from the same seed: the same losses and validation, and its
    checkpoints (written from CPU copies) load on the CPU with the weights it trained."""
    from hooked_nar.model import NARConfig
    from hooked_nar.train import train

    cfg = NARConfig("dijkstra", d_model=32, seed=3)
    kw = {"steps": 6, "batch_size": 8, "num_train": 16, "num_val": 8, "eval_every": 3}
    (cpu_model, cpu_hist), (gpu_model, gpu_hist) = (
        train(cfg, **kw, out=tmp_path / name, progress=False, device=dev, randomise_positions=True)
        for name, dev in (("cpu", torch.device("cpu")), ("device", DEVICE))
    )
    torch.testing.assert_close(
        torch.tensor(gpu_hist["loss"]), torch.tensor(cpu_hist["loss"]), atol=2e-3, rtol=2e-3
    )
    assert gpu_hist["val_step"] == cpu_hist["val_step"] == [3, 6]
    assert all(_on_device(p) for p in gpu_model.parameters())
    saved = HookedNAR.from_pretrained(tmp_path / "device" / "best")
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(value, gpu_model.state_dict()[key].cpu())


@pytest.fixture(scope="module")
def bfs_sae():
    """The shipped BFS model on both devices, stores, and a small top-k SAE trained on each."""
    from sae import ActivationStore, train_sae

    cpu, gpu = _pair("bfs")
    train = CLRSDataset("bfs", 48, sizes=(8, 12, 16), seed=0, progress=False)
    stores = {
        "cpu": ActivationStore.from_model(cpu, train, progress=False),
        "gpu": ActivationStore.from_model(gpu, train, progress=False),
    }
    saes = {
        key: train_sae(
            stores[key], "topk", d_sae=64, k=6, steps=150, batch_size=256, progress=False,
            device=str(device),
        )
        for key, device in (("cpu", "cpu"), ("gpu", DEVICE))
    }  # fmt: skip
    return {"cpu": cpu, "gpu": gpu}, stores, saes


def test_activation_stores_and_sae_training_match_the_cpu(bfs_sae):
    models, stores, saes = bfs_sae
    hook = "hook_node_out"
    torch.testing.assert_close(stores["gpu"].rows(hook).cpu(), stores["cpu"].rows(hook), **TOL)
    assert _on_device(saes["gpu"].W_enc)
    # same seed, same rows: the two SAEs reach the same reconstruction quality
    x = stores["cpu"].rows(hook)[:2048]
    with torch.no_grad():
        err = {
            key: float(((sae.decode(sae.encode(x.to(sae.W_enc.device))).cpu() - x) ** 2).mean())
            for key, sae in saes.items()
        }
    assert err["gpu"] == pytest.approx(err["cpu"], rel=0.1), err


def test_a_spliced_sae_on_the_device_is_exact_with_its_error_term(bfs_sae):
    models, _, saes = bfs_sae
    gpu, sae = models["gpu"], saes["gpu"]
    batch = collate(_graphs("bfs")).to(DEVICE)
    with torch.no_grad():
        plain = gpu(batch)
        with gpu.saes(sae, use_error_term=True):
            spliced, cache = gpu.run_with_cache(batch)
        acts = cache.stack("hook_node_out.hook_sae_acts_post").values
    assert _on_device(acts) and acts.shape[-1] == sae.cfg.d_sae
    for name, value in plain.outputs.items():
        torch.testing.assert_close(spliced.outputs[name], value, atol=1e-5, rtol=1e-5)
    assert not any(".hook_sae_" in n for n in gpu.hook_dict)


def test_activation_and_attribution_patching_on_the_device_match_the_cpu():
    from patching import activation_patching, attribution_patching, make_counterfactual

    cpu, gpu = _pair("bfs")
    ds = CLRSDataset("bfs", 3, sizes=(6, 7, 8), seed=5, progress=False)
    cfs = [make_counterfactual(ds[i], "move_source", seed=i) for i in range(3)]
    clean, corrupted = [cf.clean for cf in cfs], [cf.corrupted for cf in cfs]
    for patch in (activation_patching, attribution_patching):
        want = patch(cpu, clean, corrupted)
        got = patch(gpu, clean, corrupted)
        for hook, effect in want.effects.items():
            assert got.effects[hook].device.type == "cpu"  # results come back to the CPU
            torch.testing.assert_close(
                got.effects[hook], effect, atol=1e-3, rtol=1e-3, equal_nan=True
            )


def test_causal_concept_test_on_the_device_matches_the_cpu(bfs_sae):
    from patching.causal import CausalOptions, causal_concept_test

    models, stores, saes = bfs_sae
    options = CausalOptions(
        num_graphs=6,
        ablation_doses=(0.0, 1.0),
        steer_doses=(0.0, 1.0),
        sites_per_graph=1,
        num_null=8,
        num_null_dose=2,
        progress=False,
    )
    data = CLRSDataset("bfs", 6, sizes=(16,), seed=30_000, progress=False)
    sae_cpu = saes["cpu"]
    sae_gpu = copy.deepcopy(sae_cpu).to(DEVICE)
    want = causal_concept_test(
        models["cpu"], sae_cpu, "is_visited", data, store=stores["cpu"], options=options
    )
    got = causal_concept_test(
        models["gpu"], sae_gpu, "is_visited", data, store=stores["cpu"], options=options
    )
    assert got.verdict == want.verdict
    assert got.ablation.diff == pytest.approx(want.ablation.diff, abs=1e-3)


def test_circuit_scores_on_the_device_match_the_cpu():
    from patching.circuits.ablation import AblationRuns
    from patching.circuits.components import Components
    from patching.circuits.discovery import counterfactual_pairs
    from patching.circuits.scoring import eap_ig_scores, eap_scores, exact_scores
    from patching.metrics import pointer_logit_diff

    pairs = counterfactual_pairs("bellman_ford", "perturb_weight", nodes=6, count=3, seed=0)
    clean, corrupted = [cf.clean for cf in pairs], [cf.corrupted for cf in pairs]
    metric = {"m": pointer_logit_diff(collate(clean), collate(corrupted), "pi")}
    scores = {"cpu": [], "gpu": []}
    for key, model in zip(("cpu", "gpu"), _pair("bellman_ford"), strict=True):
        for ablation in ("counterfactual", "mean"):
            runs = AblationRuns(model, clean, metric, ablation, corrupted=corrupted)
            comps = Components(runs.sites, "tied", runs.S)
            scores[key] += [
                eap_scores(runs, comps).mean(),
                eap_ig_scores(runs, comps, 4).mean(),
                exact_scores(runs, comps).mean(),
            ]
    for got, want in zip(scores["gpu"], scores["cpu"], strict=True):
        torch.testing.assert_close(got.cpu(), want, atol=1e-3, rtol=1e-3)
