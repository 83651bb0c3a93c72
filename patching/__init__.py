"""Causal tests of concept features on a HookedNAR.

- :mod:`patching.interventions`: :func:`ablate_features` (zero / mean / resample) and
  :func:`steer` (add a direction, or clamp an SAE feature), each an :class:`Intervention`:
  ``run_with_hooks`` hooks and a context manager, addressable by hook, step, node, feature.
- :mod:`patching.controls`: :func:`uninformative_features`, :func:`random_directions` and
  :class:`CausalResult` (effect beside control, with intervals).
- :mod:`patching.stats`: bootstrap over graphs, paired differences, rank p-values, Holm.
- :mod:`patching.causal`: :func:`causal_concept_test` (a concept's unit ablated and steered
  on its own target beside a null and a positive control; one rule for the verdict).
- :mod:`patching.activation`, :mod:`patching.counterfactuals`,
  :mod:`patching.metrics`: activation / attribution patching on counterfactual graphs.

Every name here is imported from its submodule on first use (:mod:`hooked_nar.lazy`).
"""

from typing import TYPE_CHECKING

from hooked_nar.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

if TYPE_CHECKING:
    from patching.activation import (
        PatchingResult,
        activation_patching,
        attribution_patching,
        normalised_effect,
        patched_metric,
        plot_effects,
        rank_correlation,
        site_control,
    )
    from patching.causal import (
        CAUSAL_RULE,
        DECIDING_METRICS,
        VERDICTS,
        CausalOptions,
        Comparison,
        ConceptTest,
        causal_concept_test,
        causal_concept_tests,
        concept_predictions,
        concept_target,
        concept_tests_table,
        steering_sites,
    )
    from patching.controls import (
        CausalResult,
        random_directions,
        results_table,
        uninformative_features,
    )
    from patching.counterfactuals import Counterfactual, make_counterfactual
    from patching.interventions import Intervention, ablate_features, feature_acts, steer
    from patching.metrics import (
        Metric,
        graph_accuracy,
        hint_log_prob,
        node_accuracy,
        pointer_logit_diff,
    )
    from patching.stats import bootstrap_ci, holm, paired_difference, rank_p_value
