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

# causal concept tests: best feature per concept, ablation and steering beside controls
from patching.causal import (  # noqa: E402
    ABLATION_METRICS,
    CAUSAL_RULE,
    DECIDING_ABLATION_METRICS,
    STEER_QUANTILE,
    ConceptTest,
    ablation_passes,
    causal_concept_test,
    causal_concept_tests,
    concept_predictions,
    concept_tests_table,
    judge,
    passes_rule,
    steering_sites,
)

__all__ += [
    "ABLATION_METRICS",
    "CAUSAL_RULE",
    "DECIDING_ABLATION_METRICS",
    "STEER_QUANTILE",
    "ConceptTest",
    "ablation_passes",
    "causal_concept_test",
    "causal_concept_tests",
    "concept_predictions",
    "concept_tests_table",
    "judge",
    "passes_rule",
    "steering_sites",
]

# Activation / attribution patching, counterfactual graphs and patching metrics.
from patching.activation_patching import (  # noqa: E402
    PatchingResult,
    activation_patching,
    attribution_patching,
    normalised_effect,
    patched_metric,
    plot_effects,
    rank_correlation,
    site_control,
)
from patching.counterfactuals import Counterfactual, make_counterfactual  # noqa: E402
from patching.metrics import (  # noqa: E402
    Metric,
    graph_accuracy,
    hint_log_prob,
    node_accuracy,
    pointer_logit_diff,
)

__all__ += [
    "Counterfactual",
    "Metric",
    "PatchingResult",
    "activation_patching",
    "attribution_patching",
    "graph_accuracy",
    "hint_log_prob",
    "make_counterfactual",
    "node_accuracy",
    "normalised_effect",
    "patched_metric",
    "plot_effects",
    "pointer_logit_diff",
    "rank_correlation",
    "site_control",
]
