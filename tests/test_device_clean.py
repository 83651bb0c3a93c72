"""Device-clean helpers: no tensor is created on the default device behind the caller's back.

Without a GPU in the test run, the check makes ``meta`` the default device: a helper that
creates a tensor without ``device=`` then makes a meta tensor, which either fails when mixed
with the (CPU) inputs or shows up in the result. A device-clean helper returns the same
CPU tensors as without the context. (PyG's own batching is outside the check: batches are
built before it.)"""

from __future__ import annotations

import pytest
import torch

from hooked_nar.concept_labels import concept_labels
from hooked_nar.data import CLRSDataset, collate
from hooked_nar.data.loader import node_step_mask, pad_steps, processor_step_mask
from hooked_nar.model import HookedNAR
from hooked_nar.model.cache import row_layout


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif hasattr(x, "__dataclass_fields__"):
        for name in x.__dataclass_fields__:
            yield from _tensors(getattr(x, name))


@pytest.fixture(scope="module")
def setup():
    model = HookedNAR.from_pretrained("dijkstra")
    ds = CLRSDataset("dijkstra", 4, sizes=(5, 7), seed=0, progress=False)
    return model, ds, collate(list(ds))


def _causal_bookkeeping(model, ds, batch, concept="is_settled"):
    """Consequence rows, margins and steering sites of a causal concept test."""
    from patching.causal import concept_target
    from patching.causal.sites import site_candidates, steering_sites
    from patching.causal.targets import consequence_rows, margins

    labels = concept_labels(batch, "computed", [concept])
    target = concept_target(model, concept)
    rows = consequence_rows(batch, labels[concept].bool(), labels["step_mask"], target)
    with torch.no_grad():
        logits = model(batch)
    sites = steering_sites(batch, site_candidates(batch, concept), 2, seed=0)
    return rows, margins(model, logits, batch, target, rows), sites


CASES = {
    "forward": lambda m, ds, b: m(b),
    "loss": lambda m, ds, b: m(b, return_type="loss"),
    "predict": lambda m, ds, b: m.predict(b, hints=True),
    "cache.stack": lambda m, ds, b: m.run_with_cache(b)[1].stack("hook_node_out"),
    "cache.stack edges": lambda m, ds, b: m.run_with_cache(b)[1].stack("hook_msg"),
    "cache.flatten": lambda m, ds, b: m.run_with_cache(b)[1].flatten(),
    "cache.accumulated_resid": lambda m, ds, b: m.run_with_cache(b)[1].accumulated_resid(),
    "row_layout graphs": lambda m, ds, b: row_layout(m, b, b.num_graphs),
    "row_layout pointers": lambda m, ds, b: row_layout(m, b, m.pointer_index(b).shape[1]),
    "concept_labels batch": lambda m, ds, b: concept_labels(b),
    "concept_labels one graph": lambda m, ds, b: concept_labels(ds[0]),
    "processor_step_mask": lambda m, ds, b: processor_step_mask(ds[1]),
    "node_step_mask": lambda m, ds, b: node_step_mask(ds[1]),
    "pad_steps": lambda m, ds, b: pad_steps(ds[0], 12).step_mask,
    "causal rows, margins and sites": _causal_bookkeeping,
}


@pytest.mark.parametrize("case", list(CASES))
def test_helper_creates_no_tensor_on_the_default_device(setup, case):
    model, ds, batch = setup
    reference = list(_tensors(CASES[case](model, ds, batch)))
    with torch.device("meta"):
        result = list(_tensors(CASES[case](model, ds, batch)))
    assert reference and len(result) == len(reference)
    for got, want in zip(result, reference, strict=True):
        assert got.device.type == "cpu"
        assert torch.equal(got, want)


def test_a_batch_on_another_device_than_the_model_is_a_clear_error(setup):
    model, ds, batch = setup
    elsewhere = collate(list(ds), device="meta")
    assert elsewhere.edge_index.device.type == "meta" and batch.edge_index.device.type == "cpu"
    with pytest.raises(ValueError, match=r"batch is on meta but the model on cpu: move it"):
        model(elsewhere)
    assert model.device.type == "cpu"
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())
