"""Circuit discovery (patching.circuits): scores against exact patching where the answer is
known, planted negatives and positives, faithfulness invariants, hook hygiene."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import scatter

from hooked_nar.data.loader import collate
from hooked_nar.model import HookedNAR
from patching.circuits.ablation import AblationRuns
from patching.circuits.components import Components
from patching.circuits.discovery import counterfactual_pairs
from patching.circuits.faithfulness import faithfulness_curve, jaccard, top_k_circuit
from patching.circuits.masking import learned_mask_scores, refine_top_k
from patching.circuits.scoring import eap_ig_scores, eap_scores, exact_scores
from patching.circuits.sites import UPDATE, processor_sites, site_hooks
from patching.metrics import Metric, node_accuracy, pointer_logit_diff
from tests.model_helpers import SUPERVISED_BELLMAN_FORD


@pytest.fixture(scope="module")
def pairs():
    return counterfactual_pairs("bellman_ford", "perturb_weight", nodes=6, count=4, seed=0)


def _model() -> HookedNAR:
    return HookedNAR.from_pretrained(SUPERVISED_BELLMAN_FORD).eval()


def _runs(model, pairs, ablation="counterfactual", metric=None, task=False) -> AblationRuns:
    clean, corrupted = [cf.clean for cf in pairs], [cf.corrupted for cf in pairs]
    cb, xb = collate(clean), collate(corrupted)
    metrics = {"m": metric or pointer_logit_diff(cb, xb, "pi")}
    if task:
        metrics["node_accuracy"] = node_accuracy("pi", reference=cb)
    return AblationRuns(model, clean, metrics, ablation, corrupted=corrupted)


def test_sites_follow_the_processor():
    model = _model()
    names = [s.name for s in processor_sites(model)]
    assert names == ["hook_msg", UPDATE, "hook_gate", "hook_node_out"]
    assert [s.rows for s in processor_sites(model)] == ["edge", "node", "node", "node"]


def test_hooks_are_removed_after_an_exception(pairs):
    model = _model()
    batch = collate([cf.clean for cf in pairs])
    with pytest.raises(RuntimeError, match="boom"):
        with site_hooks(model, {UPDATE: lambda x, t: x, "hook_msg": lambda x, t: x}, 3):
            raise RuntimeError("boom")
    assert not model.processor.dropout._forward_hooks
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
    before = model(batch).outputs["pi"]
    assert torch.equal(before, model(batch).outputs["pi"])


def test_masks_address_the_right_units():
    model = _model()
    sites = processor_sites(model)
    tied, step = Components(sites, "tied", 3), Components(sites, "step", 3)
    assert len(tied) == 4 * 64 and len(step) == 3 * 4 * 64
    sel = torch.zeros(1, len(tied), dtype=torch.bool)
    sel[0, 64 + 5] = True  # update[5] at every step
    masks = tied.masks(sel)
    assert masks[UPDATE][0, :, 0, 5].all() and int(masks[UPDATE].sum()) == 3
    assert not masks["hook_msg"].any()
    assert tied[64 + 5].label == "update[5]" and step[64 + 7].label == "msg[7]@t1"
    assert step[3 * 64 + 5].label == "update[5]@t0"


def test_eap_equals_exact_where_the_metric_is_linear(pairs):
    """The reach of a hint logit at the last step is linear in that step's hidden state, so
    first-order attribution of the last step's hidden units is exact."""
    model = _model()

    def last_step_d(logits, batch):
        return scatter(logits.hints["d"][:, -1], batch.batch, 0, dim_size=batch.num_graphs)

    for ablation in ("counterfactual", "mean"):
        runs = _runs(model, pairs, ablation, Metric("d logit sum, last step", last_step_d))
        hidden = [s for s in runs.sites if s.name == "hook_node_out"]
        comps = Components(hidden, "step", runs.S)
        last = torch.arange((runs.S - 1) * 64, runs.S * 64)
        exact = exact_scores(runs, comps).mean()[last]
        assert exact.abs().max() > 1e-3
        torch.testing.assert_close(
            eap_scores(runs, comps).mean()[last], exact, atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            eap_ig_scores(runs, comps, 2).mean()[last], exact, atol=1e-4, rtol=1e-4
        )


def _plant_dead_channel(model: HookedNAR, k: int) -> None:
    """Hidden unit k (and so update[k] and gate[k]) keeps varying but nothing reads it."""
    d = model.cfg.d_model
    p = model.processor
    with torch.no_grad():
        for lin in (p.msg_src, p.msg_dst, p.out_self, p.gate_self):
            lin.weight[:, d + k] = 0
        for module in model.decoder.modules():
            if isinstance(module, torch.nn.Linear) and module.in_features == 2 * d:
                module.weight[:, k] = 0


