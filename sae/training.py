"""Train SAELens SAEs on an :class:`~sae.activation_store.ActivationStore`.

All training is SAELens's own ``SAETrainer``; this module only builds its configs:
``make_config`` (the SAE: architecture, sizes, sparsity, metadata) and the trainer config
(``lr_end`` set, wandb off, a dead-feature window scaled to the run's length).

>>> sae = train_sae(store, "batchtopk", d_sae=512, k=8, steps=2000)
>>> sae.encode(store.rows()[:4]).shape                      # [4, 512]; a JumpReLU SAE
"""

from __future__ import annotations

import functools
import sys
import tempfile
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any
from unittest import mock

import torch

if TYPE_CHECKING:
    from sae.activation_store import ActivationStore

__all__ = ["ARCHITECTURES", "make_config", "train_sae"]

#: Our names -> SAELens training architectures. BatchTopK and Matryoshka export as JumpReLU.
ARCHITECTURES = {
    "batchtopk": "batchtopk",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "standard": "standard",
    "gated": "gated",
    "matryoshka": "matryoshka_batchtopk",
}


def make_config(
    architecture: str = "batchtopk",
    d_in: int | None = None,
    d_sae: int | None = None,
    *,
    store: ActivationStore | None = None,
    hook: str | None = None,
    k: float = 8,
    l1_coefficient: float = 1.0,
    l0_coefficient: float = 1.0,
    matryoshka_widths: list[int] | None = None,
    metadata: dict | None = None,
    device: str = "cpu",
    **overrides: Any,
):
    """A SAELens ``TrainingSAEConfig`` for ``architecture`` (see :data:`ARCHITECTURES`).

    ``d_in`` defaults to the store's width of ``hook``; ``d_sae`` to ``8 * d_in``. ``k`` is
    the (batch-average) number of active features for batchtopk / topk / matryoshka;
    ``l1_coefficient`` applies to standard and gated, ``l0_coefficient`` to jumprelu.
    Metadata names the model checkpoint, algorithm, hook, step selection and dataset (from
    ``store``) plus anything in ``metadata``. ``overrides`` go to the config class verbatim.
    """
    from sae_lens.registry import get_sae_training_class

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture={architecture!r} must be one of {', '.join(ARCHITECTURES)}")
    meta: dict[str, Any] = {}
    if store is not None:
        hook = store._hook(hook)
        d_in = store.d_in[hook] if d_in is None else d_in
        sm = store.metadata
        meta = {
            "model_name": sm["model_name"],
            "model_class_name": "HookedNAR",
            "algorithm": sm["algorithm"],
            "hook_name": hook,
            "steps": sm["steps"],
            "dataset_path": sm["dataset"],
            "model_config": sm["model_config"],
        }
    elif hook is not None:
        meta["hook_name"] = hook
    meta.update(metadata or {})
    if not isinstance(d_in, int) or d_in < 1:
        raise ValueError(f"d_in must be a positive int (or pass store=), got {d_in!r}")
    d_sae = 8 * d_in if d_sae is None else d_sae
    if not isinstance(d_sae, int) or d_sae < 1:
        raise ValueError(f"d_sae must be a positive int, got {d_sae!r}")
    name = ARCHITECTURES[architecture]
    kwargs: dict[str, Any] = {"d_in": d_in, "d_sae": d_sae, "device": device}
    if architecture in ("batchtopk", "topk", "matryoshka"):
        if not 0 < k <= d_sae:
            raise ValueError(f"k must lie in (0, d_sae={d_sae}], got {k}")
        kwargs["k"] = int(k) if architecture == "topk" else float(k)
    if architecture in ("standard", "gated"):
        kwargs["l1_coefficient"] = l1_coefficient
    if architecture == "jumprelu":
        kwargs["l0_coefficient"] = l0_coefficient
    if architecture == "matryoshka":
        widths = matryoshka_widths or sorted({max(1, d_sae // 8), max(1, d_sae // 2), d_sae})
        if widths[-1] != d_sae:
            raise ValueError(f"matryoshka_widths must end with d_sae={d_sae}, got {widths}")
        kwargs["matryoshka_widths"] = list(widths)
    kwargs.update(overrides)
    cfg_cls = get_sae_training_class(name)[1]
    from sae_lens.saes.sae import SAEMetadata

    try:
        return cfg_cls(metadata=SAEMetadata(**meta), **kwargs)
    except TypeError as e:
        raise ValueError(f"bad option for {architecture}: {e}") from e


def train_sae(
    store: ActivationStore,
    architecture: str = "batchtopk",
    d_sae: int | None = None,
    k: float = 8,
    steps: int = 2000,
    lr: float = 3e-4,
    batch_size: int = 1024,
    *,
    hook: str | None = None,
    seed: int = 0,
    warmup_steps: int | None = None,
    decay_steps: int | None = None,
    dead_feature_window: int | None = None,
    config=None,
    progress: bool | None = None,
    **config_kwargs: Any,
):
    """Train an SAE on ``store`` with SAELens's ``SAETrainer``; return the inference ``SAE``.

    ``steps`` optimiser steps of ``batch_size`` shuffled rows. The learning rate warms up
    over ``warmup_steps`` (default 5%) and decays linearly to 0 over the last
    ``decay_steps`` (default 20%). A feature counts as dead (and gets the auxiliary loss of
    top-k architectures) after ``dead_feature_window`` steps without firing (default
    ``max(20, steps // 20)``; SAELens's default of 1000 never triggers in short runs;
    with ``normalize_activations="layer_norm"`` a top-k family SAE gets no dead features and
    so no auxiliary loss, which SAELens does not support under per-row normalisation).
    ``config``: a ready ``TrainingSAEConfig`` (else :func:`make_config` with ``d_sae``,
    ``k`` and ``config_kwargs``). The result went through SAELens's inference export
    (``save_inference_model`` + ``SAE.load_from_disk``): BatchTopK becomes JumpReLU.
    ``sae.cfg.metadata`` holds the training figures (``l0``, ``num_dead_features``, ...).
    """
    from sae_lens import SAE, SAETrainer
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.registry import get_sae_training_class
    from sae_lens.training import sae_trainer as trainer_module

    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"steps={steps}, batch_size={batch_size} and lr={lr} must be positive")
    if config is None:
        config = make_config(
            architecture, d_sae=d_sae, store=store, hook=hook, k=k, **config_kwargs
        )
    hook = store._hook(hook if hook is not None else config.metadata.hook_name)
    if config.d_in != store.d_in[hook]:
        raise ValueError(f"config has d_in={config.d_in} but {hook} has width {store.d_in[hook]}")
    warmup = max(1, steps // 20) if warmup_steps is None else warmup_steps
    decay = steps // 5 if decay_steps is None else decay_steps
    if warmup + decay > steps:
        raise ValueError(f"warmup_steps + decay_steps ({warmup + decay}) exceed steps={steps}")
    window = max(20, steps // 20) if dead_feature_window is None else dead_feature_window
    per_row_norm = config.normalize_activations in ("layer_norm", "constant_norm_rescale")
    if per_row_norm and hasattr(config, "aux_loss_coefficient") and dead_feature_window is None:
        window = steps + 1  # SAELens's top-k auxiliary loss refuses per-row normalisation
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size,
        train_batch_size_samples=batch_size,
        lr=lr,
        lr_end=lr,  # the "constant" schedule decays linearly from lr_end to 0
        lr_scheduler_name="constant",
        lr_warm_up_steps=warmup,
        lr_decay_steps=decay,
        device=str(config.device),
        dead_feature_window=window,
        feature_sampling_window=max(window, steps // 4),
        logger=LoggingConfig(log_to_wandb=False),
    )
    torch.manual_seed(seed)
    training_sae = get_sae_training_class(config.architecture())[0](config)
    show = sys.stderr.isatty() if progress is None else progress
    quiet = mock.patch.object(
        trainer_module, "tqdm", functools.partial(trainer_module.tqdm, disable=True)
    )
    trainer = SAETrainer(
        cfg=trainer_cfg,
        sae=training_sae,
        data_provider=store.batches(batch_size, hook=hook, seed=seed),
    )
    with nullcontext() if show else quiet:
        trained = trainer.fit()
    trained.cfg.metadata.training_steps = steps
    trained.cfg.metadata.training_batch_size = batch_size
    trained.cfg.metadata.training_lr = lr
    trained.cfg.metadata.dead_feature_window = window
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device=str(config.device))
