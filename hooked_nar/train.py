"""Training loop for ``HookedNAR``: progress bar, periodic validation, atomic resumable
checkpoints (safetensors + JSON), and a learning-curve PNG.

    hooked-nar train --algorithm bfs --steps 2000 --out runs/train/bfs
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from hooked_nar.atomic import write_directory_atomically
from hooked_nar.model import HookedNAR, NARConfig
from hooked_nar.model.checkpoint import save_model, write_model_files

TRAIN_SIZES = (4, 7, 11, 13, 16)


def validation_score(results: dict) -> float:
    """Mean of the output metrics (MSE counts negatively), the quantity checkpoints select on."""
    vals = [
        -r["value"] if r["metric"] == "mse" else r["value"] for r in results["outputs"].values()
    ]
    return sum(vals) / len(vals)


def _save_training_state(path: Path, model, optimizer, state: dict, metadata: dict) -> None:
    """One directory with the model files plus optimizer and trainer state, written atomically."""

    def write(tmp: Path) -> None:
        write_model_files(model, tmp, metadata)
        opt = optimizer.state_dict()
        tensors = {
            f"{i}.{k}": v.detach().clone().reshape(-1) if v.dim() == 0 else v.detach().clone()
            for i, s in opt["state"].items()
            for k, v in s.items()
        }
        save_file(tensors, tmp / "optimizer.safetensors")
        (tmp / "trainer.json").write_text(
            json.dumps({**state, "param_groups": opt["param_groups"]}, indent=2)
        )

    write_directory_atomically(path, write)


def _load_training_state(path: Path, optimizer: torch.optim.Optimizer) -> dict:
    state = json.loads((path / "trainer.json").read_text())
    tensors = load_file(path / "optimizer.safetensors")
    opt_state: dict[int, dict] = {}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        opt_state.setdefault(int(i), {})[name] = v.reshape(()) if name == "step" else v
    optimizer.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    return state


def plot_learning_curve(history: dict, path: Path, title: str) -> None:
    """Training loss and validation score against step (``history`` of :func:`train`), as a
    PNG at ``path``."""
    from hooked_nar.plotting import pyplot, save_figure

    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(history["step"], history["loss"], lw=0.8)
    ax1.set(xlabel="step", ylabel="training loss", yscale="log", title=title)
    ax2.plot(history["val_step"], history["val_score"], marker="o")
    ax2.set(xlabel="step", ylabel="validation score (mean output metric)", ylim=(0, 1.02))
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def train(
    config: NARConfig,
    steps: int = 2000,
    batch_size: int = 32,
    lr: float = 1e-3,
    num_train: int = 4000,
    num_val: int = 64,
    eval_every: int = 250,
    out: str | Path | None = None,
    resume: bool = True,
    data_seed: int = 0,
    progress: bool = True,
) -> tuple[HookedNAR, dict]:
    """Train a ``HookedNAR`` on ER graphs with n in {4, 7, 11, 13, 16}; validate on n = 16.

    With ``out``: ``out/best`` (best validation score) and ``out/last`` (model plus optimizer
    state, resumed from when ``resume``), ``out/learning_curve.png``, ``out/history.json``.
    Returns the best model (weights as at its best validation) and the history.
    """
    from hooked_nar.data import CLRSDataset, CLRSLoader
    from hooked_nar.evaluate import evaluate

    torch.manual_seed(config.seed)
    train_set = CLRSDataset(
        config.algorithm, num_train, sizes=TRAIN_SIZES, seed=data_seed, progress=progress
    )
    val_set = CLRSDataset(
        config.algorithm, num_val, sizes=(16,), seed=data_seed + 10_000, progress=False
    )
    model = HookedNAR(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"step": [], "loss": [], "val_step": [], "val_score": [], "seconds": 0.0}
    start, best_score = 0, float("-inf")
    out = Path(out) if out is not None else None
    if out is not None and resume and (out / "last" / "trainer.json").is_file():
        model.load_state_dict(HookedNAR.from_pretrained(out / "last").state_dict())
        state = _load_training_state(out / "last", optimizer)
        start, history, best_score = state["step"], state["history"], state["best_score"]
        torch.manual_seed(config.seed + start)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}

    loader = CLRSLoader(train_set, batch_size=batch_size, shuffle=True, seed=config.seed + start)
    batches = iter(loader)
    t0 = time.perf_counter()
    bar = tqdm(range(start, steps), desc=f"train {config.algorithm}", disable=not progress)
    for step in bar:
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = model(batch, return_type="loss")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history["step"].append(step + 1)
        history["loss"].append(float(loss))
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            score = validation_score(evaluate(model, val_set))
            history["val_step"].append(step + 1)
            history["val_score"].append(score)
            bar.set_postfix(loss=f"{float(loss):.3f}", val=f"{score:.3f}")
            if score > best_score:
                best_score = score
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            if out is not None:
                history["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                _checkpoint(model, best_state, optimizer, out, step + 1, history, best_score)
    history["seconds"] += time.perf_counter() - t0
    model.load_state_dict(best_state)
    model.eval()
    if out is not None:
        (out / "history.json").write_text(json.dumps(history))
        plot_learning_curve(
            history, out / "learning_curve.png", f"{config.algorithm} ({config.processor})"
        )
    return model, history


def _checkpoint(
    model, best_state, optimizer, out: Path, step: int, history: dict, best: float
) -> None:
    meta = {"step": step, "best_validation_score": best}
    _save_training_state(
        out / "last", model, optimizer, {"step": step, "history": history, "best_score": best}, meta
    )
    current = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    save_model(model, out / "best", meta)
    model.load_state_dict(current)
