"""Causal tests of concept features on a HookedNAR.

- :mod:`patching.interventions`: :func:`ablate_features` (zero / mean / resample) and
  :func:`steer` (add a direction, or clamp an SAE feature), each an :class:`Intervention`:
  ``run_with_hooks`` hooks and a context manager, addressable by hook, step, node, feature.
- :mod:`patching.controls`: :func:`matched_features`, :func:`random_directions`,
  :func:`bootstrap_ci` and :class:`CausalResult` (effect beside control, with intervals).
"""

from patching.controls import (
    CausalResult,
    bootstrap_ci,
    matched_features,
    random_directions,
    results_table,
)
from patching.interventions import Intervention, ablate_features, feature_acts, steer

__all__ = [
    "CausalResult",
    "Intervention",
    "ablate_features",
    "bootstrap_ci",
    "feature_acts",
    "matched_features",
    "random_directions",
    "results_table",
    "steer",
]
