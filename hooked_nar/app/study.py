"""The ``study`` pipeline behind ``hooked-nar study``: one CLRS algorithm end to end.

:func:`run_study` runs a list of stages (:data:`STAGES`). Each stage is a function
``stage(ctx: StudyContext) -> Section``: it reads what earlier stages left on the context,
and returns a report section (markdown), a ``results.json`` entry and a few summary lines.
After every stage ``report.md`` and ``results.json`` are rewritten atomically, so an
interrupted run leaves complete files describing the finished stages. To add a stage
(SAE training, causal tests, ...), write such a function and append it to :data:`STAGES`.

The settings come from :mod:`hooked_nar.app.commands.study`, which validates them first: an
``argparse.Namespace`` with ``algorithm``, ``output``, ``generator``, ``num_graphs``,
``num_nodes``, ``seed``, ``batch_size``, ``quick``, ``quiet``, ``no_progress``, ``argv``,
``checkpoint`` (as given) and ``checkpoint_path`` / ``checkpoint_source`` (resolved, or None).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooked_nar.app.common import PROG, UsageError
from hooked_nar.atomic import write_json_atomic, write_text_atomic

#: Node hint drawn in the data stage, where the first node mask hint is not the best choice.
TRAJECTORY_HINTS = {"bfs": "reach_h", "dfs": "color", "dijkstra": "mark", "mst_prim": "mark"}
#: Node hint (and class, for categorical hints) compared with the model's prediction.
PREDICTION_HINTS = {
    "bfs": ("reach_h", None),
    "dfs": ("color", "black"),
    "dijkstra": ("mark", None),
    "mst_prim": ("mark", None),
}
#: Dataset size with ``--quick`` and without (the command line fills these in).
QUICK = {"num_graphs": 16, "num_nodes": 8}
DEFAULTS = {"num_graphs": 256, "num_nodes": 16}
#: Graphs run through ``run_with_cache`` in the model stage.
CACHE_GRAPHS = 4
#: SAE stage with ``--quick`` and without: training graphs (training sizes), optimiser
#: steps (None: the algorithm's recipe, :data:`hooked_nar.app.sae_study.RECIPES`), and held-out graphs
#: (the first ones of the study's dataset, plus the example).
SAE_QUICK = {"sae_graphs": 32, "sae_steps": 150, "sae_eval_graphs": 8}
SAE_DEFAULTS = {"sae_graphs": 512, "sae_steps": None, "sae_eval_graphs": 64}
#: Causal stage with ``--quick`` and without: test graphs (fresh ones, the study's size),
#: and matched features / random directions per test.
CAUSAL_QUICK = {"causal_graphs": 8, "num_null": 8}
CAUSAL_DEFAULTS = {"causal_graphs": 64, "num_null": None}


# ------------------------------------------------------------------------------- context


@dataclass
class Section:
    """What one stage adds: a report section, a results.json entry, summary lines."""

    key: str
    title: str
    markdown: str
    results: dict
    summary: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StudyContext:
    """Everything the stages share. Stages may read and set the attributes below."""

    args: argparse.Namespace
    algorithm: str
    out: Path
    progress: bool
    dataset: Any = None  # CLRSDataset (data stage)
    example: int = 0  # index of the graph drawn in figures
    layout: Any = None  # node positions of the example graph, shared by its figures
    model: Any = None  # HookedNAR (model stage), None without a checkpoint
    sae_eval: Any = None  # held-out graphs of the SAE stage (a subset of dataset)
    sae_example: int = 0  # index of the example graph within sae_eval
    sae: Any = None  # hooked_nar.app.sae_study.SAEStudy (SAE stage)
    sections: list[Section] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def log(self, message: str) -> None:
        """A progress line on stderr (silent with ``--quiet``)."""
        if not self.args.quiet:
            print(f"[{PROG} study] {message}", file=sys.stderr, flush=True)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _minmeanmax(values: list[float]) -> dict:
    return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)}


# ------------------------------------------------------------------------------- choices


def longest_trajectory(dataset) -> int:
    """Index of the graph with the longest trajectory (the first one on ties): the study's
    example graph."""
    lengths = [int(d.length.reshape(-1)[0]) for d in dataset]
    return max(range(len(lengths)), key=lambda i: (lengths[i], -i))


def sae_eval_indices(dataset, num_graphs: int, example: int) -> list[int]:
    """The graphs the SAE stage is evaluated on: the first ``num_graphs`` and the example."""
    return sorted(set(range(min(num_graphs, len(dataset)))) | {example})


def node_hints(algorithm: str) -> dict[str, Any]:
    """``{name: FieldSpec}`` of the algorithm's node-level hints."""
    from hooked_nar.algorithms import SPECS

    return {
        k: fs for k, fs in SPECS[algorithm].items() if fs.stage == "hint" and fs.location == "node"
    }


