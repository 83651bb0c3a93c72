"""Patching metrics give the right values on hand-built logits and agree with predict()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hooked_nar.algorithms import run
from hooked_nar.data import collate, trajectory_to_data
from hooked_nar.model.hooked_nar import NARLogits
from patching.metrics import graph_accuracy, hint_log_prob, node_accuracy, pointer_logit_diff
from tests.model_helpers import small_batch, small_model

# a path 0 - 1 - 2 - 3 plus the chord 0 - 2 (undirected, unweighted)
A = np.zeros((4, 4))
for i, j in [(0, 1), (1, 2), (2, 3), (0, 2)]:
    A[i, j] = A[j, i] = 1.0


def _graph(source: int):
    return trajectory_to_data(run("bfs", A, source))


def _logits(batch, pi_scores=None, reach=None, pi_h=None) -> NARLogits:
    P = batch.edge_index.shape[1]
    S = int(batch.length.max()) - 1
    return NARLogits(
        outputs={"pi": torch.zeros(P) if pi_scores is None else pi_scores},
        hints={
            "reach_h": torch.zeros(batch.num_nodes, S) if reach is None else reach,
            "pi_h": torch.zeros(P, S) if pi_h is None else pi_h,
        },
        pointer_index=batch.edge_index,
        num_processor_steps=S,
    )


def _score(batch, pairs: dict[tuple[int, int], float]) -> torch.Tensor:
    """Pointer scores over the batch's edges: ``pairs[(i, j)]`` (global ids), else 0."""
    ei = batch.edge_index.t().tolist()
    return torch.tensor([pairs.get((i, j), 0.0) for i, j in ei])


def test_pointer_logit_diff_scores_true_minus_counterfactual_parent_where_they_differ():
    clean, corrupt = _graph(0), _graph(3)
    # bfs from 0: pi = [0, 0, 0, 2]; from 3: pi = [2, 2, 3, 3]
    assert clean.pi.tolist() == [0, 0, 0, 2] and corrupt.pi.tolist() == [2, 2, 3, 3]
    batch = collate([clean])
    # node 0: true 0 (score 4) vs cf 2 (score 1) -> 3; node 1: true 0 (2) vs cf 2 (-1) -> 3;
    # node 2: true 0 (0) vs cf 3 (5) -> -5; node 3 agrees (parent 2 vs 3 differ!) -> see below
    scores = _score(batch, {(0, 0): 4, (2, 0): 1, (0, 1): 2, (2, 1): -1, (3, 2): 5, (2, 3): 1})
    metric = pointer_logit_diff(clean, corrupt, "pi")
    # node 3: true parent 2 (score 1) vs cf parent 3 (self, score 0) -> 1
    expected = (3 + 3 - 5 + 1) / 4
    assert metric(_logits(batch, scores), batch).tolist() == pytest.approx([expected])
    only_01 = pointer_logit_diff(clean, corrupt, "pi", nodes=[0, 1])
    assert only_01(_logits(batch, scores), batch).item() == pytest.approx(3.0)
    # the same metric scores K copies of the graph, one value per copy
    big = collate([clean, clean, clean])
    big_scores = scores.repeat(3)
    assert metric(_logits(big, big_scores), big).tolist() == pytest.approx([expected] * 3)


def test_pointer_logit_diff_leaves_out_parents_that_are_no_candidate():
    clean = _graph(0)
    B = A.copy()
    B[0, 2] = B[2, 0] = 0.0  # remove the chord: node 2's parent 0 is no longer a neighbour
    corrupt = trajectory_to_data(run("bfs", B, 0))
    assert corrupt.pi.tolist() == [0, 0, 1, 2]
    # node 2 is the only difference and (0 -> 2) is no edge of the corrupt graph: refused
    with pytest.raises(ValueError, match="no node"):
        pointer_logit_diff(clean, corrupt, "pi")
    with pytest.raises(ValueError, match="candidate"):
        explicit = pointer_logit_diff(clean.pi, corrupt.pi, "pi")  # tensors: no edge check
        batch = collate([corrupt])
        explicit(_logits(batch), batch)


def test_pointer_logit_diff_rejects_bad_arguments():
    clean = _graph(0)
    with pytest.raises(ValueError, match="no node"):
        pointer_logit_diff(clean, clean, "pi")
    with pytest.raises(ValueError, match="field"):
        pointer_logit_diff(clean, _graph(3), "reach")
    with pytest.raises(ValueError, match="hint_step"):
        pointer_logit_diff(clean, _graph(3), "pi_h")
    with pytest.raises(ValueError, match="same node set"):
        pointer_logit_diff(torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1, 1]))


