"""One SAE study of a HookedNAR: collect -> train (or sweep) -> evaluate -> analyse -> pictures.

:func:`sae_study` is what ``hooked-nar train-sae``, ``hooked-nar study`` and
``examples/train_sae.py`` run. Activations are ``hook_node_out`` at every processor step,
valid rows only; training graphs are ER graphs of the training sizes, evaluation graphs are
the caller's held-out ones, and every figure and number is on those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES",
    "SAEStudy",
    "pick_graph",
    "recipe_for",
    "sae_study",
    "train_recipe_sae",
]

#: The single SAE ``study`` trains per algorithm: the choice of the short sweep
#: (``train-sae --sweep``, :data:`sae.sweep.DEFAULT_GRID`) on the shipped checkpoint. Keys
#: are :func:`sae.train_sae` arguments (``steps`` and ``lr`` included); the rest go to the
#: SAELens config. :data:`DEFAULT_RECIPE` serves the other algorithms.
_MATRYOSHKA = {"architecture": "matryoshka", "d_sae": 128, "k": 15, "steps": 2000}
RECIPES: dict[str, dict[str, Any]] = {
    "bfs": {**_MATRYOSHKA, "matryoshka_widths": [16, 128]},
    "dijkstra": {**_MATRYOSHKA, "matryoshka_widths": [16, 128]},
    "mst_prim": {**_MATRYOSHKA, "matryoshka_widths": [32, 128]},
    "dfs": {**_MATRYOSHKA, "matryoshka_widths": [32, 128]},
}
DEFAULT_RECIPE: dict[str, Any] = {**_MATRYOSHKA, "matryoshka_widths": [32, 128]}


def recipe_for(algorithm: str) -> dict[str, Any]:
    """The default SAE settings for ``algorithm`` (a copy)."""
    return dict(RECIPES.get(algorithm, DEFAULT_RECIPE))


def train_recipe_sae(
    store,
    algorithm: str,
    recipe: dict[str, Any] | None = None,
    *,
    steps: int | None = None,
    lr: float | None = None,
    batch_size: int = 512,
    seed: int = 0,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda msg: None,
):
    """Train one SAE of ``recipe`` (default :func:`recipe_for` ``algorithm``) on ``store``.

    ``steps`` / ``lr`` override the recipe's (default 1000 steps at 3e-3). Returns ``(sae,
    settings)`` with ``settings = {"architecture", "d_sae", "k", "options"}``.
    """
    from sae.training import train_sae

    r = recipe_for(algorithm) if recipe is None else dict(recipe)
    arch, d_sae, k = r.pop("architecture"), r.pop("d_sae"), r.pop("k")
    r["steps"] = steps or r.get("steps", 1000)
    r["lr"] = lr or r.get("lr", 3e-3)
    log(f"training a {arch} SAE (d_sae={d_sae}, k={k}) for {r['steps']} steps")
    sae = train_sae(
        store, arch, d_sae=d_sae, k=k, batch_size=batch_size, seed=seed, progress=progress, **r
    )
    return sae, {"architecture": arch, "d_sae": d_sae, "k": k, "options": r}


@dataclass
class SAEStudy:
    """What :func:`sae_study` produced. ``evaluation``: :func:`sae.evaluate_sae`'s dict (plus
    ``meets_targets`` and the SAE's settings); ``analysis``: :func:`sae.analyse_sae`'s dict;
    ``images``: ``{caption: file name}`` of the PNGs written; ``sweep``: the sweep's rows."""

    sae: Any
    config: str
    store: Any
    eval_store: Any
    evaluation: dict
    analysis: dict
    images: dict[str, str] = field(default_factory=dict)
    sweep: list[dict] | None = None
    seconds: float = 0.0

    def summary(self) -> dict:
        """The JSON-ready figures: config, evaluation, best features, coverage, probes."""
        return {
            "config": self.config,
            "evaluation": self.evaluation,
            "best": self.analysis["best"],
            "covered": self.analysis["covered"],
            "monosemantic": self.analysis["monosemantic"],
            "probe_only": self.analysis["probe_only"],
            "probes": {c: p.as_dict() for c, p in self.analysis["probes"].items()},
            "sweep": self.sweep,
            "seconds": self.seconds,
        }


def pick_graph(index, min_steps: int = 3) -> int:
    """A graph of a store's ``RowIndex`` with several steps and about 9 nodes (readable)."""
    best, key = int(index.graph[0]), None
    for g in index.graph.unique().tolist():
        sel = index.graph == g
        steps, nodes = int(index.step[sel].unique().numel()), int(index.node[sel].max()) + 1
        k = (steps >= min_steps, -abs(nodes - 9), min(steps, 8))
        if key is None or k > key:
            best, key = g, k
    return best