def trajectory_hint(algorithm: str) -> str | None:
    """The node hint that tells most about a run of ``algorithm`` (see TRAJECTORY_HINTS)."""
    if algorithm in TRAJECTORY_HINTS:
        return TRAJECTORY_HINTS[algorithm]
    hints = node_hints(algorithm)
    for kind in ("mask", "categorical", "mask_one", "scalar", "pointer"):
        for name, fs in hints.items():
            if fs.type == kind:
                return name
    return None


def prediction_hint(algorithm: str) -> tuple[str, str | None] | None:
    """``(hint, class name or None)`` compared with the model in the model stage."""
    if algorithm in PREDICTION_HINTS:
        return PREDICTION_HINTS[algorithm]
    from hooked_nar.concepts import CLASS_NAMES

    hints = node_hints(algorithm)
    for kind in ("mask", "categorical", "mask_one"):
        for name, fs in hints.items():
            if fs.type == kind:
                if kind != "categorical":
                    return name, None
                names = CLASS_NAMES.get((algorithm, name), CLASS_NAMES.get(("*", name)))
                return name, (names[-1] if names else "1")
    return None


# --------------------------------------------------------------------------------- stages


def hint_statistics(dataset) -> dict:
    """Per hint, over every (row, step) of every graph (no padding: each graph has its own T):
    mask / mask_one -> ``positive_rate``; categorical -> ``class_rates``; node pointer ->
    ``self_pointer_rate``; scalar -> ``mean`` / ``min`` / ``max``; all -> ``entries``."""
    import torch

    from hooked_nar.algorithms import SPECS
    from hooked_nar.concepts import CLASS_NAMES

    alg = dataset.algorithm
    out: dict[str, dict] = {}
    for name, fs in SPECS[alg].items():
        if fs.stage != "hint":
            continue
        parts = [d[name] for d in dataset]
        entry: dict[str, Any] = {"type": fs.type, "location": fs.location}
        if fs.type == "categorical":
            x = torch.cat([p.reshape(-1, p.shape[-1]) for p in parts]).argmax(-1)
            C = parts[0].shape[-1]
            names = CLASS_NAMES.get((alg, name), CLASS_NAMES.get(("*", name))) or range(C)
            entry["entries"] = int(x.numel())
            entry["class_rates"] = {
                str(c): float((x == k).float().mean()) for k, c in enumerate(names)
            }
        elif fs.type in ("mask", "mask_one"):
            x = torch.cat([p.reshape(-1) for p in parts])
            entry["entries"] = int(x.numel())
            entry["positive_rate"] = float((x > 0.5).float().mean())
        elif fs.type == "pointer":
            x = torch.cat([p.reshape(-1) for p in parts])
            entry["entries"] = int(x.numel())
            if fs.location == "node":
                own = torch.cat(
                    [torch.arange(p.shape[0])[:, None].expand_as(p).reshape(-1) for p in parts]
                )
                entry["self_pointer_rate"] = float((x == own).float().mean())
        else:
            x = torch.cat([p.reshape(-1).double() for p in parts])
            entry["entries"] = int(x.numel())
            entry.update(mean=float(x.mean()), min=float(x.min()), max=float(x.max()))
        out[name] = entry
    return out


def dataset_statistics(dataset) -> dict:
    """Nodes, edges (PyG ``edge_index`` columns, self-loops included), arcs (nonzero
    off-diagonal entries of ``A``; an undirected edge counts twice), trajectory length T."""
    nodes, edges, arcs, lengths = [], [], [], []
    for d in dataset:
        ei = d.edge_index
        nodes.append(int(d.num_nodes))
        edges.append(int(ei.shape[1]))
        arcs.append(int(((d.A != 0) & (ei[0] != ei[1])).sum()))
        lengths.append(int(d.length.reshape(-1)[0]))
    hist: dict[str, int] = {}
    for t in sorted(lengths):
        hist[str(t)] = hist.get(str(t), 0) + 1
    return {
        "num_graphs": len(dataset),
        "nodes": _minmeanmax(nodes),
        "edges": _minmeanmax(edges),
        "arcs": _minmeanmax(arcs),
        "trajectory_length": _minmeanmax(lengths),
        "trajectory_length_histogram": hist,
        "hints": hint_statistics(dataset),
    }