def _plant_mute_message(model: HookedNAR, k: int) -> None:
    """Message unit k keeps varying but the aggregate's readers ignore it."""
    with torch.no_grad():
        model.processor.out_aggr.weight[:, k] = 0
        model.processor.gate_aggr.weight[:, k] = 0


def test_planted_negatives_are_never_in_the_circuit(pairs):
    model = _model()
    dead, mute = 7, 21
    _plant_dead_channel(model, dead)
    _plant_mute_message(model, mute)
    runs = _runs(model, pairs, task=True)
    comps = Components(runs.sites, "tied", runs.S)
    planted = [
        comps.items.index(c)
        for c in comps.items
        if (c.site, c.unit)
        in {("hook_node_out", dead), (UPDATE, dead), ("hook_gate", dead), ("hook_msg", mute)}
    ]
    assert len(planted) == 4
    # active units: their activations differ between clean and counterfactual
    assert runs.delta("hook_node_out")[..., dead].abs().max() > 1e-3
    assert runs.delta("hook_msg")[..., mute].abs().max() > 1e-3
    scores = {
        "exact": exact_scores(runs, comps),
        "eap": eap_scores(runs, comps),
        "eap_ig": eap_ig_scores(runs, comps, 4),
    }
    for name, s in scores.items():
        assert torch.all(s.mean()[planted] == 0), name
        nonzero = int((s.mean() != 0).sum())
        assert nonzero > len(comps) // 2
        for k in (1, len(comps) // 10, len(comps) // 5, nonzero):
            assert not top_k_circuit(s, k)[planted].any(), (name, k)
    # a learned mask drops them (their only gradient is the sparsity term)
    mask = learned_mask_scores(runs, comps, steps=60)
    kept = -mask.mean()
    assert 0 < int((kept > 0.5).sum()) < len(comps) // 2
    assert torch.all(kept[planted] < 0.5)
    # and removing them changes nothing
    sel = torch.zeros(1, len(comps), dtype=torch.bool)
    sel[0, planted] = True
    out = runs.run(comps.masks(sel))
    torch.testing.assert_close(out["m"][0], runs.clean_values["m"])


def test_planted_positive_is_found(pairs):
    """A hidden unit the parent read-out is made to rely on (its query/key weights scaled up)
    must come first for every method."""
    model = _model()
    k = 3
    with torch.no_grad():
        head = model.decoder.heads["pi"]
        head.query.weight[:, k] *= 25
        head.key.weight[:, k] *= 25
    runs = _runs(model, pairs)
    comps = Components(runs.sites, "tied", runs.S)
    target = comps.items.index(comps.items[3 * 64 + k])
    assert comps[target].label == f"hidden[{k}]"
    for s in (exact_scores(runs, comps), eap_scores(runs, comps), eap_ig_scores(runs, comps, 4)):
        assert top_k_circuit(s, 3)[target], s.method
    assert -learned_mask_scores(runs, comps, steps=60).mean()[target] > 0.5


def _reversed(scores):
    """The ranking of ``scores`` upside down (worst first), as Scores."""
    from patching.circuits.scoring import Scores

    per = scores.mean().abs().argsort().argsort().double() + 1  # rank 1 = smallest effect
    return Scores("reversed", scores.components, (-1.0 / per)[None].repeat(4, 1), "m")


def test_refined_circuit_improves_and_never_takes_the_planted_negatives(pairs):
    model = _model()
    _plant_dead_channel(model, 7)
    _plant_mute_message(model, 21)
    runs = _runs(model, pairs, ablation="mean")
    comps = Components(runs.sites, "tied", runs.S)
    label = {c.label: i for i, c in enumerate(comps.items)}
    planted = [label[x] for x in ("hidden[7]", "update[7]", "gate[7]", "msg[21]")]
    exact = exact_scores(runs, comps)
    k = len(comps) // 5

    def loss(scores):
        kept = top_k_circuit(scores, k)
        value = runs.run(comps.masks(~kept[None]))["m"][0]
        return float((value - runs.clean_values["m"]).pow(2).mean()), kept

    # positive: from the worst ranking (planted zeros first), swaps find a better circuit
    bad = _reversed(exact)
    start, before = loss(bad)
    end, after = loss(refine_top_k(runs, bad, k, max_swaps=3))
    assert end < start and int(after.sum()) == k
    assert torch.all(exact.mean()[after & ~before] != 0)  # newcomers all do something
    # negative: from the exact ranking, a unit that changes nothing never comes in
    for swaps in (0, 3):
        assert not top_k_circuit(refine_top_k(runs, exact, k, max_swaps=swaps), k)[planted].any()
    # zero swaps: the ranking's own top-k
    assert torch.equal(top_k_circuit(refine_top_k(runs, bad, k, max_swaps=0), k), before)


def test_faithfulness_invariants(pairs):
    model = _model()
    for ablation in ("counterfactual", "mean"):
        runs = _runs(model, pairs, ablation, task=True)
        comps = Components(runs.sites, "tied", runs.S)
        curve = faithfulness_curve(
            runs, comps, eap_scores(runs, comps), (0.0, 0.5, 1.0), num_random=2
        )
        # the full circuit is the full model; the empty one is everything ablated
        torch.testing.assert_close(
            curve.values["sufficiency"]["m"][-1], runs.clean_values["m"].double()
        )
        torch.testing.assert_close(
            curve.values["necessity"]["m"][0], runs.clean_values["m"].double()
        )
        torch.testing.assert_close(curve.values["sufficiency"]["m"][0], curve.empty["m"])
        torch.testing.assert_close(curve.values["necessity"]["m"][-1], curve.empty["m"])
        suff = curve.faithfulness("sufficiency")["value"]
        assert suff[0] == pytest.approx(0.0) and suff[-1] == pytest.approx(1.0)
        assert curve.kept("sufficiency", "node_accuracy")["value"][-1] == pytest.approx(1.0)
        # a circuit of half the components beats random halves on the metric
        assert suff[1] > curve.faithfulness("sufficiency", "random")["value"][1]
        vs = curve.versus_random("sufficiency")
        assert vs["diff"][1] > 0 and vs["ci"][1][0] <= vs["diff"][1] <= vs["ci"][1][1]
        assert vs["p"][1] == pytest.approx(1 / 3) and vs["diff"][0] == 0 and vs["diff"][2] == 0
    if ablation == "counterfactual":
        assert runs.reference_values is not None


def test_jaccard():
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, ~a) == 0.0
    assert jaccard(a, torch.tensor([1, 0, 1, 0], dtype=torch.bool)) == pytest.approx(1 / 3)


