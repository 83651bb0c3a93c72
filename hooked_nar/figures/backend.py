"""matplotlib on the non-interactive Agg backend, atomic PNG writes and array conversion:
what every figure of the project goes through (imported only when a figure is drawn)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hooked_nar.atomic import atomic_file

__all__ = ["as_numpy", "pyplot", "save_figure"]


def as_numpy(x: Any) -> np.ndarray:
    """``x`` (a tensor on any device, a list or an array) as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (figures are only saved)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically, close it, and return the path."""
    try:
        with atomic_file(path) as fh:
            fig.savefig(fh, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return Path(path)
