"""``examples/walkthrough.ipynb`` runs top to bottom (quick mode) and shows what it claims."""

from __future__ import annotations

import re
from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "walkthrough.ipynb"


def _text(cell) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs)


def test_walkthrough_notebook_executes_in_quick_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOKED_NAR_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on any failing cell
    out = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    # the cache section: only valid rows, with concept labels
    assert "concepts per row: ['is_source', 'is_visited', 'is_frontier']" in out
    valid = re.search(r"valid \(step, node\) pairs: (\d+)", out)
    flat = re.search(r"flattened valid rows: \((\d+), 128\)", out)
    assert valid and flat and valid.group(1) == flat.group(1)
    # the patch moved a logit, and the SAE found a visited feature
    assert re.search(r"prediction changed: [1-9]", out)
    auroc = re.search(r"is_visited\s+feature\s+\d+\s+AUROC (\d\.\d+)", out)
    assert auroc and float(auroc.group(1)) >= 0.9
    # ablating it lowers the visited logits, and the causal test states a verdict
    logits = re.search(r"clean (-?\d+\.\d+), feature \d+ ablated (-?\d+\.\d+)", out)
    assert logits and float(logits.group(2)) < float(logits.group(1))
    assert re.search(r"bfs is_visited: .* \(AUROC .*verdict: (causal|not causal|inconclusive)", out)
