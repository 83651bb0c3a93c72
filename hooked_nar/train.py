"""Training loop for ``HookedNAR``: progress bar, periodic validation, atomic resumable
checkpoints (safetensors + JSON), and a learning-curve PNG.

    hooked-nar train --algorithm bfs --steps 2000 --out runs/train/bfs
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from hooked_nar.atomic import write_directory_atomically, write_text_atomic
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
            f"{i}.{k}": v.detach().cpu().clone().reshape(-1) if v.dim() == 0 else v.detach().cpu()
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
    from hooked_nar.figures import pyplot, save_figure

    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(history["step"], history["loss"], lw=0.8)
    ax1.set(xlabel="step", ylabel="training loss", yscale="log", title=title)
    ax2.plot(history["val_step"], history["val_score"], marker="o")
    ax2.set(xlabel="step", ylabel="validation score (mean output metric)", ylim=(0, 1.02))
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


@dataclass
class TrainOptions:
    """How ``train`` trains (everything but the model's :class:`NARConfig`).

    generator:
        graph generator of the training and validation sets (``"mixed"``, the default:
        CLRS's sampler with p in 0.1..0.9 and sparse ER, half each; ``"er"``: sparse ER
        only, as the checkpoints before the recipe were trained).
    stepwise:
        every step fed the true previous hints, all steps of a trajectory in one forward
        (:mod:`hooked_nar.stepwise`; needs ``hint_mode="encoded"``, ``hidden_recurrence=False``).
    randomise_positions:
        replace the ``pos`` input by sorted uniform numbers per graph in every batch (the
        order, and so every tie-break, is kept), as CLRS-30's ``random_pos``.
    grad_clip:
        maximum gradient norm (0: no clipping).
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    num_train: int = 4000
    num_val: int = 64
    eval_every: int = 250
    data_seed: int = 0
    generator: str = "mixed"
    stepwise: bool = False
    randomise_positions: bool = False
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        from hooked_nar.data.generators import GENERATORS

        for name in ("steps", "batch_size", "num_train", "num_val", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.data_seed < 0:
            raise ValueError(f"data_seed must be >= 0, got {self.data_seed}")
        if self.generator not in GENERATORS:
            raise ValueError(
                f"generator={self.generator!r} is unknown; valid: {', '.join(GENERATORS)}"
            )

    #: Options a resumed run may change (the others must match the run it resumes).
    RESUMABLE_CHANGES = ("steps", "eval_every")


def randomise_positions(batch, generator: torch.Generator) -> None:
    """Replace ``batch.pos`` [N] in place by sorted uniform numbers within each graph."""
    u = torch.rand(batch.num_nodes, generator=generator).to(batch.pos.device)
    order = torch.argsort(batch.batch.double() * 2 + u.double())  # by graph, then value
    batch.pos = u[order].to(batch.pos.dtype)  # nodes of a graph are contiguous


def _check_resume(path: Path, config: NARConfig, options: TrainOptions) -> None:
    """One-line ValueError when ``path`` (a ``last/`` folder) was trained with another model
    config or other training options than this run asks for."""
    from hooked_nar.model.checkpoint import checkpoint_config

    stored = checkpoint_config(path)
    asked = config.to_dict()
    diff = [k for k in asked if k in stored and stored[k] != asked[k]]
    trained = json.loads((path / "trainer.json").read_text()).get("options")
    if trained is not None:
        mine = asdict(options)
        diff += [
            k
            for k in mine
            if k not in TrainOptions.RESUMABLE_CHANGES and k in trained and trained[k] != mine[k]
        ]
    if diff:
        was = ", ".join(
            f"{k}={stored.get(k, (trained or {}).get(k))!r} (asked "
            f"{asked.get(k, getattr(options, k, None))!r})"
            for k in diff
        )
        raise ValueError(
            f"cannot resume {path.parent}: it was trained with {was}; "
            "pass --no-resume to start over or choose another --out"
        )


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
    device: str | torch.device = "cpu",
    **recipe,
) -> tuple[HookedNAR, dict]:
    """Train a ``HookedNAR`` on graphs with n in {4, 7, 11, 13, 16}; validate on n = 16.

    The recipe measured best per CPU-minute on Dijkstra (README, "Shipped checkpoints"):
    ``NARConfig(hint_mode="encoded")`` (own soft hints re-encoded, no teacher forcing) on
    ``generator="mixed"`` graphs, the defaults of ``hooked-nar train``.

    ``recipe``: the other fields of :class:`TrainOptions` (``generator``, ``stepwise``,
    ``randomise_positions``, ``grad_clip``). ``device``: where the model and batches live
    (data are generated on the CPU; checkpoints are written from CPU copies, so a model
    trained on ``"cuda"`` loads anywhere). With ``out``: ``out/best`` (best validation
    score) and ``out/last`` (model plus optimizer state, resumed from when ``resume``; a
    resumed run must ask for the same config and options but ``steps`` / ``eval_every``),
    ``out/learning_curve.png``, ``out/history.json``. Returns the best model (weights as at
    its best validation) and the history.
    """
    from hooked_nar.data import CLRSDataset, CLRSLoader
    from hooked_nar.evaluate import evaluate
    from hooked_nar.stepwise import check_stepwise_model, stepwise_loss

    options = TrainOptions(
        steps, batch_size, lr, num_train, num_val, eval_every, data_seed, **recipe
    )
    if options.stepwise:
        check_stepwise_model(config)
    out = Path(out) if out is not None else None
    resuming = out is not None and resume and (out / "last" / "trainer.json").is_file()
    if resuming:
        _check_resume(out / "last", config, options)  # before any data is generated
    torch.manual_seed(config.seed)
    train_set = CLRSDataset(
        config.algorithm,
        num_train,
        generator=options.generator,
        sizes=TRAIN_SIZES,
        seed=data_seed,
        progress=progress,
    )
    val_set = CLRSDataset(
        config.algorithm,
        num_val,
        generator=options.generator,
        sizes=(16,),
        seed=data_seed + 10_000,
        progress=False,
    )
    model = HookedNAR(config).to(device).train()  # initialised on the CPU, so seeds agree
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = {
        "step": [],
        "loss": [],
        "val_step": [],
        "val_score": [],
        "seconds": 0.0,
        "cpu_seconds": 0.0,
        "val_cpu_seconds": [],
    }
    start, best_score, best_step = 0, float("-inf"), 0
    if resuming:
        model.load_state_dict(HookedNAR.from_pretrained(out / "last").state_dict())
        state = _load_training_state(out / "last", optimizer)
        start, history, best_score = state["step"], state["history"], state["best_score"]
        best_step = state.get("best_step", start)
        torch.manual_seed(config.seed + start)
    best_dir = out / "best" if out is not None else None
    if resuming and (best_dir / "model.safetensors").is_file():
        best_state = HookedNAR.from_pretrained(best_dir).state_dict()  # never last/'s weights
    else:
        best_state = {k: v.clone() for k, v in model.state_dict().items()}

    loader = CLRSLoader(
        train_set, batch_size=batch_size, shuffle=True, seed=config.seed + start, device=device
    )
    positions = torch.Generator().manual_seed(config.seed + start)
    batches = iter(loader)
    t0, c0 = time.perf_counter(), time.process_time()
    bar = tqdm(range(start, steps), desc=f"train {config.algorithm}", disable=not progress)
    for step in bar:
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        if options.randomise_positions:
            randomise_positions(batch, positions)
        loss = stepwise_loss(model, batch) if options.stepwise else model(batch, return_type="loss")
        optimizer.zero_grad()
        loss.backward()
        if options.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        optimizer.step()
        history["step"].append(step + 1)
        history["loss"].append(float(loss.detach()))
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            score = validation_score(evaluate(model, val_set))
            history["val_step"].append(step + 1)
            history["val_score"].append(score)
            elapsed = history.get("cpu_seconds", 0.0) + time.process_time() - c0
            history.setdefault("val_cpu_seconds", []).append(elapsed)
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", val=f"{score:.3f}")
            if score > best_score:
                best_score, best_step = score, step + 1
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            if out is not None:
                history["seconds"] += time.perf_counter() - t0
                history["cpu_seconds"] = history.get("cpu_seconds", 0.0) + time.process_time() - c0
                t0, c0 = time.perf_counter(), time.process_time()
                state = {
                    "step": step + 1,
                    "history": history,
                    "best_score": best_score,
                    "best_step": best_step,
                }
                _checkpoint(model, best_state, optimizer, out, state, asdict(options))
    history["seconds"] += time.perf_counter() - t0
    history["cpu_seconds"] = history.get("cpu_seconds", 0.0) + time.process_time() - c0
    model.load_state_dict(best_state)
    model.eval()
    if out is not None:
        write_text_atomic(out / "history.json", json.dumps(history))
        plot_learning_curve(
            history, out / "learning_curve.png", f"{config.algorithm} ({config.processor})"
        )
    return model, history


def _checkpoint(model, best_state, optimizer, out: Path, state: dict, options: dict) -> None:
    meta = {"step": state["step"], "best_validation_score": state["best_score"]}
    _save_training_state(out / "last", model, optimizer, {**state, "options": options}, meta)
    current = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    save_model(model, out / "best", {**meta, "step": state["best_step"]})
    model.load_state_dict(current)
