"""The ``hooked-nar`` command line: ``study`` end to end, validation, ``python -m``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hooked_nar.app import cli
from hooked_nar.app import study as study_pipeline
from hooked_nar.app.study import STAGES as STAGE_FUNCTIONS
from hooked_nar.data import CLRSDataset, data_to_trajectory
from hooked_nar.model.checkpoint import shipped_checkpoints

STAGES = [f.__name__.removeprefix("stage_") for f in STAGE_FUNCTIONS]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as e:  # main returns codes, but be robust to a stray exit
        return int(e.code or 0)


def _assert_png(path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
        assert im.size[0] > 300 and im.size[1] > 200


@pytest.fixture(scope="module")
def bfs_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "bfs"
    # the continuous model (``--algorithm bfs`` alone would study bfs-discrete, d_model 16)
    assert _run(["study", "--checkpoint", "bfs", "--quick", "--output", str(out), "--quiet"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_study_writes_report_results_and_figures(bfs_study):
    out, res = bfs_study
    report = (out / "report.md").read_text()
    assert res["complete"] and res["stages"] == STAGES
    figures = [*res["data"]["figures"].values(), *res["model"]["figures"].values()]
    assert len(figures) == 2
    figures += [name for name in (out).iterdir() if name.name.startswith(("auroc", "feature_"))]
    assert len(figures) == 2 + 1 + 3  # AUROC heatmap, one feature figure per BFS concept
    for name in figures:
        name = getattr(name, "name", name)
        _assert_png(out / name)
        assert f"]({name})" in report  # embedded by relative path
    assert "## 1. Data" in report and "## 2. Model" in report and "## 3. SAE" in report
    assert "## 4. Causal tests" in report
    for name in res["causal"]["figures"].values():
        _assert_png(out / name)
        assert f"]({name})" in report
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def _quick_study_graphs() -> CLRSDataset:
    """The graphs ``study --quick`` draws for bfs (its data stage's dataset)."""
    return CLRSDataset(
        "bfs",
        study_pipeline.QUICK["num_graphs"],
        sizes=(study_pipeline.QUICK["num_nodes"],),
        seed=0,
        progress=False,
    )


def test_study_sae_is_a_saelens_directory_with_the_reported_figures(bfs_study):
    from sae_lens import SAE

    from sae import ActivationStore, reconstruction
    from sae.evaluate import encode_rows
    from sae.feature_scores import best_features, feature_concept_scores

    out, res = bfs_study
    sae = SAE.load_from_disk(out / "sae")
    assert sae.cfg.metadata.hook_name == "hook_node_out" and sae.cfg.d_in == 128
    ds = _quick_study_graphs()
    from hooked_nar.model import HookedNAR

    keep = sorted(
        set(range(study_pipeline.SAE_QUICK["sae_eval_graphs"])) | {res["data"]["example_graph"]}
    )
    store = ActivationStore.from_model(HookedNAR.from_pretrained("bfs"), ds[keep], progress=False)
    rec = reconstruction(sae, store.rows())
    reported = res["sae"]["evaluation"]["reconstruction"]
    assert rec["explained_variance"] == pytest.approx(reported["explained_variance"], abs=1e-5)
    rows, _, labels = store.for_analysis()
    best = best_features(feature_concept_scores(encode_rows(sae, rows)[0], labels))
    for concept, b in res["sae"]["best"].items():
        assert best[concept]["feature"] == b["feature"]


def test_study_causal_tests_use_the_sae_stage_features(bfs_study):
    from patching.causal import VERDICTS

    out, res = bfs_study
    tests = res["causal"]["tests"]
    assert [t["concept"] for t in tests] == ["is_source", "is_visited", "is_frontier"]
    for t in tests:
        # the unit is the concept's feature group, which holds the SAE stage's best feature
        assert res["sae"]["best"][t["concept"]]["feature"] in t["unit"]["features"]
        assert t["verdict"] in VERDICTS
        # quick mode has too few null units for Holm: nothing can be called causal
        assert t["verdict"] == "inconclusive" or t["ablation_verdict"] != "causal"
        assert t["settings"]["num_null_per_kind"] == study_pipeline.CAUSAL_QUICK["num_null"]
        lo, hi = t["ablation"]["effect_ci"]
        assert lo <= t["ablation"]["effect"] <= hi


def test_patch_subcommand_on_the_study_sae(bfs_study, tmp_path):
    out, res = bfs_study
    argv = [
        "patch",
        "--checkpoint",
        "bfs",
        "--sae",
        str(out / "sae"),
        "--concepts",
        "is_visited",
        "--num-graphs",
        "4",
        "--store-graphs",
        "4",
        "--num-null",
        "2",
        "-o",
        str(tmp_path),
    ]
    assert _run(argv) == 0
    patched = json.loads((tmp_path / "results.json").read_text())
    assert [t["concept"] for t in patched["tests"]] == ["is_visited"]
    assert "is_visited" in (tmp_path / "report.md").read_text()
    _assert_png(tmp_path / "causal_effects.png")


def test_train_sae_and_collect_subcommands(tmp_path, capsys):
    argv = [
        "train-sae",
        "--algorithm",
        "bfs",
        "--steps",
        "50",
        "--num-graphs",
        "8",
        "--eval-graphs",
        "4",
        "--output",
        str(tmp_path / "sae"),
    ]
    assert _run(argv) == 0
    res = json.loads((tmp_path / "sae" / "results.json").read_text())
    assert set(res["best"]) == {"is_source", "is_visited", "is_frontier"}
    assert (tmp_path / "sae" / "sae" / "cfg.json").is_file()
    # the saved SAE is accepted by study's --sae check and refused for another algorithm
    bad = [
        "study",
        "--algorithm",
        "dijkstra",
        "--sae",
        str(tmp_path / "sae" / "sae"),
        "--output",
        str(tmp_path / "x"),
    ]
    capsys.readouterr()
    assert _run(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sae" in err[0]
    assert (
        _run(
            [
                "collect",
                "--checkpoint",
                "bfs",
                "--num-graphs",
                "3",
                "--output",
                str(tmp_path / "acts"),
            ]
        )
        == 0
    )
    from sae import ActivationStore

    store = ActivationStore.load(tmp_path / "acts")
    assert len(store) > 0 and store.hooks == ["hook_node_out"]


def test_study_data_statistics_are_the_datasets(bfs_study):
    _, res = bfs_study
    ds = _quick_study_graphs()
    trajs = [data_to_trajectory(d) for d in ds]
    data = res["data"]
    assert data["num_graphs"] == len(ds)
    lengths = [t.length for t in trajs]
    assert data["trajectory_length"] == {
        "min": min(lengths),
        "mean": pytest.approx(np.mean(lengths)),
        "max": max(lengths),
    }
    arcs = [int(((t.inputs["A"] != 0) & ~np.eye(t.num_nodes, dtype=bool)).sum()) for t in trajs]
    assert data["arcs"]["mean"] == pytest.approx(np.mean(arcs))
    assert data["edges"]["max"] == max(int(d.edge_index.shape[1]) for d in ds)
    reach = np.concatenate([t.hints["reach_h"].ravel() for t in trajs])
    assert data["hints"]["reach_h"]["positive_rate"] == pytest.approx(reach.mean())
    assert data["hints"]["reach_h"]["entries"] == reach.size
    assert data["example_length"] == max(lengths)


def test_study_model_numbers_match_evaluate(bfs_study):
    from hooked_nar.evaluate import evaluate
    from hooked_nar.model import HookedNAR

    out, res = bfs_study
    ds = _quick_study_graphs()
    model = HookedNAR.from_pretrained("bfs")
    direct = json.loads(json.dumps(evaluate(model, ds, batch_size=32)))
    m = res["model"]
    assert m["evaluate"] == direct
    # bfs has one output: its graph accuracy is the whole-graph accuracy; the report shows both
    pi = direct["outputs"]["pi"]
    assert pi["graph_accuracy"] == pytest.approx(direct["graph_accuracy"])
    report = (out / "report.md").read_text()
    assert f"| `pi` | {pi['metric']} | {pi['value']:.3f} | {pi['graph_accuracy']:.3f} |" in report
    # cache: valid rows of hook_node_out = sum over the cached graphs of n * (T - 1)
    cached = [ds[i] for i in range(m["cache"]["graphs"])]
    valid = sum(int(d.num_nodes) * (int(d.length) - 1) for d in cached)
    assert m["cache"]["stack_hook_node_out"]["valid_rows"] == valid == m["cache"]["flatten_rows"]
    assert "hook_node_out" in m["cache"]["per_step_hooks"]
    pred = m["prediction"]
    assert pred["hint"] == "reach_h" and pred["wrong"] == sum(pred["wrong_per_step"])


def test_unknown_algorithm_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(study_pipeline, "run_study", lambda args: pytest.fail("work started"))
    assert _run(["study", "--algorithm", "nope", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--algorithm" in err[0] and "'nope'" in err[0] and "bfs" in err[0]


def test_unwritable_output_exits_2_before_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(study_pipeline, "run_study", lambda args: pytest.fail("work started"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert _run(["study", "--algorithm", "bfs", "--output", str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--output" in err[0]


def test_checkpoint_of_another_algorithm_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(study_pipeline, "run_study", lambda args: pytest.fail("work started"))
    argv = ["study", "--algorithm", "dfs", "--checkpoint", "bfs", "--output", str(tmp_path)]
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0] and "bfs" in err[0]


def test_study_without_checkpoint_writes_data_section(tmp_path):
    out = tmp_path / "bridges"
    assert "bridges" not in shipped_checkpoints()
    assert _run(["study", "--algorithm", "bridges", "--quick", "-o", str(out), "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert res["model"]["checkpoint"] is None and res["complete"]
    assert res["data"]["num_graphs"] == study_pipeline.QUICK["num_graphs"]
    assert "## 1. Data" in report and "No checkpoint is shipped" in report
    _assert_png(out / res["data"]["figures"]["trajectory"])


def test_python_m_help():
    r = subprocess.run(
        [sys.executable, "-m", "hooked_nar", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0
    for command in ("study", "train", "evaluate", "collect", "train-sae", "patch"):
        assert command in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "hooked_nar", "study", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    for flag in (
        "--algorithm",
        "--output",
        "--checkpoint",
        "--num-graphs",
        "--num-nodes",
        "--seed",
        "--quick",
    ):
        assert flag in r.stdout
