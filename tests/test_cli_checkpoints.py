"""Every shipped checkpoint goes through ``hooked-nar study`` and ``hooked-nar patch`` (tiny
settings; bfs at ``--quick`` is covered in test_cli.py), and a categorical hint (dfs's
``color``, [n, S, C]) is drawn as the probability that the concept holds."""

from __future__ import annotations

import json

import pytest
import torch

from hooked_nar.app.cli import main
from hooked_nar.concepts import CONCEPTS
from hooked_nar.model.checkpoint import checkpoint_config, resolve_checkpoint, shipped_checkpoints

TINY_STUDY = [
    "--quick",
    "--num-graphs", "4",
    "--num-nodes", "5",
    "--sae-graphs", "8",
    "--sae-steps", "30",
    "--sae-eval-graphs", "2",
    "--causal-graphs", "2",
    "--num-controls", "2",
    "--quiet",
]  # fmt: skip
TINY_PATCH = ["--num-graphs", "2", "--store-graphs", "3", "--nodes", "5", "--num-controls", "2"]


@pytest.mark.parametrize("checkpoint", [c for c in shipped_checkpoints() if c != "bfs"])
def test_study_and_patch_run_on_every_shipped_checkpoint(checkpoint, tmp_path):
    algorithm = checkpoint_config(resolve_checkpoint(checkpoint))["algorithm"]
    model_args = ["--algorithm", algorithm, "--checkpoint", checkpoint]
    study = tmp_path / "study"
    assert main(["study", *model_args, "-o", str(study), *TINY_STUDY]) == 0
    res = json.loads((study / "results.json").read_text())
    assert res["complete"] and res["stages"] == ["data", "model", "sae", "causal"]
    bool_concepts = [c for c, v in CONCEPTS[algorithm].items() if v.dtype == torch.bool]
    assert [t["concept"] for t in res["causal"]["tests"]] == bool_concepts
    for name in res["causal"]["figures"].values():
        assert (study / name).is_file()

    patch = tmp_path / "patch"
    last = bool_concepts[-1]  # the study ran every concept through the same causal tests
    argv = ["patch", *model_args, "--sae", str(study / "sae"), "-o", str(patch)]
    assert main([*argv, "--concepts", last, *TINY_PATCH]) == 0
    patched = json.loads((patch / "results.json").read_text())
    assert [t["concept"] for t in patched["tests"]] == [last]
    assert all((patch / name).is_file() for name in patched["figures"].values())


def test_categorical_hint_is_drawn_as_the_concepts_probability():
    """dfs ``is_active`` is ``color == grey``: the drawn value is logit P(grey), positive
    exactly where grey is the most likely class with P > 1/2; ``is_visited`` (``color !=
    white``) is logit P(not white)."""
    from types import SimpleNamespace

    from hooked_nar.model import HookedNAR
    from patching.report import _hint_view

    model = HookedNAR.from_pretrained("dfs")
    logits = torch.tensor(
        [[[0.0, 3.0, 0.0]], [[3.0, 0.0, 0.0]], [[0.0, 0.0, 3.0]]]
    )  # [n=3, S=1, C]
    target = torch.nn.functional.one_hot(torch.tensor([[1], [1], [0]]), 3).float()
    p = torch.softmax(logits, -1)

    test = SimpleNamespace(algorithm="dfs", concept="is_active")
    value, predicted, truth, label = _hint_view(model, test, "color", logits, target)
    assert torch.allclose(value, torch.logit(p[..., 1]), atol=1e-5)
    assert predicted.tolist() == [[True], [False], [False]]
    assert truth.tolist() == [[True], [True], [False]]
    assert "is_active" in label

    test = SimpleNamespace(algorithm="dfs", concept="is_visited")
    value, predicted, truth, _ = _hint_view(model, test, "color", logits, target)
    assert torch.allclose(value, torch.logit(1 - p[..., 0]), atol=1e-5)
    assert predicted.tolist() == [[True], [False], [True]]
    assert truth.tolist() == [[True], [True], [False]]


def test_draw_before_after_names_a_row_that_is_not_steps_by_nodes(tmp_path):
    from hooked_nar.data import CLRSDataset
    from patching.plots import draw_before_after

    data = CLRSDataset("dfs", 1, sizes=(5,), seed=0, progress=False)[0]
    with pytest.raises(ValueError, match=r"rows\['clean'\].*\[S, n\]"):
        draw_before_after(data, {"clean": torch.zeros(3, 5, 3)}, tmp_path / "x.png", title="t")
