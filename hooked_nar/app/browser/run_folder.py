"""A study's run folder, re-read the way the study made it: its settings regenerate the same
graphs, :func:`hooked_nar.app.study.sae_eval_indices` picks the same held-out ones, and
:func:`~hooked_nar.app.browser.build.build_browser` checks the number of (node, step) rows
against ``results.json`` before anything is written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hooked_nar.app.browser.build import BROWSER_DIR, BrowserInfo, build_browser


def _study_settings(results: dict) -> dict:
    from hooked_nar.app.study import DEFAULTS, SAE_DEFAULTS, SAE_QUICK

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
    from hooked_nar.app.study import longest_trajectory, sae_eval_indices
    from hooked_nar.data import CLRSDataset

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
