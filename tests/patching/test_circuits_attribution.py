"""The three paths attribution must follow the way an ablation does (patching.circuits.scoring):
gradients through re-encoded hints, message units at their aggregate, the tied hidden carry
cut; each with a case where it must act and one where it must change nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from scipy.stats import spearmanr

from hooked_nar.data import CLRSDataset
from hooked_nar.data.loader import collate
from hooked_nar.model import HookedNAR
from hooked_nar.model.config import NARConfig
from patching.circuits.ablation import AblationRuns
from patching.circuits.components import Components
from patching.circuits.discovery import counterfactual_pairs
from patching.circuits.scoring import eap_ig_scores, eap_scores, exact_scores
from patching.circuits.sites import cut_hidden_carry, site_hooks
from patching.metrics import pointer_logit_diff
from tests.model_helpers import SUPERVISED_BELLMAN_FORD


@pytest.fixture(scope="module")
def pairs():
    return counterfactual_pairs("bellman_ford", "perturb_weight", nodes=6, count=4, seed=0)


def _runs(model, pairs, ablation="counterfactual") -> AblationRuns:
    clean, corrupted = [cf.clean for cf in pairs], [cf.corrupted for cf in pairs]
    metric = pointer_logit_diff(collate(clean), collate(corrupted), "pi")
    return AblationRuns(model, clean, {"m": metric}, ablation, corrupted=corrupted)


def _grad_of_outputs_wrt_first_state(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Output logits and the gradient of a fixed projection of them at the hidden state
    after step 0."""
    seen = {}

    def keep(x, t):
        seen["h0"] = x
        return x

    with torch.enable_grad(), site_hooks(model, {"hook_node_out": keep}, 1):
        out = model(batch).outputs["pi"]
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((w * out).sum(), seen["h0"], allow_unused=True)
    return out.detach(), torch.zeros_like(seen["h0"]) if grad is None else grad


@pytest.mark.parametrize("feedback", ["soft", "hard"])
def test_hint_feedback_gradients_follow_the_reencoded_hints(feedback):
    """The dijkstra checkpoint re-encodes its decoded hints: in the attribution mode the
    gradient at step 0's state also runs through them (and differs), values unchanged."""
    shipped = HookedNAR.from_pretrained("dijkstra")
    model = HookedNAR(replace(shipped.cfg, hint_feedback=feedback)).eval()
    model.load_state_dict(shipped.state_dict())
    batch = collate(list(CLRSDataset("dijkstra", 3, sizes=(6,), seed=0, progress=False)))
    out, detached = _grad_of_outputs_wrt_first_state(model, batch)
    with model.hint_feedback_gradients():
        out_through, through = _grad_of_outputs_wrt_first_state(model, batch)
    assert torch.equal(out, out_through)
    assert (through - detached).norm() > 0.01 * detached.norm() > 0
    assert not model._hint_gradients  # the mode ends with the block


def test_hint_feedback_gradients_change_nothing_without_hint_feedback(pairs):
    model = HookedNAR.from_pretrained(SUPERVISED_BELLMAN_FORD)  # hints supervised, not re-encoded
    batch = collate([cf.clean for cf in pairs])
    out, grad = _grad_of_outputs_wrt_first_state(model, batch)
    with model.hint_feedback_gradients():
        out_mode, grad_mode = _grad_of_outputs_wrt_first_state(model, batch)
    assert torch.equal(out, out_mode) and torch.equal(grad, grad_mode)
    assert grad.abs().max() > 0


def _carry_jacobian(model, batch, cut: bool):
    """h1, gate1 and v^T d h1 / d h0 for a fixed cotangent v."""
    seen = {}

    def keep(name):
        def fn(x, t):
            seen[name, t] = x
            return x

        return fn

    fns = {"hook_node_out": keep("h")}
    if hasattr(model.steps[0], "hook_gate"):
        fns["hook_gate"] = keep("gate")
    with torch.enable_grad(), cut_hidden_carry(model, 2) if cut else torch.enable_grad():
        with site_hooks(model, fns, 2):
            model(batch)
    v = torch.randn(seen["h", 1].shape, generator=torch.Generator().manual_seed(0))
    (g,) = torch.autograd.grad(seen["h", 1], seen["h", 0], v)
    return seen["h", 1].detach(), seen.get(("gate", 1)), v, g