def sae_study(
    model,
    train_data,
    eval_data,
    out: str | Path,
    *,
    sae=None,
    sweep: bool = False,
    recipe: dict[str, Any] | None = None,
    steps: int | None = None,
    lr: float | None = None,
    batch_size: int = 512,
    seed: int = 0,
    model_name: str | None = None,
    graph: int | None = None,
    max_figures: int = 8,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> SAEStudy:
    """Train (or take ``sae``), evaluate and analyse an SAE on ``model``'s ``hook_node_out``.

    ``train_data`` / ``eval_data``: CLRSDatasets (``train_data`` unused when ``sae`` is
    given). ``sweep=True`` runs :func:`sae.run_sweep`'s grid and keeps its choice, else one
    SAE of ``recipe`` (default :func:`recipe_for` the model's algorithm). ``steps`` / ``lr``
    override the recipe's (default 1000 steps at 3e-3). Writes the SAE to
    ``out/sae`` (a SAELens directory) and the PNGs (AUROC heatmap; every boolean concept's
    best feature on held-out graph ``graph``, default :func:`pick_graph`) into ``out``.
    """
    from sae.activation_store import ActivationStore
    from sae.evaluate import evaluate_sae
    from sae.io import save_sae
    from sae.plots import auroc_heatmap, feature_on_graph, graph_values
    from sae.report import analyse_sae
    from sae.sweep import DEFAULT_GRID, choose, describe, meets_targets, run_sweep

    t0 = time.perf_counter()
    out = Path(out)
    algorithm = model.cfg.algorithm
    name = model_name or algorithm
    eval_store = ActivationStore.from_model(model, eval_data, model_name=name, progress=progress)
    store, sweep_rows = None, None
    if sae is None:
        store = ActivationStore.from_model(model, train_data, model_name=name, progress=progress)
        log(f"activations: {len(store)} training rows, {len(eval_store)} held-out rows")
        if sweep:
            sweep_rows, saes = run_sweep(
                store,
                model,
                eval_data,
                DEFAULT_GRID,
                steps=steps or 1000,
                lr=lr or 3e-3,
                batch_size=batch_size,
                seed=seed,
                eval_store=eval_store,
                progress=progress,
            )
            chosen = choose(sweep_rows)
            sae, evaluation = saes[chosen], sweep_rows[chosen]
        else:
            sae, options = train_recipe_sae(
                store,
                algorithm,
                recipe,
                steps=steps,
                lr=lr,
                batch_size=batch_size,
                seed=seed,
                progress=progress,
                log=log,
            )
            evaluation = evaluate_sae(sae, eval_store, model, eval_data)
            evaluation.update(options)
    else:
        log(f"evaluating the given SAE on {len(eval_store)} held-out rows")
        evaluation = evaluate_sae(sae, eval_store, model, eval_data)
        opts = {"normalize_activations": sae.cfg.normalize_activations}
        arch = sae.cfg.architecture()
        evaluation.update(
            architecture=arch,
            d_sae=sae.cfg.d_sae,
            k=getattr(sae.cfg, "k", "-"),
            options={k: v for k, v in opts.items() if v != "none"},
        )
    evaluation["meets_targets"] = meets_targets(evaluation)
    config = describe(evaluation)
    save_sae(sae, out / "sae")

    log("concepts: feature x concept scores, probes")
    analysis = analyse_sae(sae, eval_store, seed=seed)
    scores = analysis["scores"]
    images = {"Feature x concept AUROC": "auroc_heatmap.png"}
    auroc_heatmap(scores, out / "auroc_heatmap.png", title=f"{algorithm}: {config}")
    _, index, labels = eval_store.for_analysis()
    graph = pick_graph(index) if graph is None else graph
    for c in scores.bool_concepts:
        f = analysis["best"][c]["feature"]
        fv, cv, shown = graph_values(index, analysis["acts"], graph, f, c, labels)
        png = f"feature_{f}_{c}.png"
        feature_on_graph(
            eval_data[graph],
            fv[:max_figures],
            cv[:max_figures],
            shown[:max_figures],
            out / png,
            f,
            c,
            title=f"{algorithm}, held-out graph {graph}: feature {f} "
            f"(AUROC {analysis['best'][c]['auroc']:.3f}) vs {c}",
        )
        images[f"Feature {f} vs `{c}` on held-out graph {graph}"] = png
    return SAEStudy(
        sae,
        config,
        store,
        eval_store,
        evaluation,
        analysis,
        images,
        sweep_rows,
        time.perf_counter() - t0,
    )
