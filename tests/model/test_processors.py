"""Processors: the registry, the memory-bounded triplets, and the discrete processor's states."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch_geometric.utils import to_dense_adj, to_dense_batch

from hooked_nar.algorithms import run
from hooked_nar.data import collate
from hooked_nar.data.convert import trajectory_to_data
from hooked_nar.data.generators import GRAPH_CONVENTIONS, erdos_renyi
from hooked_nar.evaluate import evaluate
from hooked_nar.model import HookedNAR, NARConfig
from hooked_nar.model.hook_layout import LayerHooks
from hooked_nar.model.processors import (
    PROCESSOR_CLASSES,
    PROCESSORS,
    processor_class,
    triplet_gmpnn,
)
from hooked_nar.train_discrete import discrete_config, train_discrete
from tests.model_helpers import small_batch, small_model


def test_registry_names_every_processor_and_rejects_others():
    assert set(PROCESSORS) == {"mpnn", "triplet_gmpnn", "transformer", "discrete"}
    for name, cls in PROCESSOR_CLASSES.items():
        assert processor_class(name) is cls
    with pytest.raises(ValueError, match="processor='gcn'"):
        processor_class("gcn")


def test_each_processor_declares_its_own_hooks():
    names = {p: {n for n, _ in LayerHooks(NARConfig("dijkstra", d_model=16, processor=p))
                 .named_modules()} for p in PROCESSORS}
    assert "hook_triplet_msg" in names["triplet_gmpnn"] and "hook_triplet_msg" not in names["mpnn"]
    assert "attn.hook_pattern" in names["transformer"] and "attn" not in names["mpnn"]
    assert {"hook_state", "hook_state_logits", "attn.hook_pattern", "hook_select"} <= names["discrete"]


def _dense_triplets(proc, z, edge_fts, graph_fts, batch, edge_index):
    """The n^3 formula of Ibarz et al. as it was computed before chunking."""
    zd, node_mask = to_dense_batch(z, batch)
    ed = to_dense_adj(edge_index, batch, edge_fts)
    tri = (proc.tri_i(zd)[:, :, None, None] + proc.tri_j(zd)[:, None, :, None]
           + proc.tri_k(zd)[:, None, None, :] + proc.tri_ij(ed)[:, :, :, None]
           + proc.tri_ik(ed)[:, :, None, :] + proc.tri_jk(ed)[:, None, :, :]
           + proc.tri_graph(graph_fts)[:, None, None, None])
    tri = tri.masked_fill(~node_mask[:, :, None, None, None], float("-inf")).amax(dim=1)
    ptr = batch.new_zeros(batch.max() + 2)
    ptr[1:] = torch.bincount(batch).cumsum(0)
    src, dst = edge_index
    g = batch[src]
    return tri[g, src - ptr[g], dst - ptr[g]]


@pytest.mark.parametrize("chunk", [1 << 22, 50])
def test_chunked_triplets_equal_the_dense_formula(monkeypatch, chunk):
    monkeypatch.setattr(triplet_gmpnn, "TRIPLET_CHUNK", chunk)
    model = small_model("dijkstra", processor="triplet_gmpnn")
    batch, _ = small_batch("dijkstra", num_graphs=3, sizes=(4, 9))
    proc, d = model.processor, model.cfg.d_model
    g = torch.Generator().manual_seed(0)
    z = torch.randn(batch.num_nodes, 2 * d, generator=g)
    e = torch.randn(batch.edge_index.shape[1], d, generator=g)
    gf = torch.randn(batch.num_graphs, d, generator=g)
    args = (z, e, gf, batch.batch, batch.edge_index)
    assert torch.allclose(proc.triplet_max(*args), _dense_triplets(proc, *args), atol=1e-6)


# ------------------------------------------------------------------------- discrete processor
DISCRETE = ["bfs", "dijkstra", "mst_prim", "dfs"]


def _factor_slices(model):
    widths = model.processor.layout.widths
    starts = [sum(widths[:i]) for i in range(len(widths))]
    return [slice(s, s + w) for s, w in zip(starts, widths, strict=True)]


@pytest.mark.parametrize("trained", [False, True])
def test_discrete_hard_states_are_exactly_one_hot(trained):
    model = (HookedNAR.from_pretrained("dijkstra-discrete") if trained
             else small_model("dijkstra", processor="discrete"))
    batch, _ = small_batch("dijkstra", num_graphs=4, sizes=(6, 11))
    _, cache = model.run_with_cache(batch)
    for t in range(cache.num_processor_steps):
        state = cache[f"steps.{t}.hook_state"]
        assert set(state.unique().tolist()) <= {0.0, 1.0}
        for part in _factor_slices(model):
            assert torch.equal(state[:, part].sum(-1), torch.ones(batch.num_nodes))
        pattern = cache[f"steps.{t}.attn.hook_pattern"][:, 0]
        per_node = torch.zeros(batch.num_nodes).index_add_(0, batch.edge_index[1], pattern)
        assert torch.equal(per_node, torch.ones(batch.num_nodes))
        selected = cache[f"steps.{t}.hook_select"]
        assert torch.equal(torch.zeros(batch.num_graphs).index_add_(0, batch.batch, selected),
                           torch.ones(batch.num_graphs))
        embedded = state @ model.processor.embed.weight.T
        assert torch.equal(cache[f"steps.{t}.hook_node_out"], embedded)


def _clrs_graphs(algorithm: str, sizes=(5, 9, 14, 24), seed=0):
    """CLRS-30's sampler: every ordered pair with p (``A *= A.T`` when undirected)."""
    conv = GRAPH_CONVENTIONS[algorithm]
    rng = np.random.default_rng(seed)
    graphs = []
    for n in sizes:
        for p in (0.5, 0.25):
            A = erdos_renyi(n, p if conv.directed else p * p, directed=conv.directed,
                            weighted=conv.weighted, self_loops=p, rng=rng)
            source = int(rng.integers(n))
            graphs.append(run(algorithm, A) if algorithm == "dfs" else run(algorithm, A, source))
    return graphs