def test_cut_hidden_carry_removes_exactly_the_carry(pairs):
    batch = collate([cf.clean for cf in pairs])
    model = HookedNAR.from_pretrained(SUPERVISED_BELLMAN_FORD)
    h1, gate, v, full = _carry_jacobian(model, batch, cut=False)
    h1_cut, _, _, cut = _carry_jacobian(model, batch, cut=True)
    assert torch.equal(h1, h1_cut)
    torch.testing.assert_close(full - cut, (1 - gate.detach()) * v, atol=1e-5, rtol=1e-5)
    # no gate, no carry: nothing to cut
    plain = HookedNAR(NARConfig("bellman_ford", d_model=16, gated=False)).eval()
    _, _, _, a = _carry_jacobian(plain, batch, cut=False)
    _, _, _, b = _carry_jacobian(plain, batch, cut=True)
    assert torch.equal(a, b)


@pytest.mark.parametrize("ablation", ["counterfactual", "mean", "zero"])
def test_message_aggregate_is_the_same_intervention(pairs, ablation):
    """Replacing every message by its reference gives exactly the aggregate reference."""
    model = HookedNAR.from_pretrained(SUPERVISED_BELLMAN_FORD)
    runs = _runs(model, pairs, ablation)
    site = runs.message_aggregate()
    assert site is not None and site.rows == "node"
    seen = []
    everything = {"hook_msg": torch.ones(1, runs.S, 1, site.width, dtype=torch.bool)}
    with site_hooks(model, {"hook_aggr": lambda x, t: seen.append(x) or x}, runs.S):
        runs.run(everything)
    torch.testing.assert_close(torch.stack(seen), runs.ref_acts["hook_aggr"])


def test_message_aggregate_refused_when_the_aggregate_is_not_the_messages(pairs):
    model = HookedNAR.from_pretrained(SUPERVISED_BELLMAN_FORD)
    model.ensure_steps(16)
    for t in range(16):
        model.add_perma_hook(f"steps.{t}.hook_aggr", lambda x, hook: x + 1.0)
    try:
        runs = _runs(model, pairs)
        assert runs.message_aggregate() is None
        comps = Components(runs.sites, "tied", runs.S)
        assert torch.isfinite(eap_scores(runs, comps).mean()).all()  # at the messages
    finally:
        model.reset_hooks(including_permanent=True)


def test_attribution_ranks_tied_units_as_exact_patching_does(pairs):
    """On bellman_ford's tied units EAP and EAP-IG agree with exact patching (Spearman over
    the units above 1% of the largest exact effect); message units read at the messages
    themselves agree less (max aggregation: the gradient sees only the winning edge)."""
    runs = _runs(HookedNAR.from_pretrained(SUPERVISED_BELLMAN_FORD), pairs)
    comps = Components(runs.sites, "tied", runs.S)
    exact = exact_scores(runs, comps).mean()
    matter = exact.abs() > 0.01 * exact.abs().max()

    def rho(scores, part=slice(None)):
        keep = torch.zeros_like(matter)
        keep[part] = True
        keep &= matter
        return spearmanr(scores.mean()[keep], exact[keep]).statistic

    eap, ig = eap_scores(runs, comps), eap_ig_scores(runs, comps, 4)
    assert rho(eap) > 0.9 and rho(ig) > 0.9
    msg = comps.site_slices()["hook_msg"]
    at_messages = eap_scores(runs, comps, via_aggregate=False)
    assert rho(eap, msg) > rho(at_messages, msg) + 0.05
