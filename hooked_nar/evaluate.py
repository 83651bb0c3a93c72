"""CLRS metrics for a ``HookedNAR`` on a dataset.

Per output field: pointer and mask_one -> node accuracy; mask -> F1; categorical ->
accuracy; scalar -> MSE. Whole-graph accuracy: the fraction of graphs whose every
(non-scalar) output is entirely correct. The same metrics for hints, per processor step
and pooled over valid steps (padded steps never count).

    hooked-nar evaluate --checkpoint bfs --generator er --num-nodes 64
    hooked-nar evaluate --table          # the README's benchmark table
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from hooked_nar.algorithms import registered_algorithms
from hooked_nar.model.fields import Field, decode, row_graph
from hooked_nar.model.steps import hint_step_mask
from hooked_nar.stats import bootstrap_ci

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch_geometric.data import Data

    from hooked_nar.data import CLRSDataset
    from hooked_nar.model import HookedNAR

METRIC_NAMES = {
    "pointer": "node_accuracy",
    "mask_one": "accuracy",
    "mask": "f1",
    "categorical": "accuracy",
    "scalar": "mse",
}


class _Tally:
    """Sufficient statistics of one metric, optionally per step."""

    def __init__(self) -> None:
        self.s = defaultdict(lambda: defaultdict(float))  # step -> stat -> value

    def add(self, field: Field, pred, target, valid, graph_of_row, step) -> None:
        """Accumulate rows ``valid`` (bool) of one step (``step`` = None for outputs)."""
        st = self.s[step]
        if field.type == "mask":
            p, t = pred[valid] > 0.5, target[valid] > 0.5
            st["tp"] += float((p & t).sum())
            st["fp"] += float((p & ~t).sum())
            st["fn"] += float((~p & t).sum())
        elif field.type == "scalar":
            st["se"] += float(((pred - target.float())[valid] ** 2).sum())
            st["n"] += float(valid.sum())
        elif field.type in ("categorical",):
            ok = (pred.argmax(-1) == target.argmax(-1))[valid]
            st["correct"] += float(ok.sum())
            st["n"] += float(ok.numel())
        elif field.type == "mask_one":
            # one decision per graph: the argmax row must be the true row
            hit = ((pred > 0.5) & (target > 0.5) & valid).float()
            graphs = graph_of_row[valid].unique()
            per_graph = hit.new_zeros(int(graph_of_row.max()) + 1).index_add_(0, graph_of_row, hit)
            st["correct"] += float(per_graph[graphs].clamp(max=1).sum())
            st["n"] += float(graphs.numel())
        else:  # pointer
            ok = (pred == target.long())[valid]
            st["correct"] += float(ok.sum())
            st["n"] += float(ok.numel())

    @staticmethod
    def value(field: Field, st) -> float:
        if field.type == "mask":
            denom = 2 * st["tp"] + st["fp"] + st["fn"]
            return 1.0 if denom == 0 else 2 * st["tp"] / denom
        if field.type == "scalar":
            return st["se"] / max(st["n"], 1)
        return st["correct"] / max(st["n"], 1)

    def summary(self, field: Field) -> dict:
        pooled = defaultdict(float)
        for st in self.s.values():
            for k, v in st.items():
                pooled[k] += v
        out = {"metric": METRIC_NAMES[field.type], "value": self.value(field, pooled)}
        steps = sorted(k for k in self.s if k is not None)
        if steps:
            out["per_step"] = [self.value(field, self.s[t]) for t in steps]
        return out


def _graph_correct(field: Field, pred, target, batch) -> torch.Tensor:
    """[B] bool: every row of this output field is correct in the graph."""
    if field.type == "scalar":
        return torch.ones(batch.num_graphs, dtype=torch.bool, device=pred.device)
    if field.type == "categorical":
        wrong = pred.argmax(-1) != target.argmax(-1)
    elif field.type == "pointer":
        wrong = pred != target.long()
    else:
        wrong = (pred > 0.5) != (target > 0.5)
    g = row_graph(field, batch)
    return wrong.new_zeros(batch.num_graphs, dtype=torch.float).index_add_(0, g, wrong.float()) == 0


@torch.no_grad()
def evaluate(
    model: HookedNAR,
    dataset: CLRSDataset | Sequence[Data],
    batch_size: int = 32,
    progress: bool = False,
) -> dict:
    """CLRS metrics of ``model`` on ``dataset`` (a CLRSDataset or list of Data).

    Returns ``{"outputs": {field: {"metric", "value", "graph_accuracy"}}, "graph_accuracy": float,
    "hints": {field: {"metric", "value", "per_step": [...]}}, "num_graphs": int}``.
    """
    from hooked_nar.data import CLRSLoader

    was_training = model.training
    model.eval()
    out_tally = {f.name: _Tally() for f in model.output_fields}
    hint_tally = {f.name: _Tally() for f in model.hint_fields}
    graphs_ok, num_graphs = 0.0, 0
    field_graphs_ok = {f.name: 0.0 for f in model.output_fields}
    loader = CLRSLoader(dataset, batch_size=batch_size, shuffle=False)
    device = next(model.parameters()).device
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        batch = batch.to(device)
        logits = model(batch)
        pidx = logits.pointer_index
        ok = torch.ones(batch.num_graphs, dtype=torch.bool, device=device)
        for f in model.output_fields:
            pred = decode(f, logits.outputs[f.name], batch, pidx)
            target = batch[f.name]
            rows = torch.ones(pred.shape[0], dtype=torch.bool, device=device)
            out_tally[f.name].add(f, pred, target, rows, row_graph(f, batch), None)
            field_ok = _graph_correct(f, pred, target, batch)
            field_graphs_ok[f.name] += float(field_ok.sum())
            ok &= field_ok
        graphs_ok += float(ok.sum())
        num_graphs += batch.num_graphs
        step_valid = hint_step_mask(batch, logits.num_processor_steps)
        for f in model.hint_fields:
            target = batch[f.name][:, 1 : logits.num_processor_steps + 1]
            pred = decode(f, logits.hints[f.name][:, : target.shape[1]], batch, pidx)
            g = row_graph(f, batch)
            for t in range(target.shape[1]):
                valid = step_valid[g, t]
                if valid.any():
                    hint_tally[f.name].add(f, pred[:, t], target[:, t], valid, g, t)
    model.train(was_training)
    outputs = {f.name: out_tally[f.name].summary(f) for f in model.output_fields}
    for f in model.output_fields:
        outputs[f.name]["graph_accuracy"] = field_graphs_ok[f.name] / max(num_graphs, 1)
    return {
        "outputs": outputs,
        "graph_accuracy": graphs_ok / max(num_graphs, 1),
        "hints": {f.name: hint_tally[f.name].summary(f) for f in model.hint_fields},
        "num_graphs": num_graphs,
    }


#: The benchmark distributions of ``hooked-nar evaluate --table``: name -> (generator, n).
#: ``clrs``: CLRS-30's own out-of-distribution test (its ER sampler, p = 0.5, n = 64);
#: ``sparse``: SALSA-style sparse ER (p = 2 ln n / n); ``er`` at n = 16: the validation
#: distribution of ``hooked-nar train`` (in distribution). The last two are opt-in (too slow
#: for the default table; ``--split NAME``): the scale tests of the discrete checkpoints.
BENCHMARK_SPLITS: dict[str, tuple[str, int]] = {
    "CLRS-30 ER p=0.5 n=64": ("clrs", 64),
    "sparse ER n=64": ("sparse", 64),
    "sparse ER n=160": ("sparse", 160),
    "WS n=64": ("ws", 64),
    "Delaunay n=64": ("delaunay", 64),
    "in-dist. ER n=16": ("er", 16),
    "CLRS-30 ER p=0.5 n=160": ("clrs", 160),
    "sparse ER n=1000": ("sparse", 1000),
}
#: The splits of the default table (every other split only when asked for).
DEFAULT_SPLITS = tuple(BENCHMARK_SPLITS)[:6]

#: Triplet-GMPNN (Ibarz et al. 2022), node accuracy of the main output on CLRS-30's OOD test,
#: where the registry quotes one (``Algorithm.triplet_gmpnn``).
TRIPLET_GMPNN = {
    name: algorithm.triplet_gmpnn
    for name, algorithm in registered_algorithms().items()
    if algorithm.triplet_gmpnn is not None
}


def main_output(model: HookedNAR) -> Field:
    """The output a checkpoint is judged on: its first pointer output (``pi``, ``topo``)."""
    pointers = [f for f in model.output_fields if f.type == "pointer"]
    return (pointers or model.output_fields)[0]


def split_dataset(algorithm: str, split: str, num_graphs: int, seed: int, progress: bool = False):
    """The seeded graphs of one :data:`BENCHMARK_SPLITS` split (the same for every checkpoint)."""
    from hooked_nar.data import CLRSDataset

    generator, n = BENCHMARK_SPLITS[split]
    return CLRSDataset(
        algorithm, num_graphs, generator=generator, sizes=(n,), seed=seed + n, progress=progress
    )


@torch.no_grad()
def per_graph_accuracy(
    model: HookedNAR,
    dataset: CLRSDataset | Sequence[Data],
    batch_size: int = 8,
    progress: bool = False,
) -> dict:
    """Node accuracy and correctness of :func:`main_output` per graph: ``{"field",
    "node_accuracy" [G], "graph_correct" [G]}`` (whole-graph: every output entirely right)."""
    from hooked_nar.data import CLRSLoader

    was_training = model.training
    model.eval()
    field = main_output(model)
    node_acc, graph_ok = [], []
    loader = CLRSLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        logits = model(batch)
        ok = torch.ones(batch.num_graphs, dtype=torch.bool)
        for f in model.output_fields:
            pred = decode(f, logits.outputs[f.name], batch, logits.pointer_index)
            ok &= _graph_correct(f, pred, batch[f.name], batch)
            if f == field:
                g = row_graph(f, batch)
                right = (pred == batch[f.name].long()).float()
                rows = torch.zeros(batch.num_graphs).index_add_(0, g, torch.ones_like(right))
                hits = torch.zeros(batch.num_graphs).index_add_(0, g, right)
                node_acc.append(hits / rows)
        graph_ok.append(ok.float())
    model.train(was_training)
    return {
        "field": field.name,
        "node_accuracy": torch.cat(node_acc),
        "graph_correct": torch.cat(graph_ok),
    }


def benchmark(
    model: HookedNAR, num_graphs: int = 32, seed: int = 1234, splits=None, progress: bool = False
) -> dict:
    """Per split (``splits``, default :data:`DEFAULT_SPLITS`; names of :data:`BENCHMARK_SPLITS`):
    node accuracy (mean over graphs) and whole-graph accuracy of :func:`main_output`, each with
    a 95% bootstrap interval over graphs."""
    out = {}
    for name in splits or DEFAULT_SPLITS:
        data = split_dataset(model.cfg.algorithm, name, num_graphs, seed)
        n = BENCHMARK_SPLITS[name][1]
        batch_size = 1 if n > 200 else 4 if n > 100 else 8
        r = per_graph_accuracy(model, data, batch_size=batch_size, progress=progress)
        out[name] = {
            "field": r["field"],
            "node_accuracy": float(r["node_accuracy"].mean()),
            "node_accuracy_ci": bootstrap_ci(r["node_accuracy"]),
            "graph_accuracy": float(r["graph_correct"].mean()),
            "graph_accuracy_ci": bootstrap_ci(r["graph_correct"]),
            "num_graphs": len(data),
        }
    return out


def benchmark_table(results: dict[str, dict]) -> str:
    """Markdown table of ``{checkpoint: {"algorithm", "splits": benchmark(...)}}``: node /
    whole-graph accuracy (%) per split, beside Triplet-GMPNN's CLRS-30 OOD node accuracy."""
    splits = list(next(iter(results.values()))["splits"]) if results else []
    head = "| checkpoint | output | " + " | ".join(splits) + " | Triplet-GMPNN (CLRS-30) |"
    lines = [head, "|" + "---|" * (len(splits) + 3)]
    for name, res in results.items():
        cells = [
            f"{100 * r['node_accuracy']:.1f} / {100 * r['graph_accuracy']:.0f}"
            for r in res["splits"].values()
        ]
        ref = TRIPLET_GMPNN.get(res["algorithm"])
        field = next(iter(res["splits"].values()))["field"]
        ref_cell = "-" if ref is None else f"{100 * ref:.2f}"
        lines.append(f"| {name} | {field} | " + " | ".join(cells) + f" | {ref_cell} |")
    return "\n".join(lines)