def _describe_hint(st: dict) -> str:
    if "positive_rate" in st:
        return f"positive rate {st['positive_rate']:.3f}"
    if "class_rates" in st:
        return ", ".join(f"{k} {v:.3f}" for k, v in st["class_rates"].items())
    if "self_pointer_rate" in st:
        return f"points to itself {st['self_pointer_rate']:.3f}"
    if "mean" in st:
        return f"mean {st['mean']:.3f} (min {st['min']:.3f}, max {st['max']:.3f})"
    return ""


def stage_data(ctx: StudyContext) -> Section:
    """Generate the graphs, compute dataset statistics and draw one trajectory."""
    from hooked_nar.data import CLRSDataset, data_to_trajectory
    from hooked_nar.plotting import draw_trajectory, graph_layout

    a = ctx.args
    ctx.log(f"data: {a.num_graphs} {ctx.algorithm} graphs of {a.num_nodes} nodes ({a.generator})")
    ds = CLRSDataset(
        ctx.algorithm,
        a.num_graphs,
        generator=a.generator,
        sizes=(a.num_nodes,),
        seed=a.seed,
        progress=ctx.progress,
    )
    ctx.dataset = ds
    stats = dataset_statistics(ds)
    # The example graph: the longest trajectory (the first one on ties).
    ctx.example = longest_trajectory(ds)
    traj = data_to_trajectory(ds[ctx.example])
    ctx.layout = graph_layout(traj.inputs["A"], seed=a.seed)
    hint = trajectory_hint(ctx.algorithm)
    figures = {}
    if hint is not None:
        fname = f"trajectory_{hint}.png"
        draw_trajectory(
            traj,
            hint,
            ctx.out / fname,
            layout=ctx.layout,
            title=f"{ctx.algorithm}: {hint} per hint step, graph {ctx.example} "
            f"(n = {traj.num_nodes}, T = {traj.length})",
        )
        figures["trajectory"] = fname
    results = {
        "generator": a.generator,
        "num_nodes_setting": a.num_nodes,
        "seed": a.seed,
        **stats,
        "example_graph": ctx.example,
        "example_length": traj.length,
        "trajectory_hint": hint,
        "figures": figures,
    }

    mm = lambda k: stats[k]  # noqa: E731
    rows = [
        [label, mm(k)["min"], f"{mm(k)['mean']:.2f}", mm(k)["max"]]
        for label, k in (
            ("nodes", "nodes"),
            ("edges (edge_index, with self-loops)", "edges"),
            ("arcs (A ≠ 0, off-diagonal)", "arcs"),
            ("trajectory length T", "trajectory_length"),
        )
    ]
    hint_rows = [
        [f"`{k}`", v["type"], v["location"], v["entries"], _describe_hint(v)]
        for k, v in stats["hints"].items()
    ]
    hist = ", ".join(f"T={t}: {c}" for t, c in stats["trajectory_length_histogram"].items())
    md = [
        f"{len(ds)} graphs from the `{a.generator}` generator with {a.num_nodes} nodes, "
        f"seed {a.seed} (`CLRSDataset({ctx.algorithm!r}, {a.num_graphs}, "
        f"generator={a.generator!r}, sizes=({a.num_nodes},), seed={a.seed})`).",
        "",
        _table(["per graph", "min", "mean", "max"], rows),
        "",
        f"Trajectory lengths: {hist}.",
        "",
        "Hints, over every row and hint step of every graph (padding never counted):",
        "",
        _table(["hint", "type", "location", "entries", "statistics"], hint_rows),
    ]
    if figures:
        md += [
            "",
            f"Graph {ctx.example} (the longest trajectory), nodes coloured by `{hint}`"
            + (", the source drawn as a square" if "s" in traj.inputs else "")
            + (", parent pointers as orange arrows" if "pi_h" in traj.hints else "")
            + ":",
            "",
            f"![{hint} per step]({figures['trajectory']})",
        ]
    T = stats["trajectory_length"]
    summary = [
        (
            "data",
            f"{len(ds)} graphs, n={a.num_nodes} ({a.generator}), "
            f"T min/mean/max {T['min']}/{T['mean']:.1f}/{T['max']}",
        )
    ]
    summary += [("figure", f) for f in figures.values()]
    return Section("data", "Data", "\n".join(md), results, summary)