@pytest.mark.parametrize("algorithm", DISCRETE)
def test_discrete_checkpoint_executes_the_reference_algorithm_exactly(algorithm):
    model = HookedNAR.from_pretrained(f"{algorithm}-discrete")
    for traj in _clrs_graphs(algorithm):
        data = trajectory_to_data(traj)
        pred = model.predict(collate([data]), hints=True)
        assert torch.equal(pred["pi"], torch.as_tensor(traj.outputs["pi"])), algorithm
        T = int(data.length)
        for field in model.hint_fields:
            got, want = pred[field.name][:, : T - 1], data[field.name][:, 1:T]
            if field.type == "scalar":
                assert torch.allclose(got, want.float(), atol=1e-5), field.name
            else:
                assert torch.equal(got.to(want.dtype), want), field.name


def test_commands_default_to_the_exact_discrete_checkpoint_where_one_is_shipped():
    """``default_checkpoint`` (what ``--algorithm`` alone loads) is the discrete checkpoint,
    exact by the test above, for exactly the algorithms that ship one."""
    from hooked_nar.algorithms import ALGORITHMS
    from hooked_nar.model.checkpoint import default_checkpoint, shipped_checkpoints

    shipped = shipped_checkpoints()
    for algorithm in ALGORITHMS:
        want = f"{algorithm}-discrete" if algorithm in DISCRETE else algorithm
        assert default_checkpoint(algorithm) == want, algorithm
    assert {a for a in ALGORITHMS if default_checkpoint(a) in shipped} >= set(DISCRETE)
    assert {f"{a}-discrete" for a in DISCRETE} <= set(shipped)


def test_discrete_scalar_candidates_are_learned_per_algorithm():
    assert HookedNAR.from_pretrained("dijkstra-discrete").processor.scalar_form() == 0  # d_u + w
    assert HookedNAR.from_pretrained("mst_prim-discrete").processor.scalar_form() == 1  # w_uv


