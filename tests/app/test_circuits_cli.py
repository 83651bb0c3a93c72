"""``hooked-nar circuit`` (hooked_nar/app/commands/circuit.py): the quick mode end to end,
and one-line errors for bad arguments."""

from __future__ import annotations

import json

import pytest

from hooked_nar.app.cli import main


def test_quick_run_writes_a_report(tmp_path, capsys):
    assert (
        main(
            ["circuit", "--algorithm", "bfs", "--quick", "--no-progress", "--output", str(tmp_path)]
        )
        == 0
    )
    out = tmp_path / "bfs"
    for name in (
        "report.md",
        "results.json",
        "agreement.png",
        "faithfulness_tied.png",
        "edges.png",
    ):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    curve = data["curves"]["tied"]["eap_ig"]
    assert curve["fractions"][-1] == 1.0
    assert curve["curves"]["sufficiency"]["faithfulness"]["value"][-1] == pytest.approx(1.0)
    assert curve["curves"]["sufficiency"]["node_accuracy_kept"]["value"][-1] == pytest.approx(1.0)
    assert set(data["agreement"]) == {"tied", "edge"}
    assert -1 <= data["agreement"]["tied"]["eap_ig"]["spearman"] <= 1
    report = (out / "report.md").read_text()
    assert "EAP and EAP-IG against exact patching" in report and "random" in report


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algorithm", "nope"], "--algorithm 'nope' is unknown"),
        (["--algorithm", "mst_prim_x"], "unknown"),
        (["--algorithm", "bfs", "--nodes", "2"], "--nodes must be >= 3"),
        (["--algorithm", "bfs", "dijkstra", "--checkpoint", "bfs"], "exactly one"),
        (["--algorithm", "bfs", "--mask-swaps", "-1"], "--mask-swaps must be >= 0"),
        (["--algorithm", "dijkstra", "--checkpoint", "dijkstra-discrete"], "carry no gradient"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path):
    assert main(["circuit", *argv, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
