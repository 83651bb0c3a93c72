"""Access to the CLRS reference trajectories shipped in tests/data/clrs_reference."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

REFERENCE_DIR = Path(__file__).parent / "data" / "clrs_reference"


@cache
def load_samples(algorithm: str) -> list[dict[str, dict[str, np.ndarray]]]:
    """Every sample of ``<algorithm>.npz`` as ``{"input": {...}, "hint": {...}, "output": {...}}``."""
    z = np.load(REFERENCE_DIR / f"{algorithm}.npz")
    samples: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    for key in z.files:
        i, stage, name = key.split("/")
        samples.setdefault(int(i), {"input": {}, "hint": {}, "output": {}})[stage][name] = z[key]
    return [samples[i] for i in sorted(samples)]


def source_of(sample: dict) -> int | None:
    s = sample["input"].get("s")
    return None if s is None else int(np.argmax(np.atleast_1d(s)))