def test_bad_arguments(pairs):
    model = _model()
    with pytest.raises(ValueError, match="ablation"):
        _runs(model, pairs, ablation="resample")
    with pytest.raises(ValueError, match="granularity"):
        Components(processor_sites(model), "layer", 3)
    runs = _runs(model, pairs)
    comps = Components(runs.sites, "tied", runs.S)
    with pytest.raises(ValueError, match="ig_steps"):
        eap_ig_scores(runs, comps, 0)
    with pytest.raises(ValueError, match="selected"):
        comps.masks(torch.zeros(1, 3, dtype=torch.bool))


def test_data_flow_edges_are_the_model_s(pairs):
    """Every declared site edge carries gradient; sites outside it do not."""
    from patching.circuits.components import DATA_FLOW

    model = _model()
    batch = collate([cf.clean for cf in pairs])
    sites = processor_sites(model)
    acts: dict[tuple[str, int], torch.Tensor] = {}

    def keep(name):
        def fn(x, t):
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            acts[(name, t)] = x
            return x

        return fn

    with site_hooks(model, {s.name: keep(s.name) for s in sites}, 3):
        model(batch)
    for src, dst, off, _ in DATA_FLOW:
        grad = torch.autograd.grad(
            acts[(dst, 2)].sum(), acts[(src, 2 - off)], retain_graph=True, allow_unused=True
        )[0]
        assert grad is not None and grad.abs().sum() > 0, (src, dst, off)
    # no path backwards in time or from a later site of the same step
    for src, dst in [("hook_node_out", "hook_msg"), ("hook_gate", UPDATE), (UPDATE, "hook_gate")]:
        grad = torch.autograd.grad(
            acts[(dst, 2)].sum(), acts[(src, 2)], retain_graph=True, allow_unused=True
        )[0]
        assert grad is None or grad.abs().sum() == 0, (src, dst)


def test_every_export_resolves():
    import patching.circuits as circuits

    for name in circuits.__all__:
        assert getattr(circuits, name) is not None, name


def test_same_initial_processor():
    from patching.circuits.report import same_initial_processor

    bf, dj, bfs = (HookedNAR.from_pretrained(a) for a in (SUPERVISED_BELLMAN_FORD, "dijkstra", "bfs"))
    state = torch.random.get_rng_state()
    assert same_initial_processor(bf, dj)  # seed 0, d_model 64 both
    assert not same_initial_processor(bf, bfs)  # d_model 128
    assert torch.equal(state, torch.random.get_rng_state())
