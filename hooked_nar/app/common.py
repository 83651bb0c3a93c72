"""What the ``hooked-nar`` commands share: the error they report as one line, the checks of
arguments that name a checkpoint, an SAE or an output folder, and the shared options.

Only light imports at module level: ``hooked-nar COMMAND --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

__all__ = [
    "PROG",
    "UsageError",
    "add_model_arguments",
    "check_output_dir",
    "load_model",
    "load_sae_checked",
    "output_dir",
    "resolve_algorithm",
    "run_name",
]

#: The command name, in reports, log lines and error messages.
PROG = "hooked-nar"


class UsageError(Exception):
    """A bad argument or setting (e.g. a checkpoint that does not load): the command line
    reports it as one line on stderr, ``hooked-nar COMMAND: error: ...``, with exit code 2."""


def check_output_dir(path: Path, flag: str = "--output") -> None:
    """Create ``path`` if needed and prove it writable by creating a temporary file in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UsageError(f"{flag} {str(path)!r} cannot be created or written ({reason})") from None


def output_dir(path: str | Path, flag: str = "--output") -> Path:
    """``path`` as a Path, created and checked writable (:func:`check_output_dir`)."""
    out = Path(path)
    check_output_dir(out, flag)
    return out


def add_model_arguments(p: argparse.ArgumentParser, default_output: str) -> None:
    """``--algorithm``, ``--checkpoint`` and ``--output`` / ``-o``, shared by ``train-sae``
    and ``patch``."""
    p.add_argument(
        "--algorithm",
        default=None,
        help="algorithm (default: the algorithm of --checkpoint, else bfs)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint name or directory (default: the best shipped one of ALGORITHM, "
        "its discrete checkpoint where one is shipped)",
    )
    p.add_argument(
        "--output",
        "-o",
        default=None,
        help=f"output folder (default {default_output}, or the shipped checkpoint's name "
        "in place of ALGORITHM)",
    )


def resolve_algorithm(algorithm: str | None, checkpoint: str | None, default: str | None) -> str:
    """``--algorithm`` if given, else the algorithm ``--checkpoint`` was trained on (read from
    its config alone), else ``default``; UsageError when none of them names one.

    So that ``--checkpoint dijkstra-discrete`` alone selects Dijkstra, as its name says."""
    if algorithm is not None:
        return algorithm
    if checkpoint is not None:
        from hooked_nar.model.checkpoint import checkpoint_config

        try:
            return checkpoint_config(checkpoint)["algorithm"]
        except (ValueError, OSError, KeyError) as e:
            raise UsageError(f"--checkpoint {checkpoint!r}: {e}") from None
    if default is None:
        raise UsageError("--algorithm is required unless --checkpoint names a model")
    return default


def run_name(checkpoint: str | None, algorithm: str) -> str:
    """The folder name of a run under ``runs/``: the shipped checkpoint it studies
    (``--checkpoint``, else the algorithm's :func:`default_checkpoint`, e.g.
    ``dijkstra-discrete``), so that studies of two checkpoints of one algorithm do not replace
    each other's output; the algorithm for a checkpoint folder of the user's."""
    from hooked_nar.model.checkpoint import default_checkpoint, shipped_checkpoints

    checkpoint = default_checkpoint(algorithm) if checkpoint is None else checkpoint
    return checkpoint if checkpoint in shipped_checkpoints() else algorithm


def load_model(checkpoint: str, algorithm: str | None):
    """The HookedNAR of ``checkpoint`` (name or directory), in eval mode, checked to run
    ``algorithm``; UsageError otherwise."""
    from hooked_nar.model import HookedNAR

    try:
        model = HookedNAR.from_pretrained(checkpoint)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"--checkpoint {checkpoint!r}: {e}") from None
    if algorithm is not None and model.cfg.algorithm != algorithm:
        raise UsageError(
            f"--checkpoint {checkpoint!r} is a {model.cfg.algorithm} model, not {algorithm}"
        )
    return model.eval()


def load_sae_checked(path: str, model):
    """Load a SAELens directory for ``model``'s ``hook_node_out``; UsageError if it is not one."""
    from sae.io import load_sae

    if not (Path(path) / "cfg.json").is_file():
        raise UsageError(f"--sae {path!r} is not a SAELens directory (no cfg.json)")
    sae = load_sae(path)
    hook = getattr(sae.cfg.metadata, "hook_name", None)
    if hook not in (None, "hook_node_out"):
        raise UsageError(f"--sae {path!r} was trained at {hook}, not hook_node_out")
    algorithm = getattr(sae.cfg.metadata, "algorithm", None)
    if algorithm not in (None, model.cfg.algorithm):
        raise UsageError(
            f"--sae {path!r} was trained on a {algorithm} model, not {model.cfg.algorithm}"
        )
    if sae.cfg.d_in != model.cfg.d_model:
        raise UsageError(
            f"--sae {path!r} has d_in={sae.cfg.d_in}, the model d_model={model.cfg.d_model}"
        )
    return sae
