"""Saving and loading SAEs as SAELens directories (``cfg.json`` + ``sae_weights.safetensors``).

A saved directory opens with plain ``sae_lens.SAE.load_from_disk(path)``; its
``cfg.metadata`` names the HookedNAR checkpoint, algorithm, hook and step selection.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sae_lens import SAE

__all__ = ["load_sae", "save_sae"]


def save_sae(sae: SAE, path: str | os.PathLike) -> Path:
    """Write ``sae`` to the directory ``path`` atomically (an existing one is replaced).

    A SAELens training SAE is exported as its inference SAE (BatchTopK -> JumpReLU).
    """
    from sae_lens import SAE, TrainingSAE

    from hooked_nar.model.checkpoint import write_directory_atomically

    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be a sae_lens.SAE, got {type(sae).__name__}")

    def write(tmp: Path) -> None:
        if isinstance(sae, TrainingSAE):
            sae.save_inference_model(tmp)
        else:
            sae.save_model(tmp)

    return write_directory_atomically(path, write)


def load_sae(path: str | os.PathLike, device: str = "cpu") -> SAE:
    """``sae_lens.SAE.load_from_disk(path)``; the metadata is on ``sae.cfg.metadata``."""
    from sae_lens import SAE

    from hooked_nar.atomic import recover_directory

    path = recover_directory(path)  # a swap a kill left half done
    if not (path / "cfg.json").is_file():
        raise ValueError(f"path={str(path)!r} is not a saved SAE (no cfg.json)")
    return SAE.load_from_disk(path, device=device)
