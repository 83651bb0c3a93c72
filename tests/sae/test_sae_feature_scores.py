"""Feature-concept statistics against hand computations, probes, and SAE evaluation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hooked_nar.data import CLRSDataset
from hooked_nar.model import HookedNAR
from sae import (
    ActivationStore,
    auroc,
    best_f1,
    best_features,
    evaluate_sae,
    feature_concept_scores,
    feature_splitting,
    linear_probe,
    monosemantic_features,
    pearson,
    reconstruction,
    spearman,
    top_examples,
)
from sae.probes import graph_split


def _auroc_by_pairs(s, y):
    pos = [a for a, b in zip(s, y, strict=True) if b]
    neg = [a for a, b in zip(s, y, strict=True) if not b]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def _f1_by_thresholds(s, y):
    best = (0.0, 0.0, 0.0, math.inf)
    for thr in sorted(set(s)):
        pred = [a >= thr for a in s]
        tp = sum(p and b for p, b in zip(pred, y, strict=True))
        fp = sum(p and not b for p, b in zip(pred, y, strict=True))
        fn = sum(b and not p for p, b in zip(pred, y, strict=True))
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best[0]:
            best = (f1, tp / (tp + fp), tp / (tp + fn), thr)
    return best


def test_auroc_and_f1_match_hand_computations():
    s = [0.0, 0.0, 0.3, 0.3, 0.9, 0.0, 1.2, 0.3, 0.0, 2.0]
    y = [False, True, False, True, True, False, True, False, False, True]
    # ties between a positive and a negative count one half: by hand, 20.5 of 25 pairs
    assert _auroc_by_pairs(s, y) == pytest.approx(20.5 / 25)
    acts = torch.tensor([s, [-x for x in s], [1.0] * 10]).T  # feature, its negation, constant
    a = auroc(acts, torch.tensor(y))
    assert a.tolist() == pytest.approx([20.5 / 25, 1 - 20.5 / 25, 0.5])
    f = best_f1(acts, torch.tensor(y))
    # by hand: threshold 0.9 -> predicts 3 rows, all positive: P 1, R 3/5, F1 0.75
    assert _f1_by_thresholds(s, y) == pytest.approx((0.75, 1.0, 0.6, 0.9))
    for j in range(3):
        exp = _f1_by_thresholds(acts[:, j].tolist(), y)
        got = (f["f1"][j], f["precision"][j], f["recall"][j], f["threshold"][j])
        assert [float(v) for v in got] == pytest.approx(list(exp), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # random data with many ties
        s = torch.randint(0, 4, (30,), generator=g).float()
        y = torch.rand(30, generator=g) < 0.4
        assert float(auroc(s, y)[0]) == pytest.approx(_auroc_by_pairs(s.tolist(), y.tolist()))
        assert float(best_f1(s, y)["f1"][0]) == pytest.approx(
            _f1_by_thresholds(s.tolist(), y.tolist())[0]
        )
    assert math.isnan(float(auroc(s, torch.zeros(30, dtype=torch.bool))[0]))


def test_correlations_match_hand_computations():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    v = torch.tensor([2.0, 4.0, 6.0, 8.0, 9.0])
    # Spearman: ranks are identical -> 1; Pearson by the textbook formula
    xm, vm = x - x.mean(), v - v.mean()
    assert float(pearson(x, v)[0]) == pytest.approx(
        float((xm * vm).sum() / (xm.norm() * vm.norm()))
    )
    assert float(spearman(x, v)[0]) == pytest.approx(1.0)
    assert float(
        spearman(torch.tensor([0.0, 0.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0, 4.0]))[0]
    ) == pytest.approx(
        float(pearson(torch.tensor([1.5, 1.5, 3.0, 4.0]), torch.tensor([1.0, 2.0, 3.0, 4.0]))[0])
    )
    assert float(pearson(torch.ones(5), v)[0]) == 0.0


def test_best_and_monosemantic_features_follow_the_rule():
    y1 = torch.tensor([1, 1, 0, 0, 0, 0, 1, 0], dtype=torch.bool)
    y2 = torch.tensor([0, 0, 1, 1, 0, 0, 0, 1], dtype=torch.bool)
    acts = torch.stack(
        [y1.float() * 2, y1.float() + y2.float(), y2.float() * 0.5, torch.zeros(8)], 1
    )
    scores = feature_concept_scores(acts, {"a": y1, "b": y2, "d": torch.arange(8.0)})
    best = best_features(scores)
    assert best["a"]["feature"] == 0 and best["a"]["auroc"] == 1.0 and best["a"]["f1"] == 1.0
    assert best["b"]["feature"] == 2
    rho = [float(spearman(acts[:, j], torch.arange(8.0))[0]) for j in range(4)]
    assert abs(best["d"]["spearman"]) == pytest.approx(max(map(abs, rho)))
    mono = monosemantic_features(scores)
    # feature 1 fires for both concepts; feature 3 never fires; features 0 and 2 read the
    # other concept's negation (AUROC 0.2 / 0.3), which the two-sided rule counts
    assert mono == []
    y3 = torch.tensor([1, 0, 1, 0, 0, 1, 0, 1], dtype=torch.bool)  # f0 AUROC 0.375 for it
    scores = feature_concept_scores(acts[:, :1], {"a": y1, "c": y3})
    assert [(m["feature"], m["concept"]) for m in monosemantic_features(scores)] == [(0, "a")]
    # feature splitting: two features above 0.9 for "a", their decoder cosine
    split = torch.stack([y1.float(), y1.float() * 0.5 + 0.1, torch.zeros(8)], 1)
    scores = feature_concept_scores(split, {"a": y1})
    dec = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    fs = feature_splitting(scores, dec)["a"]
    assert fs["features"] == [0, 1] and fs["cos_max"] == pytest.approx(0.6)


@pytest.fixture(scope="module")
def bfs():
    model = HookedNAR.from_pretrained("bfs")
    data = CLRSDataset("bfs", 48, sizes=(8, 12), seed=7, progress=False)
    return model, data, ActivationStore.from_model(model, data, progress=False)


def test_probe_beats_its_shuffled_control_on_a_real_concept(bfs):
    _, _, store = bfs
    rows, index, labels = store.for_analysis()
    train, test = graph_split(index.graph, 0.3, seed=0)
    assert not set(index.graph[train].tolist()) & set(index.graph[test].tolist())
    r = linear_probe(rows, labels["is_frontier"], index.graph)
    assert r.auroc > 0.95 and r.accuracy > 0.9
    assert abs(r.control_auroc - 0.5) < abs(r.auroc - 0.5) - 0.2


def test_top_examples_and_evaluation_on_a_real_model(bfs):
    from sae_lens import StandardSAE, StandardSAEConfig

    model, data, store = bfs
    rows, index, _ = store.for_analysis()
    # an SAE whose decoder is exact on the data's span: W_enc = I, W_dec = I, no sparsity
    sae = StandardSAE(StandardSAEConfig(d_in=128, d_sae=256, apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_dec.zero_()
        sae.W_enc[:, :128] = torch.eye(128)
        sae.W_enc[:, 128:] = -torch.eye(128)
        sae.W_dec[:128] = torch.eye(128)
        sae.W_dec[128:] = -torch.eye(128)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    rec = reconstruction(sae, rows)
    assert rec["mse"] < 1e-10 and rec["explained_variance"] == pytest.approx(1.0)
    active = (rows != 0).sum(-1).float().mean()
    assert rec["l0"] == pytest.approx(float(active))  # one of +/- fires per nonzero coordinate
    res = evaluate_sae(sae, store, model, data[:16])
    d = res["downstream"]
    assert d["sae"]["output_accuracy"] == d["clean"]["output_accuracy"]
    assert d["ablated"]["output_accuracy"] < d["clean"]["output_accuracy"]
    assert d["recovered"]["output_accuracy"] == pytest.approx(1.0)
    assert d["recovered"]["hint_loss"] == pytest.approx(1.0, abs=1e-4)
    # a lossless SAE recovers exactly 1 on every resample of the graphs
    assert d["recovered_ci"]["output_accuracy"] == pytest.approx((1.0, 1.0))
    acts = sae.encode(rows)
    f = int((acts > 0).sum(0).argmax())
    ex = top_examples(acts, index, feature=f, k=3)
    assert [e["activation"] for e in ex] == sorted(acts[:, f].topk(3).values.tolist(), reverse=True)
    r = int(acts[:, f].argmax())
    assert (ex[0]["graph"], ex[0]["node"], ex[0]["step"]) == (
        int(index.graph[r]),
        int(index.node[r]),
        int(index.step[r]),
    )
    assert ex[0]["is_visited"] == bool(index.concepts["is_visited"][r])


def test_graph_values_and_pictures(bfs, tmp_path):
    from sae.plots import auroc_heatmap, feature_on_graph, graph_values

    _, data, store = bfs
    rows, index, labels = store.for_analysis()
    acts = torch.relu(rows[:, :6])  # any [R, F] activations
    fv, cv, steps = graph_values(index, acts, graph=3, feature=2, concept="is_frontier")
    d = data[3]
    assert steps == list(range(int(d.length) - 1)) and fv.shape == (len(steps), d.num_nodes)
    for i in (index.graph == 3).nonzero().flatten().tolist():
        t, v = int(index.step[i]), int(index.node[i])
        assert fv[t, v] == pytest.approx(float(acts[i, 2]))
        assert cv[t, v] == float(labels["is_frontier"][i])
    scores = feature_concept_scores(acts, labels)
    png = auroc_heatmap(scores, tmp_path / "h.png")
    png2 = feature_on_graph(d, fv, cv, steps, tmp_path / "g.png", 2, "is_frontier")
    for p in (png, png2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_concept_baselines_against_references(bfs):
    from sae.feature_scores import auroc
    from sae.probes import concept_baselines

    model, data, _ = bfs
    small = data[:16]
    b = concept_baselines(model, small, num_directions=64, seed=0)
    assert set(b) == {"is_source", "is_visited", "is_frontier"}
    store = ActivationStore.from_model(model, small, progress=False)
    rows, _, labels = store.for_analysis()
    for c, v in b.items():
        a = auroc(rows, labels[c])
        assert v["best_neuron"] == pytest.approx(float(torch.maximum(a, 1 - a).max()))
        assert 0.5 <= v["random_median"] <= v["random_q95"] <= 1.0
        # the shuffled-label control sits near chance, with its spread
        assert abs(v["probe_control"] - 0.5) < 0.2 and v["probe_control_sd"] > 0
        assert v["probe"] >= 0.95
    # the encoder embedding sees the input s but not the per-step visited state
    assert b["is_source"]["probe_embedding"] > 0.95 > b["is_visited"]["probe_embedding"]


def test_the_shuffled_label_control_is_centred_on_chance():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(600, 8, generator=g)
    graph = torch.arange(600) // 10
    y = rows[:, 0] > 0  # readable
    r = linear_probe(rows, y, graph, num_controls=16)
    assert r.auroc > 0.95 and abs(r.control_auroc - 0.5) < 0.1 and r.control_sd < 0.15
