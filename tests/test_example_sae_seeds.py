"""``examples/sae_seeds.py``: one recipe SAE per training seed on the study's data, judged by
the sweep's targets, with a report, a figure and every number in results.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from sae.sweep import TARGETS

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "sae_seeds.py"


def _load():
    spec = importlib.util.spec_from_file_location("sae_seeds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeds_share_the_data_and_differ_only_in_training(tmp_path):
    module = _load()
    out = tmp_path / "seeds"
    result = module.main(
        ["--algorithm", "bfs", "--seeds", "2", "--steps", "30", "--output", str(out)]
    )
    runs = result["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for r in runs:  # the verdict is the sweep's rule applied to the printed numbers
        expected = (
            r["explained_variance"] >= TARGETS["explained_variance"]
            and r["l0"] <= TARGETS["l0"]
            and min(r["recovered_output"], r["recovered_hint"]) >= TARGETS["recovered"]
        )
        assert r["meets_targets"] == expected
        assert set(r["auroc"]) == {"is_source", "is_visited", "is_frontier"}
    # different seeds train different dictionaries on the same rows
    assert runs[0]["explained_variance"] != runs[1]["explained_variance"]
    assert set(result["probes"]) >= set(runs[0]["auroc"])
    assert json.loads((out / "results.json").read_text())["runs"] == json.loads(json.dumps(runs))
    report = (out / "report.md").read_text()
    assert "python examples/sae_seeds.py --algorithm bfs --seeds 2" in report
    assert "mean ± sd [min]" in report
    assert (out / "auroc_by_seed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
