# ruff: noqa: F401  (exports listed under TYPE_CHECKING and served lazily)
"""Circuit discovery on the unrolled processor of a HookedNAR, with faithfulness measured.

- :mod:`~patching.circuits.sites`: the unit-carrying activations of a processor step
  (message, update, gate, hidden state) and hooks at every step;
- :mod:`~patching.circuits.components`: components tied across steps, per step, and message
  edges; the data flow between sites;
- :mod:`~patching.circuits.ablation`: clean and reference activations (counterfactual, mean,
  zero) and batched forward passes with components ablated;
- :mod:`~patching.circuits.scoring`: exact patching, EAP, EAP-IG and their agreement;
- :mod:`~patching.circuits.masking`: a learned circuit mask, and greedy swaps that refine a
  top-k circuit under the exact ablation;
- :mod:`~patching.circuits.faithfulness`: top-k circuits, sufficiency / necessity curves
  beside random circuits, CPR / CMD areas, bootstrap intervals over graphs;
- :mod:`~patching.circuits.discovery`: the whole run on one checkpoint;
- :mod:`~patching.circuits.plots`, :mod:`~patching.circuits.report`: PNGs, report.md,
  results.json, and the overlap of two runs' circuits.

Names are imported from their submodules on first use (:mod:`hooked_nar.lazy`).
"""

from typing import TYPE_CHECKING

from hooked_nar.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

if TYPE_CHECKING:
    from patching.circuits.ablation import ABLATIONS, AblationRuns
    from patching.circuits.components import Component, Components, unrolled_data_flow
    from patching.circuits.discovery import (
        QUICK_OPTIONS,
        CircuitOptions,
        CircuitResult,
        counterfactual_pairs,
        discover_circuit,
        has_pointer_output,
    )
    from patching.circuits.faithfulness import (
        FaithfulnessCurve,
        faithfulness_curve,
        jaccard,
        threshold_circuit,
        top_k_circuit,
    )
    from patching.circuits.masking import learned_mask_scores, refine_top_k
    from patching.circuits.report import circuit_overlap, write_report
    from patching.circuits.scoring import (
        Scores,
        eap_ig_scores,
        eap_scores,
        exact_scores,
        spearman_agreement,
    )
    from patching.circuits.sites import Site, cut_hidden_carry, processor_sites, site_hooks
