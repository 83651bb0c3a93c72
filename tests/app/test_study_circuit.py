"""``hooked-nar study --circuit``: the circuit stage runs ``hooked-nar circuit --quick`` on the
study's checkpoint, after the causal stage, and records what it measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hooked_nar.app.cli import main

TINY = ["--num-graphs", "4", "--sae-graphs", "4", "--sae-steps", "5", "--sae-eval-graphs", "2"]
TINY += ["--causal-graphs", "2", "--num-null", "1", "--no-progress", "-q"]


def test_circuit_stage_records_the_quick_circuit_run(tmp_path):
    out = tmp_path / "study"
    argv = ["study", "--checkpoint", "bfs", "--quick", "--circuit", *TINY, "-o", str(out)]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["stages"] == ["data", "model", "sae", "causal", "circuit"] and res["complete"]
    circ = res["circuit"]
    # the stage's numbers are those of the circuit run's own results (written beside them)
    own = json.loads((out / "circuit" / "results.json").read_text())
    assert circ["agreement"] == own["agreement"]
    assert circ["full_model"]["node_accuracy"] == own["settings"]["eval_full"]["node_accuracy"]
    assert (
        circ["command"]
        == own["command"]
        == "hooked-nar circuit --algorithm bfs --checkpoint bfs --quick --seed 0"
    )
    # the quick settings of `hooked-nar circuit --quick`, judged at the tied granularity
    assert circ["options"]["num_graphs"] == 4 and circ["options"]["granularities"] == ["tied"]
    for method in ("eap", "eap_ig"):
        assert -1 <= circ["agreement"]["tied"][method]["spearman"] <= 1
    curve = own["curves"]["tied"]["eap_ig"]
    for method, areas in circ["areas"]["tied"].items():
        assert areas == own["curves"]["tied"][method]["areas"]
    # CPR is the area under the circuit's sufficiency curve; the full circuit keeps the model
    sufficiency = curve["curves"]["sufficiency"]["faithfulness"]["value"]
    assert sufficiency[-1] == pytest.approx(1.0)
    cpr = np.trapezoid(sufficiency, curve["fractions"])
    assert circ["areas"]["tied"]["eap_ig"]["cpr_circuit"] == pytest.approx(cpr)
    assert circ["chosen_fraction"]["eap_ig"] in curve["fractions"]
    for fig in circ["figures"].values():
        assert (out / fig).stat().st_size > 0, fig
    assert set(circ["figures"]) >= {"agreement", "faithfulness_tied", "edges"}
    report = (out / "report.md").read_text()
    assert "## 5. Circuits" in report and "(circuit/agreement.png)" in report


def test_on_the_default_discrete_checkpoint_the_circuit_stage_says_why_it_was_skipped(tmp_path):
    """``--algorithm bfs`` studies bfs-discrete (the best shipped bfs), whose hard states
    give EAP nothing to differentiate: the stage says so instead of failing."""
    out = tmp_path / "study"
    assert main(["study", "--algorithm", "bfs", "--quick", "--circuit", *TINY, "-o", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["model"]["checkpoint"].endswith("bfs-discrete") and res["complete"]
    assert res["circuit"]["run"] is False and not (out / "circuit").exists()
    assert "carry no gradient" in (out / "report.md").read_text()


def test_without_a_checkpoint_the_circuit_stage_says_it_was_skipped(tmp_path):
    out = tmp_path / "study"
    argv = ["study", "--algorithm", "bridges", "--quick", "--circuit", "--num-graphs", "4", "-q"]
    assert main([*argv, "-o", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["stages"] == ["data", "model", "sae", "causal", "circuit"]
    assert res["circuit"]["run"] is False and not (out / "circuit").exists()
    assert "Not run: no checkpoint." in (out / "report.md").read_text()
