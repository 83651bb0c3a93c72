"""Bad input a new user hits gets a clear one-line error before any long work: weights the
model or float32 cannot hold, study sizes with nothing to study, bad train / evaluate
arguments, and a config key ``from_pretrained`` does not know."""

from __future__ import annotations

import numpy as np
import pytest

from hooked_nar.algorithms import run
from hooked_nar.app import study as study_pipeline
from hooked_nar.app.cli import main
from hooked_nar.data import trajectory_to_data
from hooked_nar.model import HookedNAR


def _graph(n: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = (rng.random((n, n)) < 0.5) * rng.random((n, n))
    A = np.maximum(A, A.T)
    np.fill_diagonal(A, 0)
    return A


@pytest.mark.parametrize(
    "algorithm, scale", [("dijkstra", 1e39), ("bellman_ford", 1e308), ("mst_prim", 1e38)]
)
def test_weights_beyond_float32_are_refused_by_run(algorithm, scale):
    with pytest.raises(ValueError, match=r"beyond float32"):
        run(algorithm, _graph() * scale, 0)
    trajectory = run(algorithm, _graph() * 1e30, 0)  # representable: the data stays finite
    data = trajectory_to_data(trajectory)
    assert all(np.isfinite(v.numpy()).all() for _, v in data.items() if hasattr(v, "numpy"))


def test_predict_refuses_non_finite_logits_instead_of_pointer_minus_one():
    model = HookedNAR.from_pretrained("dijkstra")
    ok = model.predict(trajectory_to_data(run("dijkstra", _graph(), 0)))["pi"]
    assert (ok >= 0).all()
    with pytest.raises(ValueError, match=r"logits of \['pi'\] are not finite.*'A': 9\.9"):
        model.predict(trajectory_to_data(run("dijkstra", _graph() * 1e30, 0)))


def test_from_pretrained_names_an_unknown_config_key():
    with pytest.raises(ValueError, match=r"bogus=1 is not a NARConfig field.*algorithm"):
        HookedNAR.from_pretrained("bfs", bogus=1)
    with pytest.raises(ValueError, match=r"algorithm='bfs', expected 'dfs'"):
        HookedNAR.from_pretrained("bfs", algorithm="dfs")


def _one_line_error(capsys, argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]


@pytest.mark.parametrize(
    "extra, needle",
    [(["--num-nodes", "1"], "--num-nodes must be >= 2"), (["--num-graphs", "1"], "--num-graphs")],
)
def test_study_sizes_with_nothing_to_study_exit_2_before_work(
    extra, needle, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(study_pipeline, "run_study", lambda args: pytest.fail("work started"))
    argv = ["study", "--algorithm", "bfs", "--quick", "-o", str(tmp_path / "o"), *extra]
    _one_line_error(capsys, argv, needle)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--algorithm", "nope"], "--algorithm 'nope'"),
        (["--lr", "-1"], "--lr must be a positive"),
        (["--teacher-forcing", "2"], "--teacher-forcing must be in [0, 1]"),
        (["--eval-every", "0"], "--eval-every must be >= 1"),
        (["--device", "gpu0"], "--device 'gpu0' is not a torch device"),
    ],
)
def test_train_bad_arguments_exit_2_before_work(extra, needle, tmp_path, capsys, monkeypatch):
    import hooked_nar.train

    monkeypatch.setattr(hooked_nar.train, "train", lambda *a, **k: pytest.fail("work started"))
    argv = ["train", "--algorithm", "bfs", "--out", str(tmp_path / "ck"), *extra]
    _one_line_error(capsys, argv, needle)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--checkpoint", "nope"], "--checkpoint 'nope'"),
        (["--checkpoint", "bfs", "--num-graphs", "0"], "--num-graphs must be >= 1"),
        (["--checkpoint", "bfs", "--generator", "x"], "--generator 'x'"),
        ([], "--checkpoint is required"),
    ],
)
def test_evaluate_bad_arguments_exit_2(argv, needle, capsys):
    _one_line_error(capsys, ["evaluate", *argv], needle)
