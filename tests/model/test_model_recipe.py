"""The training recipe: stepwise training, hint feedback, position randomisation, CLRS graphs,
benchmark evaluation and safe resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from hooked_nar.app.cli import main as cli_main
from hooked_nar.data import collate
from hooked_nar.data.generators import clrs_erdos_renyi, sample_graph
from hooked_nar.evaluate import benchmark, main_output
from hooked_nar.model import HookedNAR, NARConfig
from hooked_nar.model.fields import hard_values, pointer_targets, true_values
from hooked_nar.stats import bootstrap_ci
from hooked_nar.stepwise import step_batch, stepwise_loss
from hooked_nar.train import randomise_positions, train
from tests.model_helpers import small_batch
from tests.reference import load_samples


def _stepwise_model(algorithm: str, **kw) -> HookedNAR:
    cfg = NARConfig(algorithm, d_model=16, hint_mode="encoded", hidden_recurrence=False, **kw)
    return HookedNAR(cfg).train()


@pytest.mark.parametrize("algorithm", ["dijkstra", "dfs", "topological_sort"])
def test_stepwise_loss_equals_recurrent_loss_fed_true_hints(algorithm):
    model = _stepwise_model(algorithm, teacher_forcing=1.0)
    batch, _ = small_batch(algorithm, num_graphs=4, sizes=(3, 6, 9))
    assert len(set(batch.length.tolist())) > 1  # padding is exercised
    recurrent = model(batch, return_type="loss")
    stepwise = stepwise_loss(model, batch)
    torch.testing.assert_close(stepwise, recurrent, rtol=1e-5, atol=1e-5)
    # and the gradients agree
    g1 = torch.autograd.grad(recurrent, list(model.parameters()), allow_unused=True)
    g2 = torch.autograd.grad(stepwise, list(model.parameters()), allow_unused=True)
    for a, b in zip(g1, g2, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _saturated_logits(field, target, batch, pidx):
    """Logits whose decoded (and soft) values are exactly ``target``."""
    if field.type == "scalar":
        return target.float()
    if field.type == "pointer":
        return pointer_targets(target, batch, pidx).float() * 100 - 50
    return target.float() * 100 - 50  # mask, mask_one, categorical one-hot


def test_stepwise_equals_recurrent_when_predictions_equal_the_true_hints():
    """No teacher forcing: the recurrent model re-encodes its own decoded hints; hooks make
    every hint prediction equal the true hint, so it is fed exactly what stepwise feeds."""
    model = _stepwise_model("dijkstra", teacher_forcing=0.0, hint_feedback="hard")
    batch, _ = small_batch("dijkstra", num_graphs=4, sizes=(3, 6, 9))
    fields = {f.name: f for f in model.hint_fields}

    def recurrent_hook(name, t):
        def hook(logits, hook):
            target = batch[name][:, min(t + 1, batch[name].shape[1] - 1)]
            return _saturated_logits(fields[name], target, batch, model.pointer_index(batch))

        return hook

    S = int(batch.length.max()) - 1
    hooks = [
        (f"steps.{t}.decoder.hook_{name}", recurrent_hook(name, t))
        for t in range(S)
        for name in fields
    ]
    with model.hooks(fwd_hooks=hooks):
        recurrent = model(batch, return_type="loss")
    steps, _, _ = step_batch(batch)

    def step_hook(name):
        def hook(logits, hook):
            pidx = model.pointer_index(steps)
            return _saturated_logits(fields[name], steps[name][:, 1], steps, pidx)

        return hook

    with model.hooks(fwd_hooks=[(f"steps.0.decoder.hook_{n}", step_hook(n)) for n in fields]):
        stepwise = stepwise_loss(model, batch)
    torch.testing.assert_close(stepwise, recurrent, rtol=1e-5, atol=1e-5)
    # the fed values really are the true hints
    pidx = model.pointer_index(batch)
    for name, f in fields.items():
        target = batch[name][:, 1]
        fed = hard_values(f, _saturated_logits(f, target, batch, pidx), batch, pidx)
        assert torch.equal(fed, true_values(f, target, batch, pidx))


def test_step_batch_copies_hold_consecutive_hints_and_no_padding():
    graphs = small_batch("dijkstra", 2, sizes=(3,))[1] + small_batch("dijkstra", 2, sizes=(9,))[1]
    batch = collate(graphs)
    steps, copy_step, copy_graph = step_batch(batch)
    real = [max(int(g.length) - 1, 1) for g in graphs]
    assert steps.num_graphs == sum(real) < 4 * (int(batch.length.max()) - 1)
    assert steps.num_nodes == sum(r * g.num_nodes for r, g in zip(real, graphs, strict=True))
    for k in range(steps.num_graphs):
        g, t = int(copy_graph[k]), int(copy_step[k])
        nodes = steps.batch == k
        T = int(graphs[g].length)
        assert t < real[g] and int(nodes.sum()) == graphs[g].num_nodes
        assert torch.equal(steps.mark[nodes, 0], graphs[g].mark[:, min(t, T - 1)])
        assert int(steps.length[k]) == (2 if t + 1 < T else 1)
        if t + 1 < T:
            assert torch.equal(steps.mark[nodes, 1], graphs[g].mark[:, t + 1])
        assert torch.equal(steps.s[nodes], graphs[g].s)
        first = int(steps.ptr[k])
        edges = steps.edge_index[:, steps.batch[steps.edge_index[0]] == k] - first
        assert torch.equal(edges, graphs[g].edge_index)


def test_stepwise_training_needs_a_stateless_encoded_model(tmp_path):
    cfg = NARConfig("bfs", d_model=8)
    with pytest.raises(ValueError, match="hidden_recurrence=False"):
        train(cfg, steps=1, num_train=4, num_val=2, stepwise=True, progress=False)


def test_randomised_positions_keep_the_order_within_each_graph():
    batch, _ = small_batch("dfs", num_graphs=4, sizes=(5, 9))
    before = batch.pos.clone()
    randomise_positions(batch, torch.Generator().manual_seed(0))
    assert not torch.equal(before, batch.pos)
    for g in range(batch.num_graphs):
        p = batch.pos[batch.batch == g]
        assert (p.diff() > 0).all() and p.min() >= 0 and p.max() < 1
        assert torch.equal(p.argsort(), before[batch.batch == g].argsort())


def test_hard_feedback_model_trains_and_runs_stepwise(tmp_path):
    cfg = NARConfig(
        "bfs",
        d_model=16,
        hint_mode="encoded",
        hidden_recurrence=False,
        hint_feedback="hard",
        xavier_scalars=True,
    )
    model, history = train(
        cfg,
        steps=30,
        batch_size=8,
        num_train=48,
        num_val=8,
        eval_every=15,
        stepwise=True,
        randomise_positions=True,
        generator="mixed",
        progress=False,
    )
    assert np.mean(history["loss"][-5:]) < np.mean(history["loss"][:5])
    batch, _ = small_batch("bfs")
    assert model.predict(batch)["pi"].shape == batch.pi.shape


# ---------------------------------------------------------------- CLRS-30's test graphs


def test_clrs_sampler_draws_as_clrs():
    rng = np.random.default_rng(0)
    und = [
        clrs_erdos_renyi(64, 0.5, rng, directed=False, acyclic=False, weighted=True)
        for _ in range(8)
    ]
    for A in und:
        np.testing.assert_array_equal(A, A.T)
    off = np.concatenate([A[~np.eye(64, dtype=bool)] for A in und])
    diag = np.concatenate([np.diag(A) for A in und])
    assert abs((off != 0).mean() - 0.25) < 0.02  # A *= A.T: p ** 2
    assert abs((diag != 0).mean() - 0.5) < 0.1  # the diagonal keeps p
    w = np.concatenate([A[np.triu(A != 0)] for A in und])
    assert w.min() >= np.sqrt(1e-3) and w.max() <= np.sqrt(1 + 1e-3)
    # sqrt(u1 * u2 + 1e-3) with u uniform, not uniform weights
    ref = np.sqrt(rng.uniform(size=w.size) * rng.uniform(size=w.size) + 1e-3)
    assert stats.ks_2samp(w, ref).pvalue > 0.01
    assert stats.ks_2samp(w, rng.uniform(size=w.size)).pvalue < 1e-6
    D = clrs_erdos_renyi(64, 0.5, rng, directed=True, acyclic=True, weighted=False)
    assert not np.diag(D).any() and abs(D.sum() - 0.5 * 64 * 63 / 2) < 150


def test_clrs_sampler_weights_match_the_clrs_reference_graphs():
    ref = np.concatenate(
        [
            np.atleast_2d(s["input"]["A"])[np.triu(np.atleast_2d(s["input"]["A"]) != 0)]
            for s in load_samples("dijkstra")[6:]
        ]
    )
    assert ref.min() >= np.sqrt(1e-3) - 1e-9
    ours = np.concatenate(
        [
            A[np.triu(A != 0)]
            for A in (sample_graph("dijkstra", 16, "clrs", seed=i)[0] for i in range(20))
        ]
    )
    assert stats.ks_2samp(ref, ours).pvalue > 0.01


# ------------------------------------------------------------------ benchmark evaluation


def test_benchmark_scores_an_oracle_perfectly_and_a_random_model_poorly():
    class Oracle(HookedNAR):
        def forward(self, b, return_type="logits"):
            logits = HookedNAR.forward(self, b)
            logits.outputs["pi"] = pointer_targets(b.pi, b, logits.pointer_index).float() * 10
            return logits

    cfg = NARConfig("bfs", d_model=8)
    splits = ["CLRS-30 ER p=0.5 n=64", "in-dist. ER n=16"]
    perfect = benchmark(Oracle(cfg).eval(), num_graphs=4, splits=splits)
    assert all(r["node_accuracy"] == 1.0 and r["graph_accuracy"] == 1.0 for r in perfect.values())
    assert perfect[splits[0]]["field"] == "pi"
    chance = benchmark(HookedNAR(cfg).eval(), num_graphs=4, splits=splits[:1])[splits[0]]
    assert chance["node_accuracy"] < 0.5 and chance["graph_accuracy"] == 0.0
    lo, hi = chance["node_accuracy_ci"]
    assert lo <= chance["node_accuracy"] <= hi


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_more_graphs():
    g = torch.Generator().manual_seed(0)
    few = torch.rand(10, generator=g)
    many = torch.rand(1000, generator=g)
    lo, hi = bootstrap_ci(few)
    assert lo < float(few.mean()) < hi
    lo2, hi2 = bootstrap_ci(many)
    assert hi2 - lo2 < (hi - lo) / 3
    assert bootstrap_ci(torch.ones(5)) == (1.0, 1.0)


def test_main_output_is_the_pointer_output():
    assert main_output(HookedNAR(NARConfig("topological_sort", d_model=8))).name == "topo"


# ------------------------------------------------------------------------------ resuming


def _tiny(tmp_path, **kw):
    cfg = NARConfig("bfs", d_model=8, **{k: kw.pop(k) for k in ("seed",) if k in kw})
    opts = dict(batch_size=4, num_train=16, num_val=4, eval_every=5, progress=False)
    return train(cfg, out=tmp_path / "run", **{**opts, **kw})


def test_resume_never_writes_non_best_weights_to_best(tmp_path):
    _tiny(tmp_path, steps=10)
    run = tmp_path / "run"
    # a best/ unlike last/, with a score no resumed evaluation can beat
    best = HookedNAR.from_pretrained(run / "best")
    with torch.no_grad():
        for p in best.parameters():
            p.add_(1.0)
    best.save_pretrained(run / "best", metadata={"step": 5, "best_validation_score": 2.0})
    state = json.loads((run / "last" / "trainer.json").read_text())
    (run / "last" / "trainer.json").write_text(
        json.dumps({**state, "best_score": 2.0, "best_step": 5})
    )
    _tiny(tmp_path, steps=20)
    after = HookedNAR.from_pretrained(run / "best").state_dict()
    assert all(torch.equal(v, after[k]) for k, v in best.state_dict().items())
    assert json.loads((run / "best" / "config.json").read_text())["metadata"]["step"] == 5


def test_resume_refuses_a_changed_config_or_options(tmp_path):
    _tiny(tmp_path, steps=5)
    with pytest.raises(ValueError, match=r"^cannot resume .*seed=0 \(asked 1\)"):
        _tiny(tmp_path, steps=10, seed=1)
    with pytest.raises(ValueError, match=r"lr=0.001 \(asked 0.01\)"):
        _tiny(tmp_path, steps=10, lr=0.01)
    with pytest.raises(ValueError, match="d_model=8"):
        train(NARConfig("bfs", d_model=16), steps=10, out=tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--lr", "-1"], "--lr must be a positive finite number"),
        (["--algorithm", "quicksort"], "--algorithm 'quicksort' is not a CLRS algorithm"),
        (["--d-model", "0"], "--d-model must be >= 1"),
        (["--seed", "-2"], "--seed must be >= 0"),
    ],
)
def test_train_cli_bad_arguments_are_one_line_errors(args, message, tmp_path, capsys):
    argv = ["--algorithm", "bfs", "--out", str(tmp_path / "r")]
    for i in range(0, len(args), 2):
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i : i + 2]
    assert cli_main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_train_cli_changed_d_model_on_resume_is_one_line(tmp_path, capsys):
    base = ["train", "--algorithm", "bfs", "--out", str(tmp_path / "r"), "--num-train", "8"]
    first = ["--d-model", "8", "--steps", "2", "--eval-every", "2", "--batch-size", "4"]
    assert cli_main(base + first) == 0
    assert cli_main(base + ["--d-model", "16", "--steps", "4", "--batch-size", "4"]) == 2
    assert "d_model=8 (asked 16)" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "bfs", "--num-graphs", "0"], "--num-graphs must be >= 1"),
        (["--checkpoint", "no_such_checkpoint"], "neither a directory nor a shipped checkpoint"),
        (["--checkpoint", "bfs", "--generator", "bogus"], "--generator 'bogus' is unknown"),
        ([], "--checkpoint is required without --table"),
    ],
)
def test_evaluate_cli_bad_arguments_are_one_line_errors(args, message, capsys):
    assert cli_main(["evaluate", *args]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_evaluate_table_cli_prints_both_accuracies(tmp_path, capsys):
    out = tmp_path / "bench.json"
    split = "in-dist. ER n=16"
    cli_main(
        [
            "evaluate",
            "--table",
            "--checkpoint",
            "bfs",
            "--num-graphs",
            "4",
            "--split",
            split,
            "--json",
            str(out),
        ]
    )
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith("| checkpoint | output | in-dist. ER n=16 |")
    assert table[2].startswith("| bfs | pi | ") and table[2].endswith("| 99.73 |")
    res = json.loads(out.read_text())["bfs"]["splits"][split]
    node, graph = (float(x) for x in table[2].split("|")[3].split("/"))
    assert node == pytest.approx(100 * res["node_accuracy"], abs=0.05)
    assert graph == pytest.approx(100 * res["graph_accuracy"], abs=0.5)
