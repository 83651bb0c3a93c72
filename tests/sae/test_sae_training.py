"""Training through SAELens's SAETrainer, and the SAELens directory format."""

from __future__ import annotations

import json

import pytest
import torch

from hooked_nar.model.cache import RowIndex
from sae import ARCHITECTURES, ActivationStore, load_sae, make_config, save_sae, train_sae


def _store(x: torch.Tensor) -> ActivationStore:
    z = torch.zeros(x.shape[0], dtype=torch.long)
    meta = {
        "hooks": ["hook_node_out"],
        "model_name": "planted",
        "algorithm": "bfs",
        "steps": [0, 1],
        "dataset": {"kind": "synthetic"},
        "model_config": {},
    }
    return ActivationStore({"hook_node_out": x}, RowIndex(z, z, z, {}, {}), meta)


@pytest.fixture(scope="module")
def planted():
    """16384 rows, each a sum of 3 of 48 planted unit directions in 32 dimensions."""
    g = torch.Generator().manual_seed(0)
    d_in, n_feat, rows, active = 32, 48, 16384, 3
    D = torch.randn(n_feat, d_in, generator=g)
    D = D / D.norm(dim=1, keepdim=True)
    which = torch.rand(rows, n_feat, generator=g).argsort(1)[:, :active]
    coef = torch.zeros(rows, n_feat).scatter_(1, which, 1 + torch.rand(rows, active, generator=g))
    return D, _store(coef @ D)


def test_planted_sparse_dictionary_is_recovered(planted):
    D, store = planted
    sae = train_sae(
        store, "batchtopk", d_sae=64, k=3, steps=400, lr=1e-2, batch_size=256, progress=False
    )
    W = sae.W_dec.detach()
    cos = (D @ (W / W.norm(dim=1, keepdim=True)).T).max(1).values  # best match of each direction
    assert cos.mean() > 0.95 and (cos > 0.9).float().mean() >= 0.85, cos
    # BatchTopK is exported as JumpReLU for inference; L0 near k on fresh data
    assert type(sae).__name__ == "JumpReLUSAE"
    l0 = (sae.encode(store.rows()[:2000]) > 0).float().sum(-1).mean()
    assert 2.0 <= float(l0) <= 4.5
    # a random decoder of the same shape matches far worse
    R = torch.randn_like(W)
    assert (D @ (R / R.norm(dim=1, keepdim=True)).T).max(1).values.mean() < 0.7


def test_save_load_round_trip_through_sae_lens(planted, tmp_path):
    from sae_lens import SAE

    _, store = planted
    sae = train_sae(
        store, "batchtopk", d_sae=32, k=2, steps=30, lr=1e-2, batch_size=128, progress=False
    )
    path = save_sae(sae, tmp_path / "sae")
    assert {p.name for p in path.iterdir()} >= {"cfg.json", "sae_weights.safetensors"}
    x = store.rows()[:500]
    for loaded in (SAE.load_from_disk(path), load_sae(path)):
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)))
    meta = load_sae(path).cfg.metadata
    assert (meta.model_name, meta.hook_name, meta.steps, meta.algorithm) == (
        "planted",
        "hook_node_out",
        [0, 1],
        "bfs",
    )
    assert meta.dataset_path == {"kind": "synthetic"}
    assert json.loads((path / "cfg.json").read_text())["architecture"] == "jumprelu"
    with pytest.raises(ValueError, match="not a saved SAE"):
        load_sae(tmp_path)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_architecture_trains_and_exports(planted, architecture):
    _, store = planted
    sae = train_sae(
        store, architecture, d_sae=32, k=4, steps=20, lr=3e-3, batch_size=128, progress=False
    )
    x = store.rows()[:64]
    assert sae.cfg.d_in == 32 and sae.cfg.d_sae == 32
    assert torch.isfinite(sae.decode(sae.encode(x))).all()
    assert sae.cfg.metadata.training_architecture == ARCHITECTURES[architecture]


def test_make_config_validates_and_records_metadata(planted):
    _, store = planted
    cfg = make_config("topk", store=store, d_sae=64, k=5)
    assert (cfg.d_in, cfg.d_sae, cfg.k) == (32, 64, 5)
    assert (
        cfg.metadata.hook_name == "hook_node_out" and cfg.metadata.model_class_name == "HookedNAR"
    )
    assert make_config("batchtopk", d_in=8).d_sae == 64
    with pytest.raises(ValueError, match="architecture="):
        make_config("sparse", d_in=8)
    with pytest.raises(ValueError, match="k must"):
        make_config("batchtopk", d_in=8, d_sae=16, k=17)
    with pytest.raises(ValueError, match="d_in"):
        make_config("standard")
    with pytest.raises(ValueError, match="d_in=16"):
        train_sae(store, config=make_config("topk", d_in=16, d_sae=8, k=2), steps=2, progress=False)