def test_discrete_works_with_an_sae_and_with_interventions():
    from sae_lens import StandardSAE, StandardSAEConfig

    model = HookedNAR.from_pretrained("bfs-discrete")
    batch, _ = small_batch("bfs", num_graphs=4, sizes=(8, 12))
    clean = model(batch)
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=model.cfg.d_model, d_sae=32))
    with model.saes(sae, use_error_term=True):
        spliced = model(batch)
        ablated = model.run_with_hooks(batch, fwd_hooks=[(
            "steps.0.hook_node_out.hook_sae_output", lambda x, hook: torch.zeros_like(x))])
    assert torch.equal(spliced.outputs["pi"], clean.outputs["pi"])
    assert not torch.equal(ablated.outputs["pi"], clean.outputs["pi"])
    assert not model._sae_splices
    # flipping every node's reach bit after step 0 changes what the next step computes
    flip = model.run_with_hooks(batch, fwd_hooks=[(
        "steps.0.hook_state", lambda x, hook: 1 - x)])
    assert not torch.equal(flip.hints["reach_h"][:, 1], clean.hints["reach_h"][:, 1])


# ------------------------------------------------------- dfs: two rounds, two selections, a clock
def _per_group(values, index, size):
    return torch.zeros(size, dtype=values.dtype).index_add_(0, index, values)


def test_dfs_discrete_choices_are_hard_and_one_per_group():
    model = HookedNAR.from_pretrained("dfs-discrete")
    batch, _ = small_batch("dfs", num_graphs=4, sizes=(6, 11))
    _, cache = model.run_with_cache(batch)
    (src, dst), N, B = batch.edge_index, batch.num_nodes, batch.num_graphs
    u_factor = _factor_slices(model)[2]
    for t in range(cache.num_processor_steps):
        state, stamp = cache[f"steps.{t}.hook_state"], cache[f"steps.{t}.hook_stamp"]
        for x in [*(state[:, part] for part in _factor_slices(model)), stamp]:
            assert set(x.unique().tolist()) <= {0.0, 1.0}
            assert torch.equal(x.sum(-1), torch.ones(N))
        # the scan picks one out-edge per node, the pointers one in-edge per node
        scan = cache[f"steps.{t}.attn.hook_pattern"][:, 0]
        assert torch.equal(_per_group(scan, src, N), torch.ones(N))
        edge_state = cache[f"steps.{t}.hook_edge_state"]
        for k in range(2):
            assert torch.equal(_per_group(edge_state[:, k], dst, N), torch.ones(N))
        for name in ("hook_select", "hook_select_v"):
            assert torch.equal(_per_group(cache[f"steps.{t}.{name}"], batch.batch, B),
                               torch.ones(B))
        assert torch.equal(state[:, u_factor][:, 1], cache[f"steps.{t}.hook_select"])
        # at most one push per graph, along a real edge
        pushed = cache[f"steps.{t}.hook_push"][:, 0]
        assert (_per_group(pushed, batch.batch, B) <= 1).all()
        assert torch.equal(cache[f"steps.{t}.hook_node_out"], state @ model.processor.embed.weight.T)


def test_dfs_discrete_hooks_are_exact_and_causal():
    from sae_lens import StandardSAE, StandardSAEConfig

    model = HookedNAR.from_pretrained("dfs-discrete")
    batch, _ = small_batch("dfs", num_graphs=4, sizes=(7, 10))
    clean, cache = model.run_with_cache(batch)
    plain = model(batch)
    identity = model.run_with_hooks(batch, fwd_hooks=[(lambda n: True, lambda x, hook: x)])
    for name in plain.hints:
        assert torch.equal(plain.hints[name], clean.hints[name])
        assert torch.equal(plain.hints[name], identity.hints[name])
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=model.cfg.d_model, d_sae=32))
    with model.saes(sae, use_error_term=True):
        assert torch.equal(model(batch).outputs["pi"], clean.outputs["pi"])
    assert not model._sae_splices
    # no pushes at a step where one happens: the scanning node finishes instead, the tree
    # changes, and nothing computed before that step does
    t = next(t for t in range(1, cache.num_processor_steps) if cache[f"steps.{t}.hook_push"].sum() > 0)
    is_self = (batch.edge_index[0] == batch.edge_index[1]).float()[:, None]
    with model.hooks(fwd_hooks=[(f"steps.{t}.attn.hook_pattern", lambda x, hook: is_self)]):
        blocked, patched = model.run_with_cache(batch)
    assert not torch.equal(blocked.outputs["pi"], clean.outputs["pi"])
    color = model.processor.layout.factors[0].name
    assert not torch.equal(blocked.hints[color][:, t], clean.hints[color][:, t])
    for name in list(cache.cache_dict)[: list(cache.cache_dict).index(f"steps.{t}.attn.hook_pattern")]:
        assert torch.equal(cache[name], patched[name]), name