def cache_summary(model, graphs: list) -> dict:
    """Run ``run_with_cache`` on ``graphs`` and describe what the cache holds."""
    import re

    import torch

    from hooked_nar.data import collate

    batch = collate(graphs)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
    per_step: dict[str, dict] = {}
    other: dict[str, list] = {}
    for key in cache.keys():
        m = re.fullmatch(r"steps\.(\d+)\.(.+)", key)
        if m:
            t, name = int(m.group(1)), m.group(2)
            entry = per_step.setdefault(name, {"steps": [], "shape": list(cache[key].shape)})
            entry["steps"].append(t)
        else:
            other[key] = list(cache[key].shape)
    st = cache.stack("hook_node_out")
    rows, _ = cache.flatten("hook_node_out")
    return {
        "graphs": len(graphs),
        "lengths": [int(x) for x in batch.length.view(-1)],
        "num_nodes": int(batch.num_nodes),
        "num_edges": int(batch.edge_index.shape[1]),
        "processor_steps": cache.num_steps,
        "hook_points_in_model": len(model.hook_dict),
        "cached_activations": len(cache.keys()),
        "per_step_hooks": {
            k: {"shape_at_step_0": v["shape"], "num_steps": len(v["steps"])}
            for k, v in per_step.items()
        },
        "other_hooks": other,
        "stack_hook_node_out": {
            "values_shape": list(st.values.shape),
            "mask_shape": list(st.mask.shape),
            "valid_rows": int(st.mask.sum()),
            "total_rows": int(st.mask.numel()),
            "valid_rows_per_graph": [
                int(st.mask[:, st.graph == g].sum()) for g in range(len(graphs))
            ],
        },
        "flatten_rows": int(rows.shape[0]),
    }


def predicted_vs_true(model, data, hint: str, class_name: str | None):
    """``(truth [S, n], predicted [S, n])`` of a node hint on one graph, over its S = T - 1
    processor steps (step t predicts hint t + 1). Categorical hints become ``class == name``."""
    import torch

    from hooked_nar.concepts import CLASS_NAMES
    from hooked_nar.data import collate

    T = int(data.length.reshape(-1)[0])
    S = T - 1
    with torch.no_grad():
        pred = model.predict(collate([data]), hints=True)[hint][:, :S]
    truth = data[hint][:, 1 : S + 1]
    if class_name is not None:
        names = list(CLASS_NAMES.get((data.algorithm, hint), CLASS_NAMES.get(("*", hint))) or [])
        k = names.index(class_name) if class_name in names else int(class_name)
        truth, pred = truth.argmax(-1) == k, pred.argmax(-1) == k
    return truth.float().T.numpy(), pred.float().T.numpy()


