"""How good is an SAE: reconstruction on the store's valid rows, and downstream accuracy.

Reconstruction (valid rows only): ``mse`` (mean over rows and dimensions),
``explained_variance`` = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, ``l0`` (mean active
features per row), ``frac_dead`` (features that never fire on the rows) and ``frac_dense``
(features firing on more than ``dense_threshold`` of the rows).

Downstream, the NAR analogue of "loss recovered": the model runs on ``dataset`` clean, with
the SAE spliced at every selected step *without* the error term, and with the hook
mean-ablated (each step's activation replaced by the store's mean over valid rows of that
step; steps the store never saw get the global mean). For accuracy
``recovered = (acc_sae - acc_ablated) / (acc_clean - acc_ablated)``, and for the hint loss
``(loss_ablated - loss_sae) / (loss_ablated - loss_clean)``. Accuracy is the mean over
fields of the CLRS metric of :func:`hooked_nar.evaluate.evaluate` (MSE fields left out).
Each accuracy recovered (output, hint, whole-graph) gets a 95% bootstrap interval over graphs
(``recovered_ci``: graphs resampled, the ratio of the resampled means); a value above 1 whose
interval covers 1 is "within noise of 1" (:func:`recovered_text`).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sae_lens import SAE
    from torch_geometric.data import Data

    from hooked_nar.data import CLRSDataset
    from hooked_nar.model import HookedNAR
    from sae.activation_store import ActivationStore

__all__ = ["downstream", "evaluate_sae", "reconstruction", "recovered_text"]


@torch.no_grad()
def encode_rows(
    sae: SAE, rows: Float[Tensor, "rows d_in"], batch_size: int = 8192
) -> tuple[Float[Tensor, "rows d_sae"], Float[Tensor, "rows d_in"]]:
    """Feature activations ``[R, d_sae]`` and reconstructions ``[R, d_in]`` of ``rows``."""
    acts, recons = [], []
    for chunk in rows.split(batch_size):
        f = sae.encode(chunk.to(sae.dtype))
        acts.append(f)
        recons.append(sae.decode(f))
    return torch.cat(acts), torch.cat(recons)


@torch.no_grad()
def reconstruction(
    sae: SAE, rows: Float[Tensor, "rows d_in"], dense_threshold: float = 0.5
) -> dict[str, float]:
    """Reconstruction metrics of ``sae`` on ``rows`` [R, d_in] (see module docstring)."""
    if rows.ndim != 2 or rows.shape[1] != sae.cfg.d_in:
        raise ValueError(f"rows must be [R, {sae.cfg.d_in}], got {tuple(rows.shape)}")
    acts, recons = encode_rows(sae, rows)
    err = (recons.float() - rows.float()).pow(2)
    total = (rows - rows.mean(0)).pow(2).sum()
    freq = (acts > 0).float().mean(0)
    return {
        "mse": float(err.mean()),
        "explained_variance": float(1 - err.sum() / total),
        "l0": float((acts > 0).float().sum(-1).mean()),
        "frac_dead": float((freq == 0).float().mean()),
        "frac_dense": float((freq > dense_threshold).float().mean()),
        "num_rows": int(rows.shape[0]),
    }


def _accuracy(res: dict) -> tuple[float, float]:
    outs = [v["value"] for v in res["outputs"].values() if v["metric"] != "mse"]
    hints = [v["value"] for v in res["hints"].values() if v["metric"] != "mse"]
    mean = lambda xs: float(sum(xs) / len(xs)) if xs else float("nan")  # noqa: E731
    return mean(outs), mean(hints)


@torch.no_grad()
def _losses(model, dataset, batch_size: int) -> tuple[float, float]:
    """Mean total loss and hint loss (total minus output terms; the processor's own loss when
    it computes one) per batch."""
    from hooked_nar.data import CLRSLoader
    from hooked_nar.model.fields import field_loss

    total = hint = 0.0
    n = 0
    for batch in CLRSLoader(dataset, batch_size=batch_size, device=model.device):
        logits = model(batch)
        loss = float(model.loss(logits, batch))
        out = 0.0
        # a processor that computes its own loss (discrete: the stepwise hint loss) has no
        # output terms in it to subtract
        for f in model.output_fields if logits.loss is None else []:
            valid = torch.ones(model._rows(f, batch), dtype=torch.bool, device=model.device)
            out += float(
                field_loss(
                    f, logits.outputs[f.name], batch[f.name], valid, batch, logits.pointer_index
                )
            )
        total, hint, n = total + loss, hint + loss - out, n + 1
    return total / n, hint / n


def _mean_ablation(model, hook: str, means: dict[int, Tensor], fallback: Tensor, steps):
    targets = range(len(model.steps)) if steps is None else steps

    def make(t: int):
        vec = means.get(t, fallback)
        return lambda x, hook: vec.to(x.dtype).expand_as(x).clone()

    return model.hooks(fwd_hooks=[(f"steps.{t}.{hook}", make(t)) for t in targets])


def _recovered(with_sae: float, clean: float, ablated: float) -> float:
    gap = clean - ablated
    return float("nan") if gap == 0 else float((with_sae - ablated) / gap)


_ACCURACIES = ("output_accuracy", "hint_accuracy", "graph_accuracy")


def _per_graph_accuracy(model, dataset, batch_size: int) -> dict[str, Tensor]:
    """``{accuracy: [G]}``: output, hint and whole-graph accuracy of each graph alone."""
    from hooked_nar.evaluate import evaluate

    out: dict[str, list[float]] = {k: [] for k in _ACCURACIES}
    for i in range(len(dataset)):
        res = evaluate(model, dataset[i : i + 1], batch_size=batch_size)
        o, h = _accuracy(res)
        for k, v in zip(_ACCURACIES, (o, h, res["graph_accuracy"]), strict=True):
            out[k].append(v)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


def recovered_ci(
    sae: Tensor, clean: Tensor, ablated: Tensor, num_resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% bootstrap interval of ``(mean sae - mean ablated) / (mean clean - mean ablated)``
    over graphs (per-graph values ``[G]``, the same graphs resampled in all three)."""
    gen = torch.Generator().manual_seed(seed)
    G = sae.numel()
    pick = torch.randint(G, (num_resamples, G), generator=gen)
    s, c, a = sae[pick].mean(1), clean[pick].mean(1), ablated[pick].mean(1)
    ratio = (s - a) / (c - a)
    ratio = ratio[torch.isfinite(ratio)]
    if ratio.numel() < num_resamples // 2:  # the gap vanishes in most resamples
        return float("nan"), float("nan")
    lo, hi = torch.quantile(ratio, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return float(lo), float(hi)


def recovered_text(value: float, ci: tuple[float, float] | None = None, digits: int = 3) -> str:
    """``value [lo, hi]``, with "(within noise of 1)" when the value exceeds 1 and the
    interval covers 1."""
    if value is None or math.isnan(value):
        return "-"
    if ci is None or any(math.isnan(x) for x in ci):
        return f"{value:.{digits}f}"
    text = f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text + (" (within noise of 1)" if value > 1 and ci[0] <= 1 <= ci[1] else "")


@torch.no_grad()
def downstream(
    model: HookedNAR,
    sae: SAE,
    dataset: CLRSDataset | Sequence[Data],
    means: dict[int, Tensor],
    global_mean: Float[Tensor, " d_in"],
    hook: str = "hook_node_out",
    steps=None,
    batch_size: int = 32,
) -> dict:
    """Clean / SAE-spliced (no error term) / mean-ablated accuracy and loss on ``dataset``.

    ``means``: ``{step: [d_in]}`` for the ablation, ``global_mean`` for other steps.
    ``steps``: where the SAE is spliced and the hook ablated (``None``: every step).
    """
    from hooked_nar.evaluate import evaluate

    was_training = model.training
    model.eval()
    model.ensure_steps(max(int(d.length.max()) for d in dataset))
    out: dict = {}
    per_graph: dict[str, dict[str, Tensor]] = {}
    try:
        for name, ctx in (
            ("clean", nullcontext()),
            ("sae", model.saes(sae, hook=hook, steps=steps, use_error_term=False)),
            ("ablated", _mean_ablation(model, hook, means, global_mean, steps)),
        ):
            with ctx:
                res = evaluate(model, dataset, batch_size=batch_size)
                loss, hint_loss = _losses(model, dataset, batch_size)
                per_graph[name] = _per_graph_accuracy(model, dataset, batch_size)
            out_acc, hint_acc = _accuracy(res)
            out[name] = {
                "output_accuracy": out_acc,
                "hint_accuracy": hint_acc,
                "graph_accuracy": res["graph_accuracy"],
                "loss": loss,
                "hint_loss": hint_loss,
                "metrics": res,
            }
    finally:
        model.train(was_training)
    c, s, a = out["clean"], out["sae"], out["ablated"]
    out["recovered"] = {
        "output_accuracy": _recovered(
            s["output_accuracy"], c["output_accuracy"], a["output_accuracy"]
        ),
        "hint_accuracy": _recovered(s["hint_accuracy"], c["hint_accuracy"], a["hint_accuracy"]),
        "graph_accuracy": _recovered(s["graph_accuracy"], c["graph_accuracy"], a["graph_accuracy"]),
        "hint_loss": _recovered(s["hint_loss"], c["hint_loss"], a["hint_loss"]),
    }
    out["recovered_ci"] = {
        k: recovered_ci(per_graph["sae"][k], per_graph["clean"][k], per_graph["ablated"][k])
        for k in _ACCURACIES
    }
    return out


def evaluate_sae(
    sae: SAE,
    store: ActivationStore,
    model: HookedNAR | None = None,
    dataset: CLRSDataset | Sequence[Data] | None = None,
    hook: str | None = None,
    steps="metadata",
    dense_threshold: float = 0.5,
    batch_size: int = 32,
) -> dict:
    """Reconstruction on ``store`` and, with ``model`` and ``dataset``, downstream figures.

    ``steps``: where to splice for the downstream test; ``"metadata"`` (default) uses the
    SAE's training selection (``cfg.metadata.steps``, ``None`` = every step).
    Returns ``{"reconstruction": {...}, "downstream": {...}}`` (see :func:`downstream`).
    """
    hook = store._hook(hook if hook is not None else getattr(sae.cfg.metadata, "hook_name", None))
    if sae.cfg.d_in != store.d_in[hook]:
        raise ValueError(
            f"sae has d_in={sae.cfg.d_in} but {hook} in the store has {store.d_in[hook]}"
        )
    out = {"reconstruction": reconstruction(sae, store.rows(hook), dense_threshold)}
    if (model is None) != (dataset is None):
        raise ValueError("pass both model and dataset for the downstream test, or neither")
    if model is not None:
        if steps == "metadata":
            steps = getattr(sae.cfg.metadata, "steps", None)
        means = store.mean(hook, per_step=True)
        out["downstream"] = downstream(
            model,
            sae,
            dataset,
            means,
            store.mean(hook, per_step=False),
            hook=hook,
            steps=steps,
            batch_size=batch_size,
        )
    return out
