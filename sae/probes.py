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

import torch
from torch import Tensor

from sae.concepts import auroc, pearson

__all__ = ["ProbeResult", "graph_split", "linear_probe", "probe_concepts"]


@dataclass
class ProbeResult:
    """Test-set figures of one probe and of its shuffled-label control.

    Boolean: ``auroc``, ``accuracy``, ``f1`` (at 0.5); scalar: ``r2`` and ``pearson`` (in
    ``auroc``'s place the fields hold NaN). ``num_train`` / ``num_test`` rows."""

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

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return asdict(self)


def graph_split(graph: Tensor, test_fraction: float = 0.3, seed: int = 0) -> tuple[Tensor, Tensor]:
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
    rows: Tensor,
    labels: Tensor,
    graph: Tensor,
    test_fraction: float = 0.3,
    seed: int = 0,
    steps: int = 100,
    weight_decay: float = 1e-4,
) -> ProbeResult:
    """Probe ``labels`` [R] (bool: logistic; float: ridge) from ``rows`` [R, d].

    Split by ``graph`` [R]; inputs standardised with training statistics; ``steps`` LBFGS
    iterations; L2 penalty ``weight_decay``. The control refits on permuted training labels.
    """
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
    shuffled = labels[train][torch.randperm(int(train.sum()), generator=gen)]
    nan = float("nan")
    if labels.dtype == torch.bool:
        if labels[train].all() or not labels[train].any():
            raise ValueError("the training split has a single class; use more graphs")
        with torch.enable_grad():
            w, b = _fit_logistic(x[train], labels[train], steps, weight_decay)
            wc, bc = _fit_logistic(x[train], shuffled, steps, weight_decay)
        logit = x[test] @ w + b
        pred = logit > 0
        y = labels[test]
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        f1 = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
        return ProbeResult(
            "bool",
            float(auroc(logit, y)[0]),
            float((pred == y).float().mean()),
            float(f1),
            nan,
            nan,
            float(auroc(x[test] @ wc + bc, y)[0]),
            nan,
            int(train.sum()),
            int(test.sum()),
        )
    y = labels.float()
    w, b = _fit_ridge(x[train], y[train], weight_decay)
    wc, bc = _fit_ridge(x[train], shuffled.float(), weight_decay)
    pred = x[test] @ w + b
    return ProbeResult(
        "scalar",
        nan,
        nan,
        nan,
        _r2(pred, y[test]),
        float(pearson(pred, y[test])[0]),
        nan,
        _r2(x[test] @ wc + bc, y[test]),
        int(train.sum()),
        int(test.sum()),
    )


def probe_concepts(
    rows: Tensor, index, labels: dict[str, Tensor] | None = None, **kwargs
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
