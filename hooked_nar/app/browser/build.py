"""Build a feature browser from a model, an SAE and held-out graphs in memory
(:func:`build_browser`, what ``study --browser`` calls at its end; ``hooked-nar browse``
reads a run folder first, :mod:`hooked_nar.app.browser.run_folder`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: The browser's folder inside a run folder (next to report.md).
BROWSER_DIR = "browser"


@dataclass
class BrowserInfo:
    """Where the browser was written, its size in bytes, features, and seconds to build."""

    path: Path
    bytes: int
    features: int
    seconds: float


def build_browser(
    model,
    sae,
    eval_data,
    out: str | os.PathLike,
    results: dict | None = None,
    *,
    graph_ids: list[int] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> BrowserInfo:
    """Gather the data of every feature of ``sae`` on ``model`` over ``eval_data`` and write
    the browser folder ``out``. ``results``: the study's results.json dict (verdicts,
    baselines); ``graph_ids``: the study's index of each graph of ``eval_data``."""
    from hooked_nar.app.browser.gather import gather
    from hooked_nar.app.browser.write import folder_bytes, write_browser

    t0 = time.perf_counter()
    data = gather(model, sae, eval_data, results, graph_ids=graph_ids, seed=seed, progress=progress)
    study_rows = data["meta"]["study_rows"]
    if study_rows is not None and study_rows != data["meta"]["rows"]:
        raise ValueError(
            f"eval_data gives {data['meta']['rows']} (node, step) rows but results.json's SAE "
            f"evaluation used {study_rows}: not the study's held-out graphs"
        )
    path = write_browser(data, out)
    return BrowserInfo(path, folder_bytes(path), len(data["features"]), time.perf_counter() - t0)