def stage_model(ctx: StudyContext) -> Section:
    """Evaluate the checkpoint, describe the activation cache, draw prediction vs truth."""
    a = ctx.args
    if a.checkpoint_path is None:
        from hooked_nar.model.checkpoint import shipped_checkpoints

        shipped = shipped_checkpoints()
        md = (
            f"No checkpoint is shipped for `{ctx.algorithm}` (shipped: "
            f"{', '.join(f'`{s}`' for s in shipped) or 'none'}), so this study has no model "
            f"section. Train one with `{PROG} train --algorithm {ctx.algorithm} --out DIR` "
            f"and pass `--checkpoint DIR/best`."
        )
        return Section(
            "model",
            "Model",
            md,
            {"checkpoint": None, "shipped": shipped},
            [("model", "no checkpoint shipped; data section only")],
        )

    from hooked_nar.data import data_to_trajectory
    from hooked_nar.data.generators import GRAPH_CONVENTIONS
    from hooked_nar.evaluate import evaluate
    from hooked_nar.model import HookedNAR
    from hooked_nar.plotting import draw_prediction_vs_truth

    ctx.log(f"model: loading {a.checkpoint_path}")
    try:
        model = HookedNAR.from_pretrained(a.checkpoint_path, algorithm=ctx.algorithm)
    except ValueError as e:
        raise UsageError(f"--checkpoint {str(a.checkpoint):s}: {e}") from None
    ctx.model = model
    ds = ctx.dataset
    ctx.log(f"model: evaluating on {len(ds)} graphs")
    ev = evaluate(model, ds, batch_size=a.batch_size, progress=ctx.progress)
    ctx.log(f"model: run_with_cache on {min(CACHE_GRAPHS, len(ds))} graphs")
    cache = cache_summary(model, [ds[i] for i in range(min(CACHE_GRAPHS, len(ds)))])

    figures: dict[str, str] = {}
    pred_info: dict[str, Any] = {}
    choice = prediction_hint(ctx.algorithm)
    d = ds[ctx.example]
    if choice is not None and int(d.length.reshape(-1)[0]) > 1:
        hint, cls = choice
        truth, pred = predicted_vs_true(model, d, hint, cls)
        label = hint if cls is None else f"{hint} {cls}"
        wrong = truth != pred
        fname = f"prediction_{hint}{'' if cls is None else '_' + cls}.png"
        traj = data_to_trajectory(d)
        src = int(traj.inputs["s"].argmax()) if "s" in traj.inputs else None
        draw_prediction_vs_truth(
            traj.inputs["A"],
            truth,
            pred,
            ctx.out / fname,
            f"{ctx.algorithm}: {label}, truth vs model, graph {ctx.example} "
            f"({int(wrong.sum())} wrong of {wrong.size})",
            kind="mask",
            source=src,
            value_label=label,
            layout=ctx.layout,
            mask_labels=None if cls is None else (f"{hint} not {cls}", label),
            directed=GRAPH_CONVENTIONS[ctx.algorithm].directed,
        )
        figures["prediction"] = fname
        pred_info = {
            "hint": hint,
            "class": cls,
            "graph": ctx.example,
            "steps": int(truth.shape[0]),
            "wrong": int(wrong.sum()),
            "entries": int(wrong.size),
            "wrong_per_step": wrong.sum(1).astype(int).tolist(),
        }

    meta = getattr(model, "metadata", {}) or {}
    cfg = model.cfg
    results = {
        "checkpoint": str(a.checkpoint_path),
        "checkpoint_source": a.checkpoint_source,
        "config": cfg.to_dict(),
        "metadata": meta,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "evaluate": ev,
        "cache": cache,
        "prediction": pred_info,
        "figures": figures,
    }

    out_rows = [
        [f"`{name}`", m["metric"], m["value"], m["graph_accuracy"]]
        for name, m in ev["outputs"].items()
    ]
    hint_rows = []
    for name, m in ev["hints"].items():
        per = ", ".join(_fmt(x, 2) for x in m.get("per_step", [])[:12])
        more = " …" if len(m.get("per_step", [])) > 12 else ""
        hint_rows.append([f"`{name}`", m["metric"], m["value"], per + more])
    hook_rows = [
        [f"`steps.{{t}}.{k}`", str(tuple(v["shape_at_step_0"])), v["num_steps"]]
        for k, v in cache["per_step_hooks"].items()
    ]
    hook_rows += [[f"`{k}`", str(tuple(v)), "–"] for k, v in cache["other_hooks"].items()]
    sk = cache["stack_hook_node_out"]
    md = [
        f"Checkpoint `{a.checkpoint_path}` ({a.checkpoint_source}): {cfg.processor} processor, "
        f"d_model {cfg.d_model}, hint mode {cfg.hint_mode}, {results['parameters']:,} parameters"
        + (f", trained {meta['step']} steps" if "step" in meta else "")
        + (
            f", best validation score {meta['best_validation_score']:.3f}"
            if isinstance(meta.get("best_validation_score"), (int, float))
            else ""
        )
        + ".",
        "",
        f"### Accuracy on the {ev['num_graphs']} generated graphs",
        "",
        f"Whole-graph accuracy (every output of the graph right): **{ev['graph_accuracy']:.3f}**.",
        "",
        _table(["output", "CLRS metric", "value", "graph accuracy"], out_rows),
        "",
        "Hints, pooled over valid processor steps (step t predicts hint t+1), and the CLRS "
        "metric per step:",
        "",
        _table(["hint", "CLRS metric", "value", "per step"], hint_rows),
        "",
        "### Activation cache",
        "",
        f"`run_with_cache` on graphs 0–{cache['graphs'] - 1} (lengths {cache['lengths']}, "
        f"{cache['num_nodes']} nodes, {cache['num_edges']} edges, {cache['processor_steps']} "
        f"processor steps): the model has {cache['hook_points_in_model']} hook points, the "
        f"cache holds {cache['cached_activations']} activations.",
        "",
        _table(["hook", "shape", "steps cached"], hook_rows),
        "",
        f'`cache.stack("hook_node_out")`: values {tuple(sk["values_shape"])}, step mask '
        f"{tuple(sk['mask_shape'])}, {sk['valid_rows']} valid rows of {sk['total_rows']} "
        f"(per graph {sk['valid_rows_per_graph']}); `cache.flatten()` gives "
        f"{cache['flatten_rows']} rows.",
    ]
    if figures:
        md += [
            "",
            "### Prediction vs truth",
            "",
            f"Graph {ctx.example}, `{pred_info['hint'] if cls is None else label}` per "
            f"processor step: truth on top, the model's prediction below, wrong nodes "
            f"outlined in red ({pred_info['wrong']} of {pred_info['entries']} wrong).",
            "",
            f"![prediction vs truth]({figures['prediction']})",
        ]
    summary = [
        (
            "model",
            f"{a.checkpoint_source} checkpoint {a.checkpoint_path.name}, "
            f"whole-graph accuracy {ev['graph_accuracy']:.3f}",
        )
    ]
    summary += [
        (f"output {k}", f"{m['metric']} {m['value']:.3f}") for k, m in ev["outputs"].items()
    ]
    summary += [(f"hint {k}", f"{m['metric']} {m['value']:.3f}") for k, m in ev["hints"].items()]
    summary.append(
        (
            "cache",
            f"{cache['hook_points_in_model']} hook points, hook_node_out "
            f"{list(sk['values_shape'])}, {sk['valid_rows']} valid rows",
        )
    )
    summary += [("figure", f) for f in figures.values()]
    return Section("model", "Model", "\n".join(md), results, summary)


