"""Everything the feature browser shows, gathered into JSON-ready dicts.

:func:`gather` encodes the held-out (graph, node, step) rows with the SAE once and derives,
per feature: firing rate, activations, histogram, top and random examples (each with the
feature's activation at every node and step of its graph), concept scores (the study's own
:func:`sae.feature_scores.feature_concept_scores`'s AUROC and Spearman), concept groups and the decoder direction read
through the model's linear node heads (:mod:`hooked_nar.app.browser.decoder_read`). What the
study decided (causal verdicts, concept baselines) is read from ``results.json`` by
:mod:`hooked_nar.app.browser.results`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_nar.app.browser.decoder_read import decoder_reads
from hooked_nar.app.browser.results import (
    causal_by_feature,
    causal_verdicts,
    strongest_baseline,
    study_baselines,
)
from patching.causal.options import CausalOptions

#: A feature firing on more than this fraction of rows is flagged dense (the threshold of
#: ``frac_dense`` in :func:`sae.evaluate.reconstruction`).
DENSE_THRESHOLD = 0.5
#: A concept's group: the live features with AUROC at least this for it (the best feature
#: when none reaches it), the unit the causal tests intervene on
#: (:class:`patching.causal.options.CausalOptions`).
GROUP_AUROC = CausalOptions().group_auroc
#: Top-activating and random-activating examples per feature; histogram bins.
TOP_EXAMPLES = 8
RANDOM_EXAMPLES = 4
HISTOGRAM_BINS = 24
#: Random unit directions of the activation space for the concept baseline (computed here
#: only when results.json holds no baselines).
RANDOM_DIRECTIONS = 64


def _r(x: float, digits: int = 4) -> float | None:
    """``x`` rounded for the page (NaN / inf -> None)."""
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def _two_sided(a: Tensor) -> Tensor:
    return torch.maximum(a, 1 - a)


def _auroc_from_ranks(ranks: Float[Tensor, "R K"], labels: Tensor) -> Tensor:
    """AUROC of every column from its mid-ranks (the Mann-Whitney formula of
    :func:`sae.feature_scores.auroc`), so that one ranking serves every concept; NaN without pairs."""
    y = labels.bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return torch.full((ranks.shape[1],), float("nan"))
    return ((ranks[y].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()


@dataclass
class ConceptTable:
    """The feature x concept statistics the page shows: the values of
    :func:`sae.feature_scores.feature_concept_scores` (``auroc`` [F, Cb], ``spearman`` [F, Cs],
    ``frequency`` [F], ``positive_rate`` [Cb]) without its F1 search, every column ranked once."""

    bool_concepts: list[str]
    scalar_concepts: list[str]
    auroc: Tensor
    spearman: Tensor
    frequency: Tensor
    positive_rate: Tensor


def concept_table(acts: Float[Tensor, "R F"], labels: dict[str, Tensor]) -> ConceptTable:
    """:class:`ConceptTable` of ``acts`` against ``labels`` ``{concept: [R]}`` (bool or float)."""
    from sae.feature_scores import midranks, pearson

    bools = [c for c, v in labels.items() if v.dtype == torch.bool]
    scalars = [c for c, v in labels.items() if v.dtype != torch.bool]
    ranks = midranks(acts)
    F = acts.shape[1]

    def stack(cols: list[Tensor]) -> Tensor:
        return torch.stack(cols, 1) if cols else torch.zeros(F, 0)

    return ConceptTable(
        bools,
        scalars,
        stack([_auroc_from_ranks(ranks, labels[c]) for c in bools]),
        stack([pearson(ranks.float(), midranks(labels[c]).float()) for c in scalars]),
        (acts > 0).float().mean(0),
        torch.tensor([float(labels[c].float().mean()) for c in bools]),
    )


def concept_groups(scores: ConceptTable) -> dict[str, list[int]]:
    """Per boolean concept, the live features with AUROC >= :data:`GROUP_AUROC`, else its
    best feature (the rule of the causal tests' ``unit="group"``)."""
    live = scores.frequency > 0
    out = {}
    for i, c in enumerate(scores.bool_concepts):
        a = scores.auroc[:, i].nan_to_num(0.5)
        feats = torch.nonzero(live & (a >= GROUP_AUROC)).flatten().tolist()
        out[c] = feats or [int(a.argmax())]
    return out


def computed_baselines(
    rows: Float[Tensor, "R d"], labels: dict[str, Tensor], concepts: list[str], seed: int = 0
) -> dict[str, dict]:
    """Per boolean concept: the best single neuron of the hook and the median / 95th
    percentile over :data:`RANDOM_DIRECTIONS` random unit directions (AUROC two-sided, since
    a raw direction has no sign)."""
    from sae.feature_scores import midranks

    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(rows.shape[1], RANDOM_DIRECTIONS, generator=gen)
    cols = torch.cat([rows.float(), rows.float() @ (dirs / dirs.norm(dim=0))], dim=1)
    ranks = midranks(cols)  # [R, d + RANDOM_DIRECTIONS], shared by every concept
    d = rows.shape[1]
    out = {}
    for c in concepts:
        a = _two_sided(torch.nan_to_num(_auroc_from_ranks(ranks, labels[c]), nan=0.5))
        neuron, rand = a[:d], a[d:]
        out[c] = {
            "best neuron": _r(neuron.max()),
            "random directions median": _r(rand.median()),
            "random directions p95": _r(torch.quantile(rand, 0.95)),
        }
    return out


def _graph_cells(index, graph: int) -> Tensor:
    """Row ids of ``graph`` as a ``[S, n]`` matrix (-1 where no row)."""
    sel = (index.graph == graph).nonzero().flatten()
    steps, nodes = index.step[sel], index.node[sel]
    cells = torch.full((int(steps.max()) + 1, int(nodes.max()) + 1), -1, dtype=torch.long)
    cells[steps, nodes] = sel
    return cells


def graph_drawing(data, cells: Tensor, labels: dict[str, Tensor], directed: bool, seed: int):
    """What the page needs to draw one graph: positions, edges, the source node, and per
    boolean concept its truth at every (step, node) as one '0'/'1' string per step."""
    from hooked_nar.data import data_to_trajectory
    from hooked_nar.figures import graph_layout

    traj = data_to_trajectory(data)
    pos = graph_layout(traj.inputs["A"], seed=seed)
    lo, span = pos.min(0), max(float((pos.max(0) - pos.min(0)).max()), 1e-9)
    src, dst = data.edge_index
    arcs = {(int(u), int(v)) for u, v in zip(src.tolist(), dst.tolist(), strict=True) if u != v}
    if directed:
        edges = sorted(arcs)
    else:
        edges = sorted({(min(u, v), max(u, v)) for u, v in arcs})
    truth = {}
    for c, lab in labels.items():
        if lab.dtype != torch.bool:
            continue
        filled = torch.where(cells >= 0, lab[cells.clamp(min=0)], torch.zeros((), dtype=torch.bool))
        truth[c] = ["".join("1" if x else "0" for x in step.tolist()) for step in filled]
    source = int(traj.inputs["s"].argmax()) if "s" in traj.inputs else None
    return {
        "n": int(cells.shape[1]),
        "steps": int(cells.shape[0]),
        "pos": [[_r((x - lo[0]) / span, 3), _r((y - lo[1]) / span, 3)] for x, y in pos],
        "edges": [list(e) for e in edges],
        "directed": directed,
        "source": source,
        "valid": ["".join("1" if x >= 0 else "0" for x in step.tolist()) for step in cells],
        "truth": truth,
    }


def _histogram(col: Tensor) -> dict:
    pos = col[col > 0]
    if pos.numel() == 0:
        return {"zeros": int(col.numel()), "edges": [], "counts": []}
    top = float(pos.max())
    counts = torch.histc(pos, bins=HISTOGRAM_BINS, min=0.0, max=top)
    step = top / HISTOGRAM_BINS
    return {
        "zeros": int((col <= 0).sum()),
        "edges": [_r(i * step) for i in range(HISTOGRAM_BINS + 1)],
        "counts": [int(c) for c in counts.tolist()],
    }


def _best_concept(scores, f: int) -> dict | None:
    """The boolean concept of feature ``f``'s highest AUROC, else the scalar concept of its
    highest |Spearman| (the rule of :func:`sae.feature_scores.best_features`, per feature)."""
    a = scores.auroc[f]
    if scores.bool_concepts and bool((a == a).any()):
        i = int(torch.nan_to_num(a, nan=-1.0).argmax())
        return {"concept": scores.bool_concepts[i], "auroc": _r(a[i])}
    if scores.scalar_concepts:
        i = int(scores.spearman[f].abs().argmax())
        return {"concept": scores.scalar_concepts[i], "spearman": _r(scores.spearman[f, i])}
    return None


def _examples(col: Tensor, index, gen: torch.Generator) -> list[dict]:
    """The :data:`TOP_EXAMPLES` rows where ``col`` is largest, strongest first, then
    :data:`RANDOM_EXAMPLES` drawn uniformly from the other rows where it fires."""
    on = (col > 0).nonzero().flatten()
    if not on.numel():
        return []
    _, top = col.topk(min(TOP_EXAMPLES, int(on.numel())))
    rest = on[~torch.isin(on, top)]
    pick = rest[torch.randperm(rest.numel(), generator=gen)[:RANDOM_EXAMPLES]]
    return [
        {
            "kind": kind,
            "graph": int(index.graph[r]),
            "node": int(index.node[r]),
            "step": int(index.step[r]),
        }
        for kind, rows in (("top", top), ("random", pick))
        for r in rows.tolist()
    ]


def _concept_rows(scores: ConceptTable, groups: dict, baselines: dict, verdicts: list) -> list:
    """One row of the page's concept table per concept: best feature, groups, baselines,
    verdicts (boolean concepts) or best Spearman (scalar ones)."""
    rows = []
    for i, c in enumerate(scores.bool_concepts):
        j = int(torch.nan_to_num(scores.auroc[:, i], nan=-1.0).argmax())
        rows.append(
            {
                "name": c,
                "kind": "bool",
                "positive_rate": _r(scores.positive_rate[i]),
                "best_feature": j,
                "best_auroc": _r(scores.auroc[j, i]),
                "group": groups[c],
                "baselines": baselines.get(c, {}),
                "strongest_baseline": strongest_baseline(baselines.get(c, {})),
                "causal": [v for v in verdicts if v["concept"] == c],
            }
        )
    for i, c in enumerate(scores.scalar_concepts):
        j = int(scores.spearman[:, i].abs().argmax())
        rows.append(
            {
                "name": c,
                "kind": "scalar",
                "best_feature": j,
                "best_spearman": _r(scores.spearman[j, i]),
            }
        )
    return rows


def gather(
    model,
    sae,
    eval_data,
    results: dict | None = None,
    *,
    graph_ids: list[int] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """The browser's data for ``sae`` on ``model`` over the held-out graphs ``eval_data``.

    ``results``: the study's ``results.json`` (verdicts, baselines, and a check that the rows
    are the study's); ``graph_ids``: the study's index of each held-out graph (shown on the
    page). Returns ``{"meta", "concepts", "features", "details", "graphs"}``: ``features``
    one index row per feature, ``details[f]`` the feature's panel, ``graphs`` the drawings.
    """
    from tqdm.auto import tqdm

    from hooked_nar.data.generators import GRAPH_CONVENTIONS
    from sae.activation_store import ActivationStore
    from sae.evaluate import encode_rows

    results = results or {}
    algorithm = model.cfg.algorithm
    hook = getattr(sae.cfg.metadata, "hook_name", None) or "hook_node_out"
    store = ActivationStore.from_model(model, eval_data, hooks=hook, progress=progress)
    rows, index, labels = store.for_analysis()
    labels = {c: v for c, v in labels.items() if v.unique().numel() > 1}  # as analyse_sae
    acts, _ = encode_rows(sae, rows)
    acts = acts.float()
    scores = concept_table(acts, labels)
    F = acts.shape[1]
    bools, scalars = scores.bool_concepts, scores.scalar_concepts

    baselines = study_baselines(results, bools)
    baseline_source = "results.json"
    if not baselines:
        baselines = computed_baselines(rows, labels, bools, seed=seed)
        baseline_source = "computed by the browser"
    causal = causal_by_feature(results)
    verdicts = causal_verdicts(results)
    reads = decoder_reads(model, sae, acts)

    freq = scores.frequency
    firing = acts > 0
    mean_when_firing = (acts * firing).sum(0) / firing.sum(0).clamp(min=1)
    max_act = acts.max(0).values
    auroc = scores.auroc  # [F, Cb]
    groups = concept_groups(scores)

    gen = torch.Generator().manual_seed(seed)
    features, details, used_graphs = [], {}, set()
    for f in tqdm(range(F), desc="browser features", disable=not progress):
        col = acts[:, f]
        best = _best_concept(scores, f) if freq[f] > 0 else None  # dead: every AUROC 0.5
        member = [c for c in bools if f in groups[c]]
        features.append(
            {
                "id": f,
                "firing_rate": _r(freq[f]),
                "mean_activation": _r(mean_when_firing[f]),
                "max_activation": _r(max_act[f]),
                "best": best,
                "groups": member,
                "causal": causal.get(f, []),
                "dead": bool(freq[f] == 0),
                "dense": bool(freq[f] > DENSE_THRESHOLD),
            }
        )
        examples = _examples(col, index, gen)
        details[f] = {
            "id": f,
            "histogram": _histogram(col),
            "examples": examples,
            "auroc": {c: _r(auroc[f, i]) for i, c in enumerate(bools)},
            "spearman": {c: _r(scores.spearman[f, i]) for i, c in enumerate(scalars)},
            "decoder": reads["features"][f],
            "acts": {},  # graph -> [S][n], filled below
        }
        used_graphs.update(e["graph"] for e in examples)

    directed = GRAPH_CONVENTIONS[algorithm].directed
    graphs, cells_of = {}, {}
    for g in sorted(used_graphs):
        cells = _graph_cells(index, g)
        cells_of[g] = cells
        graphs[g] = graph_drawing(eval_data[g], cells, labels, directed, seed)
        graphs[g]["study_index"] = None if graph_ids is None else int(graph_ids[g])
    for f, d in details.items():
        for g in sorted({e["graph"] for e in d["examples"]}):
            cells = cells_of[g]
            vals = torch.where(cells >= 0, acts[cells.clamp(min=0), f], torch.zeros(()))
            d["acts"][g] = [[_r(v) for v in step] for step in vals.tolist()]

    concepts = _concept_rows(scores, groups, baselines, verdicts)

    study_rows = (
        results.get("sae", {}).get("evaluation", {}).get("reconstruction", {}).get("num_rows")
    )
    meta = {
        "algorithm": algorithm,
        "hook": hook,
        "d_sae": F,
        "rows": int(acts.shape[0]),
        "graphs": len(eval_data),
        "study_rows": study_rows,
        "sae_config": results.get("sae", {}).get("config"),
        "model": str(getattr(sae.cfg.metadata, "model_name", "") or ""),
        "baseline_source": baseline_source,
        "group_auroc": GROUP_AUROC,
        "dense_threshold": DENSE_THRESHOLD,
        "decoder_heads": reads["heads"],
        "decoder_note": reads["note"],
        "causal_tested": bool(verdicts),
    }
    return {
        "meta": meta,
        "concepts": concepts,
        "features": features,
        "details": details,
        "graphs": graphs,
    }
