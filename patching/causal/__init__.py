"""Causal concept tests, one module per idea.

- :mod:`~patching.causal.options`: :class:`CausalOptions`, the one options object of a run.
- :mod:`~patching.causal.units`: the unit of intervention (feature group, features,
  direction / subspace) and its null units.
- :mod:`~patching.causal.targets`: each concept's downstream consequence and the deciding
  measures (margin removed, flip rate).
- :mod:`~patching.causal.sites`: steering sites and the model's concept predictions.
- :mod:`~patching.causal.rule`: the rule and the verdicts, written once.
- :mod:`~patching.causal.runs`: running units, nulls and controls at every dose, measured on
  every concept's target.
- :mod:`~patching.causal.concept_test`: :func:`causal_concept_test(s)`, specificity, verdicts.
- :mod:`~patching.causal.table`: the summary table.

The statistics (bootstrap, paired differences, rank p-values, Holm) live in
:mod:`patching.stats`, shared with other experiments.
"""

from patching.causal.concept_test import ConceptTest, causal_concept_test, causal_concept_tests
from patching.causal.options import VERDICT_DOSE, CausalOptions
from patching.causal.rule import (
    CAUSAL_RULE,
    DECIDING_METRICS,
    VERDICTS,
    Comparison,
    concept_verdict,
    intervention_verdict,
    moves,
)
from patching.causal.sites import concept_predictions, site_candidates, steering_sites
from patching.causal.table import concept_tests_table
from patching.causal.targets import concept_target

__all__ = [
    "CAUSAL_RULE",
    "DECIDING_METRICS",
    "VERDICTS",
    "VERDICT_DOSE",
    "CausalOptions",
    "Comparison",
    "ConceptTest",
    "causal_concept_test",
    "causal_concept_tests",
    "concept_predictions",
    "concept_target",
    "concept_tests_table",
    "concept_verdict",
    "intervention_verdict",
    "moves",
    "site_candidates",
    "steering_sites",
]
