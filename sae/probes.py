"""Linear probes: what a linear read-out of the same activations can tell about a concept.

Logistic regression (boolean concepts) or ridge regression (scalar concepts) in torch, with
standardised inputs, trained on a split *by graph* (rows of one graph are all train or all
test, so a probe cannot memorise a graph). A shuffled-label control (training labels
permuted among the training rows, same test labels) shows what the probe reads from chance.

>>> r = linear_probe(rows, labels["is_frontier"], index.graph)
>>> r.auroc, r.control_auroc                             # e.g. 1.0 vs ~0.5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int, Shaped
from torch import Tensor

from sae.feature_scores import auroc, pearson

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch_geometric.data import Data

    from hooked_nar.data import CLRSDataset
    from hooked_nar.model import HookedNAR
    from hooked_nar.model.cache import RowIndex


__all__ = ["ProbeResult", "concept_baselines", "graph_split", "linear_probe", "probe_concepts"]


@dataclass
class ProbeResult:
    """Test-set figures of one probe and of its shuffled-label control.

    Boolean: ``auroc``, ``accuracy``, ``f1`` (at 0.5); scalar: ``r2`` and ``pearson`` (in
    ``auroc``'s place the fields hold NaN). ``num_train`` / ``num_test`` rows. The control
    (``control_auroc`` / ``control_r2``) is the mean over permutations, ``control_sd`` its
    standard deviation."""

    kind: str
    auroc: float
    accuracy: float
    f1: float
    r2: float
    pearson: float
    control_auroc: float
    control_r2: float
    num_train: int
    num_test: int
    control_sd: float = float("nan")

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return asdict(self)


def graph_split(
    graph: Int[Tensor, " rows"], test_fraction: float = 0.3, seed: int = 0
) -> tuple[Bool[Tensor, " rows"], Bool[Tensor, " rows"]]:
    """Boolean masks ``(train, test)`` over rows, splitting whole graphs (ids ``graph`` [R])."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    ids = graph.unique()
    if ids.numel() < 2:
        raise ValueError("a split by graph needs rows from at least two graphs")
    gen = torch.Generator().manual_seed(seed)
    perm = ids[torch.randperm(ids.numel(), generator=gen)]
    n_test = min(max(1, round(test_fraction * ids.numel())), ids.numel() - 1)
    test = torch.isin(graph, perm[:n_test])
    return ~test, test


def _fit_logistic(x: Tensor, y: Tensor, steps: int, weight_decay: float) -> tuple[Tensor, Tensor]:
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    yf = y.float()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, yf)
        loss = loss + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _fit_ridge(x: Tensor, y: Tensor, weight_decay: float) -> tuple[Tensor, Tensor]:
    xd, yd = x.double(), y.double()
    xm, ym = xd.mean(0), yd.mean()
    xc = xd - xm
    a = xc.T @ xc + weight_decay * x.shape[0] * torch.eye(x.shape[1], dtype=torch.double)
    w = torch.linalg.solve(a, xc.T @ (yd - ym))
    return w.float(), (ym - xm @ w).float()


def _r2(pred: Tensor, y: Tensor) -> float:
    ss = (y - y.mean()).pow(2).sum()
    return float("nan") if ss == 0 else float(1 - (pred - y).pow(2).sum() / ss)


@torch.no_grad()
def linear_probe(
    rows: Float[Tensor, "rows d"],
    labels: Shaped[Tensor, " rows"],
    graph: Int[Tensor, " rows"],
    test_fraction: float = 0.3,
    seed: int = 0,
    steps: int = 100,
    weight_decay: float = 1e-4,
    num_controls: int = 8,
) -> ProbeResult:
    """Probe ``labels`` [R] (bool: logistic; float: ridge) from ``rows`` [R, d].

    Split by ``graph`` [R]; inputs standardised with training statistics; ``steps`` LBFGS
    iterations; L2 penalty ``weight_decay``. The control refits on ``num_controls``
    permutations of the training labels.
    """
    if num_controls < 1:
        raise ValueError(f"num_controls must be >= 1, got {num_controls}")
    if rows.ndim != 2 or labels.shape != (rows.shape[0],) or graph.shape != (rows.shape[0],):
        raise ValueError(
            f"rows must be [R, d] with labels and graph [R]; got {tuple(rows.shape)}, "
            f"{tuple(labels.shape)}, {tuple(graph.shape)}"
        )
    train, test = graph_split(graph, test_fraction, seed)
    x = rows.float()
    mu, sd = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
    x = (x - mu) / sd
    gen = torch.Generator().manual_seed(seed + 1)
    n_train = int(train.sum())
    shuffles = [labels[train][torch.randperm(n_train, generator=gen)] for _ in range(num_controls)]
    nan = float("nan")
    if labels.dtype == torch.bool:
        if labels[train].all() or not labels[train].any():
            raise ValueError("the training split has a single class; use more graphs")
        with torch.enable_grad():
            w, b = _fit_logistic(x[train], labels[train], steps, weight_decay)
            fits = [_fit_logistic(x[train], sh, steps, weight_decay) for sh in shuffles]
        logit = x[test] @ w + b
        pred = logit > 0
        y = labels[test]
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        f1 = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
        controls = torch.tensor([float(auroc(x[test] @ wc + bc, y)[0]) for wc, bc in fits])
        return ProbeResult(
            "bool",
            float(auroc(logit, y)[0]),
            float((pred == y).float().mean()),
            float(f1),
            nan,
            nan,
            float(controls.mean()),
            nan,
            int(train.sum()),
            int(test.sum()),
            float(controls.std()) if num_controls > 1 else nan,
        )
    y = labels.float()
    w, b = _fit_ridge(x[train], y[train], weight_decay)
    fits = [_fit_ridge(x[train], sh.float(), weight_decay) for sh in shuffles]
    controls = torch.tensor([_r2(x[test] @ wc + bc, y[test]) for wc, bc in fits])
    pred = x[test] @ w + b
    return ProbeResult(
        "scalar",
        nan,
        nan,
        nan,
        _r2(pred, y[test]),
        float(pearson(pred, y[test])[0]),
        nan,
        float(controls.mean()),
        int(train.sum()),
        int(test.sum()),
        float(controls.std()) if num_controls > 1 else nan,
    )


