"""Build a feature browser: from objects in memory (:func:`build_browser`, what ``study``
calls at its end) or from a study's run folder (:func:`browse_run`, ``hooked-nar browse``).

A run folder is re-read the way the study made it: its settings regenerate the same graphs,
:func:`hooked_nar.study.sae_eval_indices` picks the same held-out ones, and the number of
(node, step) rows is checked against ``results.json`` before anything is written.
"""

from __future__ import annotations

import json
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


def _study_settings(results: dict) -> dict:
    from hooked_nar.study import DEFAULTS, SAE_DEFAULTS, SAE_QUICK

    s = {k: v for k, v in (results.get("settings") or {}).items() if v is not None}
    sae_preset = SAE_QUICK if s.get("quick") else SAE_DEFAULTS
    defaults = {"generator": "er", "seed": 0, **DEFAULTS, **sae_preset}
    return {**defaults, **s}


def load_run(
    run_dir: str | os.PathLike,
    sae: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
):
    """``(model, sae, eval_data, results, graph_ids, seed)`` of a run folder, the SAE and the
    checkpoint taken from ``sae`` / ``checkpoint`` when given. ValueError for a folder, SAE
    or checkpoint that cannot serve, before any long work."""
    from hooked_nar.model import HookedNAR
    from sae.io import load_sae

    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"run_dir={str(run)!r} is not a folder")
    results_file = run / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if not results and (sae is None or checkpoint is None):
        raise ValueError(
            f"run_dir={str(run)!r} has no results.json; give both sae= and checkpoint="
        )
    sae_dir = Path(sae) if sae is not None else run / "sae"
    if not (sae_dir / "cfg.json").is_file():
        raise ValueError(f"sae={str(sae_dir)!r} is not a SAELens directory (no cfg.json)")
    if checkpoint is None:
        checkpoint = (results.get("settings") or {}).get("checkpoint")
        if checkpoint is None:
            raise ValueError(f"run_dir={str(run)!r} names no checkpoint; give checkpoint=")
    try:
        model = HookedNAR.from_pretrained(str(checkpoint))
    except (ValueError, OSError) as e:
        raise ValueError(f"checkpoint={str(checkpoint)!r} does not load: {e}") from None
    sae_model = load_sae(sae_dir)
    meta = sae_model.cfg.metadata
    if getattr(meta, "hook_name", None) not in (None, "hook_node_out"):
        raise ValueError(f"sae={str(sae_dir)!r} was trained at {meta.hook_name}, not hook_node_out")
    algorithm = results.get("algorithm", model.cfg.algorithm)
    if algorithm != model.cfg.algorithm:
        raise ValueError(
            f"checkpoint={str(checkpoint)!r} is a {model.cfg.algorithm} model; the run is "
            f"{algorithm}"
        )
    if sae_model.cfg.d_in != model.cfg.d_model:
        raise ValueError(
            f"sae={str(sae_dir)!r} has d_in={sae_model.cfg.d_in}; the model's d_model is "
            f"{model.cfg.d_model}"
        )
    eval_data, graph_ids, seed = study_eval_graphs(algorithm, results)
    return model, sae_model, eval_data, results, graph_ids, seed


def study_eval_graphs(algorithm: str, results: dict):
    """``(eval_data, graph_ids, seed)``: the held-out graphs of the study's SAE stage."""
    from hooked_nar.data import CLRSDataset
    from hooked_nar.study import longest_trajectory, sae_eval_indices

    s = _study_settings(results)
    ds = CLRSDataset(
        algorithm,
        s["num_graphs"],
        generator=s["generator"],
        sizes=(s["num_nodes"],),
        seed=s["seed"],
        progress=False,
    )
    example = (results.get("data") or {}).get("example_graph")
    example = longest_trajectory(ds) if example is None else int(example)
    keep = sae_eval_indices(ds, s["sae_eval_graphs"], example)
    return ds[keep], keep, int(s["seed"])


def browse_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    sae: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = False,
) -> BrowserInfo:
    """Write the browser of a study's run folder (default ``run_dir/browser``)."""
    t0 = time.perf_counter()
    model, sae_model, eval_data, results, graph_ids, seed = load_run(run_dir, sae, checkpoint)
    info = build_browser(
        model,
        sae_model,
        eval_data,
        Path(run_dir) / BROWSER_DIR if out is None else out,
        results,
        graph_ids=graph_ids,
        seed=seed,
        progress=progress,
    )
    info.seconds = time.perf_counter() - t0
    return info