def test_sweep_choice_rule():
    from sae.sweep import choose, meets_targets

    def run(ev, l0, out, hint, covered):
        r = {
            "reconstruction": {"explained_variance": ev, "l0": l0},
            "downstream": {"recovered": {"output_accuracy": out, "hint_accuracy": hint}},
            "concepts_covered": ["c"] * covered,
        }
        r["meets_targets"] = meets_targets(r)
        return r

    runs = [
        run(0.99, 8, 0.97, 0.96, 2),
        run(0.999, 16, 0.99, 0.99, 3),
        run(0.97, 4, 0.96, 0.95, 3),
        run(0.999, 20, 1.0, 1.0, 3),
        run(0.999, 12, 0.94, 1.0, 3),
    ]
    assert [r["meets_targets"] for r in runs] == [True, True, True, False, False]
    assert choose(runs) == 2  # most concepts covered, then sparsest
    misses = [run(0.99, 8, 0.5, 0.99, 3), run(0.96, 12, 0.9, 0.92, 0), run(0.99, 30, 1, 1, 3)]
    assert choose(misses) == 1  # the best worse-of-two recovery among L0 <= 16, EV >= 0.95
    misses = [run(0.9, 8, 0.5, 0.5, 3), run(0.93, 12, 0.5, 0.5, 0), run(0.99, 30, 1, 1, 3)]
    assert choose(misses) == 1  # else the best explained variance with L0 <= 16


def test_sweep_table_puts_every_value_under_its_own_column():
    """The sweep table of ``train-sae --sweep`` once left out the concepts cell, so "meets
    targets" showed under "concepts at AUROC >= 0.95" and the seconds under "meets targets"."""
    from sae.report import _sweep_table

    run = {
        "architecture": "topk",
        "d_sae": 64,
        "k": 8,
        "options": {},
        "reconstruction": {"l0": 7.5, "explained_variance": 0.97, "frac_dead": 0.25},
        "downstream": {
            "recovered": {"output_accuracy": 0.96, "hint_accuracy": 0.98, "hint_loss": 0.9}
        },
        "concepts_covered": ["is_visited", "is_frontier"],
        "meets_targets": True,
        "train_seconds": 12.0,
    }
    header, _, row = _sweep_table([run])
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    table = dict(zip(cells(header), cells(row), strict=True))
    assert table["concepts at AUROC >= 0.95"] == "is_visited, is_frontier"
    assert table["meets targets"] == "yes" and table["train s"] == "12.0"
    assert table["dead (fraction)"] == "0.25"


def test_layer_norm_topk_trains_and_is_scale_equivariant(planted):
    # SAELens's top-k auxiliary loss refuses per-row normalisation once features die;
    # train_sae then counts no feature as dead. The exported SAE cannot amplify its input.
    _, store = planted
    sae = train_sae(
        store,
        "topk",
        d_sae=64,
        k=3,
        steps=60,
        lr=1e-2,
        batch_size=256,
        normalize_activations="layer_norm",
        progress=False,
    )
    assert sae.cfg.normalize_activations == "layer_norm"
    x = store.rows()[:256]
    assert torch.allclose(sae.decode(sae.encode(5 * x)), 5 * sae.decode(sae.encode(x)), atol=1e-4)


def test_report_does_not_say_no_feature_reads_a_concept_its_negation_feature_reads():
    """Dijkstra's study read `is_settled` at 0.944 by its best feature and at 0.992 by a
    feature of "not settled", yet the report said no single feature captures it."""
    from sae.report import _probe_only_text

    best = {
        "is_settled": {"auroc": 0.944, "anti_auroc": 0.992},
        "is_current": {"auroc": 0.833, "anti_auroc": 0.806},
    }
    text = _probe_only_text(["is_settled", "is_current"], best)
    missing, negated = text.split(" Read by a single feature of their negation only")
    assert "`is_current`" in missing and "is_settled" not in missing
    assert "`is_settled`" in negated and "is_current" not in negated
    assert _probe_only_text(["is_current"], best).count("`") == 2  # no negation sentence
    assert _probe_only_text([], best).endswith(": none.")


def test_hint_loss_of_a_processor_with_its_own_loss_is_that_loss():
    """The discrete processor's own loss is its stepwise hint loss; subtracting the output
    terms from it made the study report a negative hint loss (-0.30 for bfs-discrete)."""
    from hooked_nar.data import CLRSDataset, collate
    from hooked_nar.model import HookedNAR
    from sae.evaluate import _losses

    model = HookedNAR.from_pretrained("bfs-discrete").eval()
    data = CLRSDataset("bfs", 6, sizes=(8,), seed=0, progress=False)
    with torch.no_grad():
        total, hint = _losses(model, data, batch_size=3)
        batches = [collate([data[i] for i in range(j, j + 3)]) for j in (0, 3)]
        own = [float(model(b).loss) for b in batches]
    assert hint == pytest.approx(sum(own) / 2) and total == pytest.approx(hint)
    assert hint >= 0