def probe_concepts(
    rows: Float[Tensor, "rows d"],
    index: RowIndex,
    labels: dict[str, Shaped[Tensor, " rows"]] | None = None,
    **kwargs,
) -> dict[str, ProbeResult]:
    """:func:`linear_probe` for every concept of ``labels`` (default ``index.concepts``).

    Concepts that are constant on the rows are skipped."""
    labels = index.concepts if labels is None else labels
    out = {}
    for c, y in labels.items():
        if y.unique().numel() < 2:
            continue
        out[c] = linear_probe(rows, y, index.graph, **kwargs)
    return out


def _two_sided(a: Tensor) -> Tensor:
    return torch.maximum(a, 1 - a)


def concept_baselines(
    model: HookedNAR,
    dataset: CLRSDataset | Sequence[Data],
    concepts: list[str] | None = None,
    hook: str = "hook_node_out",
    num_directions: int = 256,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """What a concept score must beat, per boolean concept, on the valid rows of ``dataset``
    at ``hook`` (every processor step): ``best_neuron`` (two-sided AUROC of the best single
    dimension, and ``neuron`` its index), ``random_median`` / ``random_q95`` (two-sided AUROC
    of ``num_directions`` random unit directions), ``probe`` (the probe on the trained
    model), ``probe_random_init`` (the same probe on a model of the same config with fresh
    random weights, seed ``seed``), ``probe_embedding`` (on the encoder's node embedding of
    each row's node; None for a model without one) and ``probe_control`` / ``probe_control_sd`` (shuffled labels).
    Concepts constant on the rows or on the probe's training split are left out."""
    from hooked_nar.model import HookedNAR
    from sae.activation_store import ActivationStore

    store = ActivationStore.from_model(model, dataset, hooks=hook, progress=False)
    rows, index, labels = store.for_analysis(hook)
    torch.manual_seed(seed)
    fresh = HookedNAR(model.cfg).eval()
    rand_rows, rand_index, _ = ActivationStore.from_model(
        fresh, dataset, hooks=hook, progress=False
    ).for_analysis(hook)
    if not torch.equal(rand_index.graph, index.graph):
        raise RuntimeError("the random-init model's rows do not line up with the model's")
    emb = _embedding_rows(model, dataset, index)
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(rows.shape[1], num_directions, generator=gen)
    projections = rows.float() @ directions
    out = {}
    for c, y in labels.items():
        if y.dtype != torch.bool or (concepts is not None and c not in concepts):
            continue
        if y.all() or not y.any():
            continue
        neurons = _two_sided(auroc(rows.float(), y).nan_to_num(0.5))
        rand = _two_sided(auroc(projections, y).nan_to_num(0.5))
        train, _ = graph_split(index.graph, seed=seed)
        if y[train].all() or not y[train].any():
            continue  # too few graphs for a probe of this concept
        probe = linear_probe(rows, y, index.graph, seed=seed)
        out[c] = {
            "best_neuron": float(neurons.max()),
            "neuron": int(neurons.argmax()),
            "random_median": float(rand.median()),
            "random_q95": float(torch.quantile(rand.double(), 0.95)),
            "probe": probe.auroc,
            "probe_control": probe.control_auroc,
            "probe_control_sd": probe.control_sd,
            "probe_random_init": linear_probe(rand_rows, y, index.graph, seed=seed).auroc,
            "probe_embedding": None
            if emb is None
            else linear_probe(emb, y, index.graph, seed=seed).auroc,
        }
    return out


#: The encoder's node embedding, the input-level baseline of :func:`concept_baselines`.
EMBEDDING_HOOK = "encoder.hook_node_emb"


@torch.no_grad()
def _embedding_rows(model, dataset, index) -> Tensor | None:
    """``[R, d]``: the encoder's node embedding of each row's (graph, node); None when the
    model never runs its encoder (a processor that runs the trajectory itself: discrete)."""
    from hooked_nar.data import CLRSLoader

    per_graph = []
    for batch in CLRSLoader(dataset, batch_size=64, device=model.device):
        _, cache = model.run_with_cache(batch, names_filter=lambda n: n == EMBEDDING_HOOK)
        if EMBEDDING_HOOK not in cache.cache_dict:
            return None
        emb = cache[EMBEDDING_HOOK]
        per_graph += [emb[batch.ptr[g] : batch.ptr[g + 1]] for g in range(batch.num_graphs)]
    return torch.stack(
        [per_graph[int(g)][int(n)] for g, n in zip(index.graph, index.node, strict=True)]
    )