def stage_sae(ctx: StudyContext) -> Section:
    """Train an SAE on ``hook_node_out`` (or take ``--sae``), evaluate it, find concept features."""
    if ctx.model is None:
        return Section(
            "sae",
            "SAE",
            "No checkpoint, so no activations to train an SAE on.",
            {"trained": False},
            [("sae", "skipped (no checkpoint)")],
        )
    from hooked_nar.app.sae_study import sae_study
    from hooked_nar.data import TRAIN_SIZES, CLRSDataset
    from sae.report import report_sections

    a = ctx.args
    ds = ctx.dataset
    keep = sae_eval_indices(ds, a.sae_eval_graphs, ctx.example)
    ctx.sae_eval = ds[keep]
    ctx.sae_example = keep.index(ctx.example)
    train = None
    if a.sae_model is None:
        ctx.log(f"sae: {a.sae_graphs} training graphs, n in {TRAIN_SIZES}")
        train = CLRSDataset(
            ctx.algorithm, a.sae_graphs, sizes=TRAIN_SIZES, seed=a.seed + 1, progress=False
        )
    result = sae_study(
        ctx.model,
        train,
        ctx.sae_eval,
        ctx.out,
        sae=a.sae_model,
        steps=a.sae_steps,
        seed=a.seed,
        model_name=str(a.checkpoint_path),
        graph=ctx.sae_example,
        progress=ctx.progress,
        log=lambda m: ctx.log(f"sae: {m}"),
    )
    ctx.sae = result
    ev, an = result.evaluation, result.analysis
    rec, rr = ev["reconstruction"], ev["downstream"]["recovered"]
    steps = result.sae.cfg.metadata.training_steps
    source = (
        f"given (`{a.sae}`)"
        if a.sae_model is not None
        else f"trained through SAELens's `SAETrainer` for {steps} steps on "
        f"{len(result.store)} valid rows of {a.sae_graphs} graphs (n in {TRAIN_SIZES})"
    )
    md = [
        f"SAE {result.config} at `hook_node_out`, every processor step: {source}; saved to "
        f"`sae/` (`sae_lens.SAE.load_from_disk`). Held out: {len(ctx.sae_eval)} of the graphs "
        f"above, {len(result.eval_store)} valid (node, step) rows; concepts labelled with the "
        "state each step computes (hint t+1).",
        "",
        *report_sections(ev, an, images=result.images, level=3),
    ]
    covered = f"{len(an['covered'])}/{len(an['scores'].bool_concepts)}"
    summary = [
        (
            "sae",
            f"{result.config}: EV {rec['explained_variance']:.3f}, L0 {rec['l0']:.1f}, "
            f"recovered output {rr['output_accuracy']:.3f} / hint {rr['hint_accuracy']:.3f}",
        ),
        ("concept features", f"{covered} boolean concepts at AUROC >= 0.95"),
    ]
    summary += [
        (
            f"  {c}",
            f"feature {b['feature']}, AUROC {b['auroc']:.3f}"
            if "auroc" in b
            else f"feature {b['feature']}, Spearman {b['spearman']:.3f}",
        )
        for c, b in an["best"].items()
    ]
    return Section("sae", "SAE and concept features", "\n".join(md), result.summary(), summary)


