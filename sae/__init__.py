"""SAEs on HookedNAR activations, with SAELens as the engine.

- :class:`ActivationStore`: valid (graph, node, step) activations with their concept labels,
  in memory or as safetensors shards on disk; shuffled ``[batch, d_in]`` batches for training.
- :func:`train_sae` / :func:`make_config`: SAELens's ``SAETrainer`` on a store (batchtopk,
  topk, jumprelu, standard, gated, matryoshka); :func:`save_sae` / :func:`load_sae`.
- Splicing lives on the model, as in SAELens's ``HookedSAETransformer`` (the core never
  imports ``sae``; :mod:`hooked_nar.model.sae_splicing`): ``model.add_sae(sae,
  hook="hook_node_out", steps=None, use_error_term=False)``, ``model.reset_saes()``,
  ``with model.saes(sae): ...``, ``model.run_with_saes(batch, saes=[sae])``,
  ``model.run_with_cache_with_saes(...)``, ``model.run_with_hooks_with_saes(...)``.
- :func:`evaluate_sae`: reconstruction (MSE, explained variance, L0, dead / dense) and
  downstream accuracy recovered against mean ablation.
- :mod:`sae.feature_scores`: AUROC / F1 / correlations of every feature with every concept, best
  features, monosemantic features, top examples; :func:`linear_probe` baselines.
- :func:`run_sweep`, :func:`analyse_sae`, :func:`write_report`, :mod:`sae.plots`.

``sae_lens`` is imported only inside the functions that need it, and every name here is
imported from its submodule on first use (:mod:`hooked_nar.lazy`).
"""

from typing import TYPE_CHECKING

from hooked_nar.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

if TYPE_CHECKING:
    from sae.activation_store import ActivationStore
    from sae.evaluate import downstream, evaluate_sae, reconstruction
    from sae.feature_scores import (
        MONOSEMANTIC_RULE,
        ConceptScores,
        auroc,
        best_f1,
        best_features,
        concepts_with_feature,
        feature_concept_scores,
        feature_splitting,
        monosemantic_features,
        pearson,
        spearman,
        top_examples,
    )
    from sae.io import load_sae, save_sae
    from sae.probes import (
        ProbeResult,
        concept_baselines,
        graph_split,
        linear_probe,
        probe_concepts,
    )
    from sae.report import analyse_sae, write_report
    from sae.sweep import run_sweep
    from sae.training import ARCHITECTURES, make_config, train_sae
