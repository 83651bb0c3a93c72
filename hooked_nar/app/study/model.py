"""The model stage: evaluate the checkpoint, describe the activation cache, draw the
prediction against the truth."""

from __future__ import annotations

from typing import Any

from hooked_nar.app.common import PROG, UsageError
from hooked_nar.app.study.context import (
    CACHE_GRAPHS,
    Section,
    StudyContext,
    checkpoint_label,
    format_value,
    markdown_table,
    prediction_hint,
)


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
        "processor_steps": cache.num_processor_steps,
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

    from hooked_nar.concept_labels import CLASS_NAMES
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
    from hooked_nar.figures import draw_prediction_vs_truth
    from hooked_nar.model import HookedNAR

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
        per = ", ".join(format_value(x, 2) for x in m.get("per_step", [])[:12])
        more = " …" if len(m.get("per_step", [])) > 12 else ""
        hint_rows.append([f"`{name}`", m["metric"], m["value"], per + more])
    hook_rows = [
        [f"`steps.{{t}}.{k}`", str(tuple(v["shape_at_step_0"])), v["num_steps"]]
        for k, v in cache["per_step_hooks"].items()
    ]
    hook_rows += [[f"`{k}`", str(tuple(v)), "–"] for k, v in cache["other_hooks"].items()]
    sk = cache["stack_hook_node_out"]
    md = [
        f"Checkpoint `{checkpoint_label(a)}` ({a.checkpoint_source}): {cfg.processor} processor, "
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
        markdown_table(["output", "CLRS metric", "value", "graph accuracy"], out_rows),
        "",
        "Hints, pooled over valid processor steps (step t predicts hint t+1), and the CLRS "
        "metric per step:",
        "",
        markdown_table(["hint", "CLRS metric", "value", "per step"], hint_rows),
        "",
        "### Activation cache",
        "",
        f"`run_with_cache` on graphs 0–{cache['graphs'] - 1} (lengths {cache['lengths']}, "
        f"{cache['num_nodes']} nodes, {cache['num_edges']} edges, {cache['processor_steps']} "
        f"processor steps): the model has {cache['hook_points_in_model']} hook points, the "
        f"cache holds {cache['cached_activations']} activations.",
        "",
        markdown_table(["hook", "shape", "steps cached"], hook_rows),
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
