"""The data stage: generate the graphs, compute dataset statistics, draw one trajectory."""

from __future__ import annotations

from typing import Any

from hooked_nar.app.study.context import (
    Section,
    StudyContext,
    longest_trajectory,
    markdown_table,
    min_mean_max,
    trajectory_hint,
)


def hint_statistics(dataset) -> dict:
    """Per hint, over every (row, step) of every graph (no padding: each graph has its own T):
    mask / mask_one -> ``positive_rate``; categorical -> ``class_rates``; node pointer ->
    ``self_pointer_rate``; scalar -> ``mean`` / ``min`` / ``max``; all -> ``entries``."""
    import torch

    from hooked_nar.algorithms import SPECS
    from hooked_nar.concept_labels import CLASS_NAMES

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
        "nodes": min_mean_max(nodes),
        "edges": min_mean_max(edges),
        "arcs": min_mean_max(arcs),
        "trajectory_length": min_mean_max(lengths),
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
    from hooked_nar.figures import draw_trajectory, graph_layout

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
        markdown_table(["per graph", "min", "mean", "max"], rows),
        "",
        f"Trajectory lengths: {hist}.",
        "",
        "Hints, over every row and hint step of every graph (padding never counted):",
        "",
        markdown_table(["hint", "type", "location", "entries", "statistics"], hint_rows),
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
