"""Saving and loading models as a directory of ``config.json`` + ``model.safetensors``."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

# write_directory_atomically: re-exported for callers that import it from here (sae.io)
from hooked_nar.atomic import recover_directory, write_directory_atomically
from hooked_nar.model.config import NARConfig

if TYPE_CHECKING:
    from hooked_nar.model import HookedNAR

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def write_model_files(model: HookedNAR, directory: Path, metadata: dict | None = None) -> None:
    """Write ``config.json`` (config plus metadata) and ``model.safetensors`` into ``directory``."""
    payload = {"config": model.cfg.to_dict(), "metadata": metadata or {}}
    (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / WEIGHTS_NAME)


def save_model(model: HookedNAR, path: str | Path, metadata: dict | None = None) -> Path:
    """Save ``model`` as a checkpoint directory at ``path``, atomically."""
    return write_directory_atomically(path, lambda tmp: write_model_files(model, tmp, metadata))


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints shipped inside the package."""
    root = resources.files("hooked_nar") / "pretrained"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file())


def default_checkpoint(algorithm: str) -> str:
    """The shipped checkpoint that commands given only ``--algorithm`` load: the algorithm's
    best on CLRS-30's out-of-distribution test (README, "Shipped checkpoints"). That is its
    discrete checkpoint where one is shipped (exact on every benchmark split, which no
    continuous checkpoint is), else its continuous one (named as the algorithm)."""
    discrete = f"{algorithm}-discrete"
    return discrete if discrete in shipped_checkpoints() else algorithm


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A shipped checkpoint name (``"bfs"``) or a directory path.

    A bare name of a shipped checkpoint wins over a folder of that name in the working
    directory; pass ``"./bfs"`` or a ``Path`` for the folder.
    """
    if isinstance(name_or_path, str) and name_or_path in shipped_checkpoints():
        return Path(str(resources.files("hooked_nar") / "pretrained" / name_or_path))
    p = recover_directory(Path(name_or_path))  # a swap a kill left half done
    if p.is_dir():
        return p
    raise ValueError(
        f"checkpoint {str(name_or_path)!r} is neither a directory nor a shipped checkpoint "
        f"(shipped: {', '.join(shipped_checkpoints()) or 'none'})"
    )


def _read_config_file(path: Path) -> dict:
    """The parsed ``config.json`` of the checkpoint directory ``path``: ``{"config": {...},
    "metadata": {...}}``; ValueError when it is missing or has no ``config`` object."""
    try:
        payload = json.loads((path / CONFIG_NAME).read_text())
        if not isinstance(payload["config"], dict):
            raise TypeError(f"config is a {type(payload['config']).__name__}, not an object")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"checkpoint {path}: unreadable {CONFIG_NAME} ({e})") from e
    return payload


def checkpoint_config(name_or_path: str | Path) -> dict:
    """The config dict a checkpoint (shipped name or directory) was saved with, read from its
    ``config.json`` alone: no weights, no model code. For cheap checks, e.g. its algorithm."""
    return _read_config_file(resolve_checkpoint(name_or_path))["config"]


def read_checkpoint(
    name_or_path: str | Path, expected_config: dict | None = None
) -> tuple[NARConfig, dict[str, Tensor], dict, Path]:
    """``(config, state_dict, metadata, directory)`` of a checkpoint directory or shipped
    name, read from ``config.json`` and ``model.safetensors`` (no model is built).

    ``expected_config`` (optional): keys that must match the stored config; a key that is
    not a config field, or a mismatch, is a ValueError naming it.
    """
    path = resolve_checkpoint(name_or_path)
    payload = _read_config_file(path)
    try:
        cfg = NARConfig.from_dict(payload["config"])
    except TypeError as e:  # missing or mistyped fields
        raise ValueError(f"checkpoint {path}: unreadable {CONFIG_NAME} ({e})") from e
    fields = {f.name for f in dataclasses.fields(NARConfig)}
    for key, value in (expected_config or {}).items():
        if key not in fields:
            raise ValueError(
                f"{key}={value!r} is not a NARConfig field to check; valid: {', '.join(sorted(fields))}"
            )
        if getattr(cfg, key) != value:
            raise ValueError(
                f"checkpoint {path} has {key}={getattr(cfg, key)!r}, expected {value!r}"
            )
    try:
        state = upgrade_state_names(load_file(path / WEIGHTS_NAME))
    except (OSError, SafetensorError) as e:
        raise ValueError(f"checkpoint {path}: unreadable {WEIGHTS_NAME} ({e})") from e
    return cfg, state, payload.get("metadata", {}), path


#: Parameter names of earlier versions -> today's (``encoder.inputs`` clashed with nnsight).
RENAMED_PREFIXES = {
    "encoder.inputs.": "encoder.input_embeddings.",
    "encoder.hints.": "encoder.hint_embeddings.",
}


def upgrade_state_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with the parameter names of earlier versions renamed
    (:data:`RENAMED_PREFIXES`), so that every saved checkpoint keeps loading."""
    out = {}
    for key, value in state.items():
        for old, new in RENAMED_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    return out


def load_checked_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Load ``state`` into ``model``; ValueError naming the tensors when names or shapes
    differ from the model's (the checkpoint does not match its config)."""
    own = model.state_dict()
    bad = sorted(set(own) ^ set(state)) + [
        k for k in own if k in state and own[k].shape != state[k].shape
    ]
    if bad:
        raise ValueError(
            f"checkpoint {path} does not match its config: mismatching tensors {bad[:5]}"
        )
    model.load_state_dict(state)