@pytest.mark.parametrize(("kw", "match"), [
    ({"algorithm": "topological_sort"}, "processor='discrete' supports"),
    ({"num_layers": 2}, "num_layers=1"),
    ({"hint_mode": "none"}, "needs hints"),
])
def test_discrete_rejects_what_it_cannot_run(kw, match):
    with pytest.raises(ValueError, match=match):
        NARConfig(**{"algorithm": "bfs", "processor": "discrete", **kw})


# ------------------------------------------------------- training a discrete model (the CLI)


def test_train_cli_trains_a_resumable_discrete_checkpoint(tmp_path, capsys):
    from hooked_nar.app.cli import main as cli_main

    out = tmp_path / "bfs"
    argv = ["train", "--processor", "discrete", "--algorithm", "bfs", "--out", str(out),
            "--num-train", "48", "--batch-size", "8", "--eval-every", "20"]
    assert cli_main([*argv, "--steps", "40"]) == 0
    model = HookedNAR.from_pretrained(out / "best")
    assert (model.cfg.processor, model.cfg.d_model, model.cfg.teacher_forcing) == ("discrete", 16, 1.0)
    history = json.loads((out / "history.json").read_text())
    assert np.mean(history["loss"][-5:]) < 0.5 * np.mean(history["loss"][:5])
    # the checkpoint computes BFS better than the untrained model of the same config
    data = [trajectory_to_data(t) for t in _clrs_graphs("bfs", sizes=(6, 10))]
    untrained = HookedNAR(discrete_config("bfs"))
    trained, chance = evaluate(model, data), evaluate(untrained, data)
    assert trained["graph_accuracy"] > chance["graph_accuracy"] + 0.2
    # resuming continues the same run (history of 60 steps, not a fresh one)
    assert cli_main([*argv, "--steps", "60"]) == 0
    assert json.loads((out / "history.json").read_text())["step"] == list(range(1, 61))


@pytest.mark.parametrize(("extra", "message"), [
    (["--processor", "nope"], "--processor 'nope' is unknown; valid: mpnn"),
    (["--processor", "discrete", "--stepwise"], "--stepwise does not apply to --processor discrete"),
    (["--processor", "discrete", "--generator", "er"], "--generator does not apply"),
    (["--processor", "discrete", "--algorithm", "topological_sort"],
     "processor='discrete' supports"),
])
def test_train_cli_bad_discrete_arguments_are_one_line_errors(extra, message, tmp_path, capsys,
                                                             monkeypatch):
    import hooked_nar.train
    from hooked_nar.app.cli import main as cli_main

    monkeypatch.setattr(hooked_nar.train, "train", lambda *a, **k: pytest.fail("work started"))
    argv = ["train", "--algorithm", "bfs", "--out", str(tmp_path / "r")]
    for i in range(0, len(extra), 2):
        if extra[i] in argv:
            argv[argv.index(extra[i]) + 1] = extra[i + 1]
        else:
            argv += extra[i : i + 2]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_train_discrete_refuses_a_config_that_does_not_train_stepwise():
    with pytest.raises(ValueError, match="config.processor must be 'discrete'"):
        train_discrete(NARConfig("bfs", d_model=8), steps=1)
    cfg = NARConfig("bfs", d_model=8, processor="discrete", hint_mode="supervised")
    with pytest.raises(ValueError, match="teacher_forcing=1.0"):
        train_discrete(cfg, steps=1)