def stage_causal(ctx: StudyContext) -> Section:
    """Ablate and steer every boolean concept's unit (its SAE feature group) beside a null of
    uninformative units and a positive control, on the concept's own target."""
    if ctx.sae is None:
        return Section(
            "causal",
            "Causal tests",
            "No SAE, so no concept units to test.",
            {"tests": []},
            [("causal", "skipped (no SAE)")],
        )
    from hooked_nar.data import CLRSDataset
    from patching.causal import CausalOptions, causal_concept_tests
    from patching.report import causal_sections

    a = ctx.args
    seed = 30_000 + a.seed
    data = CLRSDataset(
        ctx.algorithm,
        a.causal_graphs,
        generator=a.generator,
        sizes=(a.num_nodes,),
        seed=seed,
        progress=False,
    )
    ctx.log(f"causal: ablating and steering every concept unit on {len(data)} fresh graphs")
    options = CausalOptions(num_null=a.num_null, seed=a.seed, progress=ctx.progress)
    if a.quick:
        options = options.with_(
            ablation_doses=(0.0, 1.0), steer_doses=(0.0, 1.0), sites_per_graph=1
        )
    tests = causal_concept_tests(
        ctx.model, ctx.sae.sae, dataset=data, store=ctx.sae.eval_store, options=options
    )
    from sae.probes import concept_baselines

    ctx.log("causal: concept-score baselines (neurons, random directions, probes)")
    baselines = concept_baselines(ctx.model, data, seed=a.seed)
    lines, images = causal_sections(tests, ctx.out, level=3, baselines=baselines)
    num_null = tests[0].settings["num_null_per_kind"] if tests else 0
    md = [
        f"Each boolean concept's unit (every live SAE feature with AUROC >= "
        f"{options.group_auroc} on the SAE section's held-out rows) is ablated at the (node, step) "
        f"rows where the concept holds, and steered at sites where the algorithm makes the "
        f"concept true next, on "
        f"{len(data)} fresh `{a.generator}` graphs (n = {a.num_nodes}, seed {seed}), beside "
        f"{num_null} null units per kind and the concept's difference-of-means direction "
        "(`patching.causal_concept_tests`)."
        + (
            " Quick mode: too few null units for any verdict but `inconclusive`." if a.quick else ""
        ),
        "",
        *lines,
    ]
    summary = [
        (
            f"causal {t.concept}",
            f"{t.verdict} ({t.unit['kind']} of {t.unit['size']}: margin removed "
            f"{t.ablation.effect:.2f} vs null {t.ablation.null:.2f}, p {t.ablation.p_holm:.2g}"
            + (
                f"; steering flips {t.steering.effect:.2f} vs {t.steering.null:.2f}, "
                f"p {t.steering.p_holm:.2g})"
                if t.steering is not None
                else ")"
            ),
        )
        for t in tests
    ]
    return Section(
        "causal",
        "Causal tests of the concept units",
        "\n".join(md),
        {"tests": tests, "figures": images, "baselines": baselines},
        summary,
    )


def stage_browser(ctx: StudyContext) -> Section:
    """The offline feature browser of the SAE (``browser/index.html``); run after
    :data:`STAGES` with ``--browser``."""
    if ctx.sae is None:
        return Section("browser", "Feature browser", "Not written (no SAE).", {"written": False})
    import json

    from hooked_nar.app.browser.build import BROWSER_DIR, build_browser

    a = ctx.args
    ctx.log("browser: every feature on the held-out graphs")
    info = build_browser(
        ctx.model,
        ctx.sae.sae,
        ctx.sae_eval,
        ctx.out / BROWSER_DIR,
        json.loads((ctx.out / "results.json").read_text()),
        graph_ids=sae_eval_indices(ctx.dataset, a.sae_eval_graphs, ctx.example),
        seed=a.seed,
        progress=ctx.progress,
    )
    mb = info.bytes / 2**20
    md = (
        f"[`{BROWSER_DIR}/index.html`]({BROWSER_DIR}/index.html): all {info.features} features "
        f"on the held-out graphs, step by step ({mb:.1f} MB, written in {info.seconds:.1f} s). "
        "Open it in a web browser; it works offline from the file."
    )
    results = {"written": True, "path": f"{BROWSER_DIR}/index.html", "bytes": info.bytes}
    summary = [("browser", f"{BROWSER_DIR}/index.html ({mb:.1f} MB, {info.seconds:.1f} s)")]
    return Section("browser", "Feature browser", md, results, summary)


#: The stages of ``study``, in order. Later stages may use what earlier ones set on ctx.
STAGES: list[Callable[[StudyContext], Section]] = [
    stage_data,
    stage_model,
    stage_sae,
    stage_causal,
]


# ---------------------------------------------------------------------------------- study


def _status_line(ctx: StudyContext, status: str) -> str:
    """What the report says about the run: complete, stopped (and why), or unfinished."""
    done = ", ".join(s.key for s in ctx.sections) or "none"
    if status == "complete":
        return ""
    if status.startswith("stopped"):
        return f"**Incomplete: {status}.** Stages finished: {done}."
    return (
        f"**Incomplete:** stages finished when this was written: {done}. The next stage was "
        "running then; if no `hooked-nar study` is writing this folder now, the run was killed."
    )


