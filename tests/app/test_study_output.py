"""Reusing a study folder, killed runs and directory swaps: a new run leaves nothing of an
earlier one, a stopped run's report says so, temporaries of killed writers are cleaned up,
and folders and files get the permissions the umask gives."""

from __future__ import annotations

import json
import os
import stat

import pytest

from hooked_nar import atomic
from hooked_nar.app import study as study_pipeline
from hooked_nar.app.cli import main

QUICK_DATA_ONLY = ["study", "--algorithm", "bridges", "--quick", "--num-graphs", "4", "-q"]


def _previous_study(out) -> None:
    """What an earlier study and killed writers left in ``out``."""
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps({"algorithm": "bridges", "stages": ["data"]}))
    (out / "report.md").write_text("# old")
    (out / "feature_99_is_old.png").write_bytes(b"old figure")
    (out / "sae").mkdir()
    (out / "sae" / "cfg.json").write_text("{}")
    (out / ".report.md.abcd1234.tmp").write_text("killed mid-write")
    (out / ".sae.k3j4h5g6").mkdir()
    (out / "notes.txt").write_text("the user's own file")


def test_a_new_run_removes_the_previous_runs_files_and_temporaries(tmp_path):
    out = tmp_path / "run"
    _previous_study(out)
    assert main([*QUICK_DATA_ONLY, "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    res = json.loads((out / "results.json").read_text())
    figures = set(res["data"]["figures"].values())
    assert names == {"report.md", "results.json", "notes.txt", *figures}
    assert "old" not in (out / "report.md").read_text()
    assert res["complete"] and res["status"] == "complete"


def test_a_folder_without_a_study_keeps_its_files(tmp_path):
    (tmp_path / "picture.png").write_bytes(b"not ours")
    (tmp_path / "results.json").write_text('{"something": "else"}')
    removed = study_pipeline.clear_previous_run(tmp_path)
    assert removed == [] and (tmp_path / "picture.png").read_bytes() == b"not ours"


def test_the_reused_sae_is_kept(tmp_path):
    _previous_study(tmp_path / "run")
    out = tmp_path / "run"
    study_pipeline.clear_previous_run(out, keep=out / "sae")
    assert (out / "sae" / "cfg.json").is_file() and not (out / "report.md").exists()


def test_a_stopped_run_says_so_and_an_unfinished_one_does_not_say_running(tmp_path, monkeypatch):
    seen = {}

    def interrupted(ctx):
        seen["report"] = (ctx.out / "report.md").read_text()
        seen["results"] = json.loads((ctx.out / "results.json").read_text())
        raise KeyboardInterrupt

    # run_study reads STAGES where it is defined
    monkeypatch.setattr(study_pipeline.run, "STAGES", [study_pipeline.STAGES[0], interrupted])
    out = tmp_path / "run"
    assert main([*QUICK_DATA_ONLY, "-o", str(out)]) == 130
    # while the second stage ran, the report said what finished, not that it is running
    assert "running:" not in seen["report"]
    assert "stages finished when this was written: data" in seen["report"]
    assert "if no `hooked-nar study` is writing this folder now" in seen["report"]
    assert seen["results"]["status"] == "running" and not seen["results"]["complete"]
    report = (out / "report.md").read_text()
    res = json.loads((out / "results.json").read_text())
    assert "Incomplete: stopped during stage interrupted (interrupted)" in report
    assert res["status"] == "stopped" and not res["complete"] and res["stages"] == ["data"]


def test_directory_swap_replaces_in_one_step_and_leaves_no_sibling(tmp_path):
    target = tmp_path / "best"
    atomic.write_directory_atomically(target, lambda d: (d / "w").write_text("one"))
    atomic.write_directory_atomically(target, lambda d: (d / "w").write_text("two"))
    assert (target / "w").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_a_kill_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    """Where no one-step exchange exists, a kill after ``path -> .path.old`` leaves only
    ``.best.old``; the next reader or writer moves it back."""
    target = tmp_path / "best"
    atomic.write_directory_atomically(target, lambda d: (d / "w").write_text("one"))
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_replace, calls = os.replace, []

    def killed_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the renames
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_directory_atomically(target, lambda d: (d / "w").write_text("two"))
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert not target.exists() and (tmp_path / ".best.old").is_dir()

    from hooked_nar.model.checkpoint import resolve_checkpoint

    assert resolve_checkpoint(target) == target and (target / "w").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


@pytest.mark.parametrize(
    "umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)]
)
def test_saved_folders_and_files_follow_the_umask(tmp_path, umask, dir_mode, file_mode):
    from sae_lens import StandardSAE, StandardSAEConfig

    from hooked_nar.model import HookedNAR
    from sae import save_sae

    model = HookedNAR.from_pretrained("bfs")
    previous = os.umask(umask)
    try:
        ckpt = model.save_pretrained(tmp_path / "ckpt")
        sae = save_sae(StandardSAE(StandardSAEConfig(d_in=8, d_sae=16)), tmp_path / "sae")
        report = atomic.write_text_atomic(tmp_path / "report.md", "x")
    finally:
        os.umask(previous)
    for folder in (ckpt, sae):
        assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
        for f in folder.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == file_mode, f
    assert stat.S_IMODE(report.stat().st_mode) == file_mode
