"""Every shipped checkpoint goes through ``hooked-nar study --browser`` (as ``make demo``) and
``hooked-nar patch`` (tiny settings; bfs at ``--quick`` is covered in test_cli.py), and a graph figure names a row that is
not [S, n]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hooked_nar.app.cli import main
from hooked_nar.concept_labels import CONCEPTS
from hooked_nar.model.checkpoint import checkpoint_config, resolve_checkpoint, shipped_checkpoints

TINY_STUDY = [
    "--quick",
    "--num-graphs", "4",
    "--num-nodes", "5",
    "--sae-graphs", "8",
    "--sae-steps", "30",
    "--sae-eval-graphs", "2",
    "--causal-graphs", "2",
    "--num-null", "2",
    "--browser",  # as make demo runs it
    "--quiet",
]  # fmt: skip
TINY_PATCH = ["--num-graphs", "2", "--store-graphs", "3", "--nodes", "5", "--num-null", "2"]


@pytest.mark.parametrize("checkpoint", [c for c in shipped_checkpoints() if c != "bfs"])
def test_study_and_patch_run_on_every_shipped_checkpoint(checkpoint, tmp_path):
    algorithm = checkpoint_config(resolve_checkpoint(checkpoint))["algorithm"]
    model_args = ["--algorithm", algorithm, "--checkpoint", checkpoint]
    study = tmp_path / "study"
    assert main(["study", *model_args, "-o", str(study), *TINY_STUDY]) == 0
    res = json.loads((study / "results.json").read_text())
    assert res["complete"] and res["stages"] == ["data", "model", "sae", "causal", "browser"]
    assert (study / "browser" / "index.html").is_file()
    assert sum(f.stat().st_size for f in (study / "browser" / "data").rglob("*")) > 10_000
    bool_concepts = [c for c, v in CONCEPTS[algorithm].items() if v.dtype == torch.bool]
    assert [t["concept"] for t in res["causal"]["tests"]] == bool_concepts
    for name in res["causal"]["figures"].values():
        assert (study / name).is_file()
    scalars = [c for c, v in CONCEPTS[algorithm].items() if v.dtype != torch.bool]
    report = (study / "report.md").read_text()
    assert report.count("not tested") == (1 if scalars else 0)  # said once
    assert f"Checkpoint `{checkpoint}` (" in report and "pretrained" not in report

    patch = tmp_path / "patch"
    last = bool_concepts[-1]  # the study ran every concept through the same causal tests
    argv = ["patch", *model_args, "--sae", str(study / "sae"), "-o", str(patch)]
    assert main([*argv, "--concepts", last, *TINY_PATCH]) == 0
    patched = json.loads((patch / "results.json").read_text())
    assert [t["concept"] for t in patched["tests"]] == [last]
    assert all((patch / name).is_file() for name in patched["figures"].values())


def test_draw_before_after_names_a_row_that_is_not_steps_by_nodes(tmp_path):
    from hooked_nar.data import CLRSDataset
    from patching.plots import draw_before_after

    data = CLRSDataset("dfs", 1, sizes=(5,), seed=0, progress=False)[0]
    with pytest.raises(ValueError, match=r"rows\['clean'\].*\[S, n\]"):
        draw_before_after(data, {"clean": torch.zeros(3, 5, 3)}, tmp_path / "x.png", title="t")


def test_checkpoint_alone_selects_its_algorithm_and_its_own_run_folder(
    tmp_path, monkeypatch, capsys
):
    """``--checkpoint dijkstra-discrete`` needs no ``--algorithm`` (``make demo CHECKPOINT=...``
    passes none) and writes runs/dijkstra-discrete, not over the continuous model's
    runs/dijkstra; ``--algorithm`` alone loads the algorithm's best checkpoint, the discrete
    one where shipped, and writes under its name."""
    from hooked_nar.app import study as study_pipeline
    from hooked_nar.app.commands import patch as patch_command
    from hooked_nar.app.common import UsageError

    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_study(args):
        seen["study"] = (args.algorithm, args.output, args.checkpoint_source)
        raise UsageError("stop before work")

    monkeypatch.setattr(study_pipeline, "run_study", fake_study)
    assert main(["study", "--checkpoint", "dijkstra-discrete", "-q"]) == 2
    assert seen["study"] == ("dijkstra", Path("runs") / "dijkstra-discrete", "given")
    assert main(["study", "--algorithm", "dijkstra", "-q"]) == 2  # its best: the discrete one
    assert seen["study"] == ("dijkstra", Path("runs") / "dijkstra-discrete", "shipped")
    assert main(["study", "--checkpoint", "dijkstra", "-q"]) == 2  # the continuous one
    assert seen["study"] == ("dijkstra", Path("runs") / "dijkstra", "given")
    assert main(["study", "--algorithm", "bellman_ford", "-q"]) == 2  # no discrete one shipped
    assert seen["study"] == ("bellman_ford", Path("runs") / "bellman_ford", "shipped")

    def fake_load_model(checkpoint, algorithm):
        seen["patch"] = (checkpoint, algorithm)
        raise UsageError("stop before work")

    monkeypatch.setattr(patch_command, "load_model", fake_load_model)
    assert main(["patch", "--checkpoint", "mst_prim-discrete"]) == 2
    assert seen["patch"] == ("mst_prim-discrete", "mst_prim")
    assert main(["patch"]) == 2  # no checkpoint: bfs's best, as documented
    assert seen["patch"] == ("bfs-discrete", "bfs")
    capsys.readouterr()
    assert main(["study", "-q"]) == 2  # neither: one line naming what is missing
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--algorithm is required" in err[0]
