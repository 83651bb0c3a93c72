"""The README's quick start runs as written and says what it shows."""

import re
from pathlib import Path

import numpy as np


def test_quick_start_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Quick start\n\n```python\n(.*?)```", readme, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README quick start", "exec"), scope)
    np.testing.assert_array_equal(scope["traj"].hints["reach_h"], [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    rows, index = scope["rows"], scope["index"]
    assert rows.shape[0] == len(index) > 0
    assert not scope["patched"].outputs["pi"].equal(scope["logits"].outputs["pi"])


def test_sae_and_patching_block_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## SAEs and patching in short\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # it saves runs/readme/sae
    scope: dict = {}
    exec(compile(code, "README SAE block", "exec"), scope)
    assert (tmp_path / "runs/readme/sae/cfg.json").is_file()
    assert scope["analysis"]["best"]["is_visited"]["auroc"] >= 0.95
    assert "hook_node_out.hook_sae_acts_post" in " ".join(scope["cache"].keys())
    test = scope["test"]  # the default unit: the concept's feature group, best feature in it
    assert test.concept == "is_visited" and scope["feature"] in test.unit["features"]
    assert test.verdict in ("causal", "not causal", "inconclusive")
    assert not scope["ablated"].hints["reach_h"].equal(scope["logits"].hints["reach_h"])
