"""Activation patching and attribution patching between a clean and a corrupted graph.

Clean and corrupted are graphs with the same node set (e.g. a :class:`Counterfactual`):
one ``Data``, or batches of graph pairs (``Batch`` or lists of ``Data``) in the same order.

- **denoising** runs the *corrupted* graph with one site's activation taken from the clean
  run: does this site carry enough to restore the clean behaviour?
- **noising** runs the *clean* graph with one site's activation taken from the corrupted
  run: is this site necessary?

Both report the normalised effect ``(patched - corrupt) / (clean - corrupt)`` of a metric
(:mod:`patching.metrics`). Under denoising 0 means no effect and 1 full recovery of the
clean metric; under noising 1 means no effect (the site is not needed) and ``1 - effect`` is
the fraction of the clean-corrupt gap the site destroys (0: patching it alone makes the clean
run as bad as the corrupted one).

Sites are addressed by ``by``: ``("step", "node")`` one node at one processor step,
``("step",)`` every node at one step, ``("node",)`` one node at every step. Step ``t`` is
processor step t (``steps.{t}.<hook>``, computing hint step t + 1); only steps that both
runs of a pair execute are patched (others are NaN). Exact patching batches ``batch_size``
copies of the target graphs with :func:`~hooked_nar.data.collate`, each copy patched at a
different site, so one forward pass covers many sites; graphs of a batch never interact in
a HookedNAR, so a copy patches the same local site in every graph pair at once.
:func:`attribution_patching` approximates the same tables to first order
(``grad(metric) . (source - target)`` at each site) from two forward passes and one backward.

Modules: :mod:`~patching.activation.result` (:class:`PatchingResult`, normalised effects),
:mod:`~patching.activation.runs` (checked inputs and the cached clean / corrupted runs),
:mod:`~patching.activation.exact`, :mod:`~patching.activation.attribution`,
:mod:`~patching.activation.site_control` (top sites against random site sets) and
:mod:`~patching.activation.heatmaps`.
"""

from patching.activation.attribution import attribution_patching
from patching.activation.exact import activation_patching, patched_metric
from patching.activation.heatmaps import plot_effects
from patching.activation.result import BY, PatchingResult, normalised_effect, usable_gap
from patching.activation.site_control import rank_correlation, site_control

__all__ = [
    "BY",
    "PatchingResult",
    "activation_patching",
    "attribution_patching",
    "normalised_effect",
    "patched_metric",
    "plot_effects",
    "rank_correlation",
    "site_control",
    "usable_gap",
]
