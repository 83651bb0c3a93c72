"""Losses, decoding, metrics, training and checkpoints of HookedNAR."""

from __future__ import annotations

import json

import pytest
import torch

from hooked_nar.data import collate
from hooked_nar.evaluate import evaluate
from hooked_nar.model import HookedNAR, NARConfig
from hooked_nar.model.fields import algorithm_fields, decode
from tests.model_helpers import small_batch, small_model


def test_padded_steps_never_contribute_to_the_loss():
    model = small_model("dijkstra")
    batch, _ = small_batch("dijkstra", num_graphs=6, sizes=(2, 12))
    loss = model(batch, return_type="loss")
    padded = ~batch.step_mask[batch.batch]  # [N, T]
    assert padded.any()
    noisy = batch.clone()
    noisy.d = torch.where(padded, torch.randn_like(batch.d) * 100, batch.d)
    noisy.mark = torch.where(padded, 1 - batch.mark, batch.mark)
    noisy.pi_h = torch.where(padded, torch.zeros_like(batch.pi_h), batch.pi_h)
    assert torch.equal(model(noisy, return_type="loss"), loss)


def test_loss_of_repeated_graph_equals_loss_of_one_graph():
    model = small_model("bfs")
    _, graphs = small_batch("bfs", num_graphs=1, sizes=(7,))
    one = model(collate(graphs), return_type="loss")
    many = model(collate(graphs * 3), return_type="loss")
    assert torch.allclose(one, many, atol=1e-6)


def test_pointer_decoding_gives_within_graph_parent_indices():
    model = small_model("bfs")
    batch, _ = small_batch("bfs", num_graphs=3, sizes=(6,))
    pidx = model.pointer_index(batch)
    field = next(f for f in algorithm_fields("bfs", "output") if f.name == "pi")
    i, j = pidx
    true_parent = batch.pi + batch.ptr[batch.batch]
    logits = (i == true_parent[j]).float() * 5 + torch.randn(i.shape[0]) * 0.1
    assert torch.equal(decode(field, logits, batch, pidx), batch.pi)
    assert batch.pi.max() < 6  # within-graph indices, not global ones


def test_evaluate_metrics_on_an_oracle():
    """A model whose logits are built from the targets scores perfectly; a flipped one does not."""
    model = small_model("bfs")
    batch, graphs = small_batch("bfs", num_graphs=3, sizes=(6,))

    class Oracle(HookedNAR):
        def forward(self, b, return_type="logits"):
            logits = HookedNAR.forward(self, b)
            i, j = logits.pointer_index
            parent = b.pi + b.ptr[b.batch]
            logits.outputs["pi"] = (i == parent[j]).float() * 10
            S = logits.num_processor_steps
            logits.hints["reach_h"] = (b.reach_h[:, 1 : S + 1] * 2 - 1) * 10
            return logits

    oracle = Oracle(model.cfg)
    res = evaluate(oracle, graphs)
    assert res["outputs"]["pi"]["value"] == 1.0 and res["graph_accuracy"] == 1.0
    assert res["hints"]["reach_h"]["value"] == 1.0
    assert all(v == 1.0 for v in res["hints"]["reach_h"]["per_step"])


def test_save_and_load_round_trip(tmp_path):
    model = small_model("dijkstra", processor="triplet_gmpnn")
    batch, _ = small_batch("dijkstra")
    model.save_pretrained(tmp_path / "ckpt", metadata={"note": "test"})
    loaded = HookedNAR.from_pretrained(tmp_path / "ckpt")
    assert loaded.cfg == model.cfg and loaded.metadata == {"note": "test"}
    assert torch.equal(loaded(batch).outputs["pi"], model(batch).outputs["pi"])
    with pytest.raises(ValueError, match="algorithm"):
        HookedNAR.from_pretrained(tmp_path / "ckpt", algorithm="bfs")


def test_corrupted_or_mismatching_checkpoints_are_clear_errors(tmp_path):
    model = small_model("bfs")
    path = model.save_pretrained(tmp_path / "ckpt")
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="unreadable model.safetensors"):
        HookedNAR.from_pretrained(path)
    path = model.save_pretrained(tmp_path / "ckpt2")
    cfg = json.loads((path / "config.json").read_text())
    cfg["config"]["d_model"] = 32
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match its config"):
        HookedNAR.from_pretrained(path)
    with pytest.raises(ValueError, match="neither a directory nor a shipped checkpoint"):
        HookedNAR.from_pretrained("no_such_checkpoint")


def test_bad_config_and_batch_are_clear_errors():
    with pytest.raises(ValueError, match="processor"):
        NARConfig("bfs", processor="gcn")
    with pytest.raises(ValueError, match="algorithm"):
        NARConfig("quicksort")
    model = small_model("bfs")
    batch, _ = small_batch("dijkstra")
    with pytest.raises(ValueError, match="this model runs 'bfs'"):
        model(batch)


@pytest.mark.parametrize("hint_mode", ["none", "supervised", "encoded"])
def test_training_reduces_the_loss(hint_mode, tmp_path):
    from hooked_nar.train import train

    cfg = NARConfig("bfs", d_model=16, hint_mode=hint_mode, teacher_forcing=0.5)
    model, history = train(cfg, steps=30, batch_size=8, num_train=48, num_val=4, eval_every=15,
                           out=tmp_path / "run", progress=False)
    first, last = sum(history["loss"][:5]) / 5, sum(history["loss"][-5:]) / 5
    assert last < first
    assert (tmp_path / "run" / "learning_curve.png").stat().st_size > 0
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    # resuming a finished run trains no further steps and keeps the history
    _, resumed = train(cfg, steps=30, batch_size=8, num_train=48, num_val=4, eval_every=15,
                       out=tmp_path / "run", progress=False)
    assert resumed["step"] == history["step"]
