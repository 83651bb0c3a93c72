"""Stepwise training of a ``processor="discrete"`` model (DNAR's recipe) through
:func:`hooked_nar.train.train`.

Every step of a trajectory reads the true hints of its step and is supervised with the next
(``hint_mode="supervised"``, ``teacher_forcing=1``), so the steps train independently. The
training graphs are the ``mixed`` generator's (CLRS-30's sampler with p in 0.1..0.9, and sparse
ER) at the sizes of :data:`~hooked_nar.train.TRAIN_SIZES`; ``out/best``, ``out/last`` (resumable), ``out/history.json`` and
``out/learning_curve.png`` are those of :func:`~hooked_nar.train.train`.

    hooked-nar train --processor discrete --algorithm bfs --steps 600 --out runs/discrete/bfs
    hooked-nar evaluate --table --checkpoint runs/discrete/bfs/best --num-graphs 32
"""

from __future__ import annotations

from pathlib import Path

import torch

from hooked_nar.model import HookedNAR, NARConfig
from hooked_nar.train import train


def discrete_config(algorithm: str, d_model: int = 16, seed: int = 0) -> NARConfig:
    """The config of a discrete model trained stepwise (the shipped ``*-discrete`` ones)."""
    return NARConfig(
        algorithm,
        d_model=d_model,
        processor="discrete",
        hint_mode="supervised",
        teacher_forcing=1.0,
        seed=seed,
    )


def train_discrete(
    config: NARConfig,
    steps: int = 600,
    batch_size: int = 32,
    lr: float = 3e-3,
    num_train: int = 2000,
    eval_every: int = 100,
    out: str | Path | None = None,
    resume: bool = True,
    data_seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[HookedNAR, dict]:
    """Train a discrete model (``config`` as :func:`discrete_config` makes it) stepwise;
    validation, checkpoints and the returned (best model, history) as :func:`train`.

    ValueError when ``config`` is not a discrete processor fed the true hints at every step.
    """
    if config.processor != "discrete":
        raise ValueError(f"config.processor must be 'discrete', got {config.processor!r}")
    if config.hint_mode != "supervised" or config.teacher_forcing != 1.0:
        raise ValueError(
            "a discrete model trains stepwise: config needs hint_mode='supervised' and "
            f"teacher_forcing=1.0, got {config.hint_mode!r} and {config.teacher_forcing}"
        )
    return train(
        config,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        num_train=num_train,
        eval_every=eval_every,
        out=out,
        resume=resume,
        data_seed=data_seed,
        progress=progress,
        device=device,
        generator="mixed",
    )
