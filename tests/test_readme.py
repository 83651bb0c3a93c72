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