def test_hint_log_prob_of_a_mask_uses_step_t_plus_one_and_only_valid_steps():
    clean = _graph(0)  # reach_h: t0 {0}, t1 {0, 1, 2}, t2 {0, 1, 2, 3}; length 3
    batch = collate([clean])
    S = int(batch.length) - 1
    target = clean.reach_h[:, 1 : S + 1]  # what columns 0..S-1 predict
    L = 3.0
    right = torch.where(target > 0.5, L, -L)
    value = hint_log_prob("reach_h")(_logits(batch, reach=right), batch)
    assert value.item() == pytest.approx(math.log(1 / (1 + math.exp(-L))), rel=1e-6)
    # reading column t against hint t (misaligned by one step) is worse
    wrong = torch.where(clean.reach_h[:, :S] > 0.5, L, -L)
    assert hint_log_prob("reach_h")(_logits(batch, reach=wrong), batch) < value
    # padded steps beyond a graph's length are never scored
    P = np.zeros((5, 5))
    for i in range(4):
        P[i, i + 1] = P[i + 1, i] = 1.0
    short, long_ = (trajectory_to_data(run("bfs", P, s)) for s in (2, 0))
    both = collate([short, long_])
    assert int(both.length[1]) > int(both.length[0])
    S2 = int(both.length.max()) - 1
    reach = torch.zeros(both.num_nodes, S2)
    reach[:5, S2 - 1] = 100.0  # graph 0 has no step S2 - 1: must not count
    v = hint_log_prob("reach_h")(_logits(both, reach=reach), both)
    assert v[0].item() == pytest.approx(math.log(0.5))


def test_hint_log_prob_of_a_pointer_is_the_log_softmax_over_in_edges():
    clean = _graph(0)
    batch = collate([clean])
    value = hint_log_prob("pi")(_logits(batch), batch)  # uniform over each node's candidates
    indeg = torch.bincount(batch.edge_index[1], minlength=4).double()
    assert value.item() == pytest.approx(float((-indeg.log()).mean()))


def test_hint_log_prob_with_a_reference_scores_against_the_reference():
    clean, corrupt = _graph(0), _graph(3)
    batch = collate([corrupt])
    uniform = hint_log_prob("reach_h", reference=clean)(_logits(batch), batch)
    assert uniform.item() == pytest.approx(math.log(0.5))
    S = int(batch.length) - 1
    confident_on_clean = torch.where(clean.reach_h[:, 1:] > 0.5, 5.0, -5.0)
    cols = confident_on_clean[:, :S]
    on_clean = hint_log_prob("reach_h", reference=clean)(_logits(batch, reach=cols), batch)
    own = hint_log_prob("reach_h")(_logits(batch, reach=cols), batch)
    assert on_clean > own


def test_accuracies_count_wrong_nodes_and_whole_graphs():
    clean = _graph(0)  # pi = [0, 0, 0, 2]
    batch = collate([clean])
    right = _score(batch, {(0, 0): 5, (0, 1): 5, (0, 2): 5, (2, 3): 5})
    assert node_accuracy("pi")(_logits(batch, right), batch).item() == 1.0
    assert graph_accuracy("pi")(_logits(batch, right), batch).item() == 1.0
    one_wrong = _score(batch, {(0, 0): 5, (2, 1): 5, (0, 2): 5, (2, 3): 5})
    assert node_accuracy("pi")(_logits(batch, one_wrong), batch).item() == pytest.approx(0.75)
    assert graph_accuracy("pi")(_logits(batch, one_wrong), batch).item() == 0.0
    assert not node_accuracy("pi").differentiable
    with pytest.raises(ValueError, match="field"):
        node_accuracy("nope")(_logits(batch), batch)


def test_node_accuracy_matches_predict_on_a_model():
    model = small_model("dijkstra")
    batch, _ = small_batch("dijkstra", num_graphs=3)
    logits = model(batch)
    pred = model.predict(batch)["pi"]
    acc = node_accuracy("pi")(logits, batch)
    correct = (pred == batch.pi).float()
    for g in range(batch.num_graphs):
        assert acc[g].item() == pytest.approx(correct[batch.batch == g].mean().item())
    with pytest.raises(ValueError, match="atol"):
        node_accuracy("d")(logits, batch)
    assert torch.isfinite(node_accuracy("d", atol=0.1)(logits, batch)).all()