def _report(ctx: StudyContext, status: str) -> str:
    a = ctx.args
    cmd = " ".join(shlex.quote(x) for x in [PROG, *a.argv])
    note = _status_line(ctx, status)
    lines = [
        f"# hooked-nar study: {ctx.algorithm}",
        "",
        f"`{cmd}`",
        *(["", note] if note else []),
        "",
        _table(
            ["setting", "value"],
            [
                ["algorithm", ctx.algorithm],
                ["generator", a.generator],
                ["graphs", a.num_graphs],
                ["nodes per graph", a.num_nodes],
                ["seed", a.seed],
                ["checkpoint", a.checkpoint_path if a.checkpoint_path is not None else "none"],
                ["quick", a.quick],
            ],
        ),
    ]
    for i, sec in enumerate(ctx.sections, 1):
        lines += ["", f"## {i}. {sec.title}", "", sec.markdown]
    return "\n".join(lines) + "\n"


def _write(ctx: StudyContext, status: str) -> None:
    """Rewrite results.json and report.md; ``status``: ``"complete"``, ``"running"`` or
    ``"stopped ..."`` (why)."""
    a = ctx.args
    results = {
        "algorithm": ctx.algorithm,
        "settings": {
            "generator": a.generator,
            "num_graphs": a.num_graphs,
            "num_nodes": a.num_nodes,
            "seed": a.seed,
            "quick": a.quick,
            "batch_size": a.batch_size,
            "sae_eval_graphs": getattr(a, "sae_eval_graphs", None),
            "checkpoint": None if a.checkpoint_path is None else str(a.checkpoint_path),
        },
        "complete": status == "complete",
        "status": status.split(" ", 1)[0],
        "stages": [s.key for s in ctx.sections],
        **ctx.results,
        "seconds": time.perf_counter() - ctx.started,
    }
    write_json_atomic(ctx.out / "results.json", results, indent=2)
    write_text_atomic(ctx.out / "report.md", _report(ctx, status))


#: What a study writes at the top of its folder, removed before a new run in the same folder
#: (so that no figure of an earlier run stays beside the new report).
_RUN_FILES = ("report.md", "results.json", "*.png")


def clear_previous_run(out: Path, keep: Path | None = None) -> list[Path]:
    """Remove what an earlier study left in ``out``: its report, results, PNGs, SAE and
    browser folders (only when ``out/results.json`` is a study's), and the temporary files
    of killed writers (:func:`hooked_nar.atomic.remove_stale_temporaries`). ``keep``: a path not to
    remove (the ``--sae`` being reused). Returns the paths removed."""
    import json

    from hooked_nar.app.browser.build import BROWSER_DIR
    from hooked_nar.atomic import remove_stale_temporaries

    removed = remove_stale_temporaries(out)
    try:
        previous = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return removed
    if not (isinstance(previous, dict) and "stages" in previous and "algorithm" in previous):
        return removed
    keep = None if keep is None else keep.resolve()
    candidates = [p for pattern in _RUN_FILES for p in sorted(out.glob(pattern))]
    candidates += [out / d for d in ("sae", BROWSER_DIR) if (out / d).is_dir()]
    for path in candidates:
        if keep is not None and (path.resolve() == keep or keep.is_relative_to(path.resolve())):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt while the stages run (main thread only), so that
    ``kill`` leaves a report that says the run was stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_study(args: argparse.Namespace) -> StudyContext:
    """Run every stage of :data:`STAGES` (then :func:`stage_browser` with ``args.browser``)
    for validated ``args``; returns the context."""
    ctx = StudyContext(
        args=args,
        algorithm=args.algorithm,
        out=Path(args.output),
        progress=sys.stderr.isatty() and not args.no_progress and not args.quiet,
    )
    given_sae = getattr(args, "sae", None)
    clear_previous_run(ctx.out, keep=None if given_sae is None else Path(given_sae))
    stages = [*STAGES, stage_browser] if getattr(args, "browser", False) else STAGES
    with _sigterm_as_interrupt():
        for stage in stages:
            t0 = time.perf_counter()
            try:
                sec = stage(ctx)
            except BaseException as e:
                why = "interrupted" if isinstance(e, KeyboardInterrupt) else type(e).__name__
                _write(ctx, f"stopped during stage {_stage_name(stage)} ({why})")
                raise
            sec.results["seconds"] = time.perf_counter() - t0
            ctx.sections.append(sec)
            ctx.results[sec.key] = sec.results
            _write(ctx, "complete" if stage is stages[-1] else "running")
    return ctx


def _stage_name(stage: Callable) -> str:
    return stage.__name__.removeprefix("stage_")


def print_summary(ctx: StudyContext, file=None) -> None:
    """The summary table of every stage's key figures, to ``file`` (default stdout)."""
    file = file or sys.stdout
    seconds = time.perf_counter() - ctx.started
    rows = [row for sec in ctx.sections for row in sec.summary]
    width = max((len(k) for k, _ in rows), default=0)
    print(f"{PROG} study {ctx.algorithm}: {ctx.out / 'report.md'} ({seconds:.1f} s)", file=file)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=file)
