"""Circuit discovery on one checkpoint, end to end: counterfactual graph pairs -> scores
(EAP, EAP-IG, exact) at every granularity -> agreement with exact -> circuits and their
faithfulness on held-out pairs -> :class:`CircuitResult` (written by
:mod:`patching.circuits.report`).

>>> result = discover_circuit(HookedNAR.from_pretrained("dijkstra"), CircuitOptions("dijkstra"))
>>> result.agreement["tied"]["eap_ig"]["spearman"], result.curves["tied"]["eap_ig"].smallest(
...     "node_accuracy")

Scoring graphs and faithfulness graphs are drawn with different seeds, so a circuit is
judged on graphs it was not chosen on.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from hooked_nar.data.loader import collate
from patching.circuits.ablation import ABLATIONS, AblationRuns
from patching.circuits.components import Components, unrolled_data_flow
from patching.circuits.faithfulness import (
    FRACTIONS,
    FaithfulnessCurve,
    faithfulness_curve,
    top_k_circuit,
)
from patching.circuits.masking import learned_mask_scores, refine_top_k
from patching.circuits.scoring import (
    IG_SCOPES,
    Scores,
    eap_ig_scores,
    eap_scores,
    exact_scores,
    spearman_agreement,
)
from patching.counterfactuals import Counterfactual, make_counterfactual
from patching.metrics import graph_accuracy, hint_log_prob, node_accuracy, pointer_logit_diff

__all__ = [
    "DEFAULT_KIND",
    "CircuitOptions",
    "CircuitResult",
    "counterfactual_pairs",
    "discover_circuit",
]

#: The counterfactual edit per algorithm (weighted algorithms: one weight changed).
DEFAULT_KIND = {"bfs": "move_source", "dfs": "move_source"}
#: Scoring methods per granularity ("mask": a learned mask, tied components only).
METHODS = {"tied": ("eap", "eap_ig", "exact", "mask"), "step": ("eap", "eap_ig", "exact")}


#: Sizes of a quick run (``hooked-nar circuit --quick``, the study's circuit stage): small,
#: but every part of :func:`discover_circuit`.
QUICK_OPTIONS: dict[str, Any] = {
    "num_graphs": 4,
    "eval_graphs": 6,
    "edge_graphs": 1,
    "num_random": 3,
    "ig_steps": 2,
    "fractions": (0.0, 0.1, 0.2, 1.0),
    "granularities": ("tied",),
    "judged": ("tied",),
    "mask_steps": 10,
    "mask_swaps": 1,
}


def has_pointer_output(algorithm: str) -> bool:
    """Whether ``algorithm`` has the pointer output ``pi`` that circuits are scored on."""
    from hooked_nar.algorithms import SPECS

    spec = SPECS.get(algorithm, {})
    return "pi" in spec and spec["pi"].stage == "output"


@dataclass
class CircuitOptions:
    """Everything that decides a circuit run (defaults: a few minutes of one CPU core).

    ``nodes``: graph size; ``num_graphs``: pairs the scores are computed on; ``eval_graphs``:
    held-out pairs faithfulness is measured on; ``edge_graphs``: scoring pairs whose
    message edges are scored (edge components are per graph); ``ablation``: what an
    ablated unit takes (:data:`~patching.circuits.ablation.ABLATIONS`), for scores and
    faithfulness alike; ``granularities``: unit granularities scored (and compared with
    exact); ``judged``: those whose circuits get faithfulness curves.
    """

    algorithm: str
    kind: str | None = None
    nodes: int = 8
    num_graphs: int = 16
    eval_graphs: int = 32
    edge_graphs: int = 4
    ablation: str = "counterfactual"
    ig_steps: int = 8
    ig_scope: str = "step"
    mask_steps: int = 300
    mask_sparsity: float = 1.0
    mask_swaps: int = 8
    fractions: tuple[float, ...] = FRACTIONS
    num_random: int = 16
    granularities: tuple[str, ...] = ("tied", "step")
    judged: tuple[str, ...] = ("tied",)
    agreement_threshold: float = 0.01
    target_kept: float = 0.9
    max_fraction: float = 0.2
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind is None:
            self.kind = DEFAULT_KIND.get(self.algorithm, "perturb_weight")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation={self.ablation!r} must be one of {ABLATIONS}")
        if self.ig_scope not in IG_SCOPES:
            raise ValueError(f"ig_scope={self.ig_scope!r} must be one of {IG_SCOPES}")
        if isinstance(self.mask_swaps, bool) or not isinstance(self.mask_swaps, int):
            raise ValueError(f"mask_swaps must be an int >= 0, got {self.mask_swaps!r}")
        if self.mask_swaps < 0:
            raise ValueError(f"mask_swaps must be an int >= 0, got {self.mask_swaps!r}")
        for name in ("nodes", "num_graphs", "eval_graphs", "ig_steps", "num_random"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.nodes < 3:
            raise ValueError(f"nodes must be >= 3 (a counterfactual needs edges), got {self.nodes}")
        bad = [g for g in self.granularities if g not in ("tied", "step")]
        if bad or not self.granularities:
            raise ValueError(
                f"granularities must be among ('tied', 'step'), got {self.granularities}"
            )
        if not set(self.judged) <= set(self.granularities):
            raise ValueError(
                f"judged={self.judged} must be among granularities={self.granularities}"
            )


@dataclass
class CircuitResult:
    """What :func:`discover_circuit` measured.

    ``scores[granularity][method]``: :class:`~patching.circuits.scoring.Scores` on the
    scoring pairs (``"edge"``: message edges of the first ``edge_graphs`` pairs);
    ``agreement[granularity][method]``: Spearman with exact; ``curves[granularity][method]``:
    :class:`~patching.circuits.faithfulness.FaithfulnessCurve` on the held-out pairs;
    ``pairs`` / ``eval_pairs``: the counterfactuals; ``data_flow``: the unrolled site graph.
    """

    options: CircuitOptions
    scores: dict[str, dict[str, Scores]]
    agreement: dict[str, dict[str, dict]]
    curves: dict[str, dict[str, FaithfulnessCurve]]
    pairs: list[Counterfactual]
    eval_pairs: list[Counterfactual]
    sites: list
    num_steps: int
    data_flow: list
    settings: dict[str, Any] = field(default_factory=dict)

    def chosen_fraction(self, granularity: str = "tied", method: str = "eap_ig") -> float:
        """The smallest nonzero grid fraction (at most ``max_fraction``) whose circuit-only
        model keeps ``target_kept`` of the full node accuracy; ``max_fraction`` itself when
        none does, or when the empty circuit already does (the target then says nothing)."""
        o, curve = self.options, self.curves[granularity][method]
        kept = curve.kept("sufficiency", "node_accuracy")["value"]
        allowed = [
            (f, v) for f, v in zip(curve.fractions, kept, strict=True) if 0 < f <= o.max_fraction
        ]
        if not allowed:
            return 0.0
        empty = kept[curve.fractions.index(0.0)] if 0.0 in curve.fractions else 0.0
        if empty >= o.target_kept:
            return allowed[-1][0]
        return next((f for f, v in allowed if v >= o.target_kept), allowed[-1][0])

    def circuit(self, granularity: str = "tied", method: str = "eap_ig") -> torch.Tensor:
        """The circuit at :meth:`chosen_fraction`, a boolean mask over the components."""
        f = self.chosen_fraction(granularity, method)
        k = int(round(f * self.curves[granularity][method].num_components))
        return top_k_circuit(self.scores[granularity][method], k)

    def as_dict(self) -> dict[str, Any]:
        """Options, agreement, curves, pairs and settings, JSON-ready."""
        return {
            "options": asdict(self.options),
            "sites": [asdict(s) for s in self.sites],
            "num_steps": self.num_steps,
            "agreement": self.agreement,
            "curves": {g: {m: c.as_dict() for m, c in cs.items()} for g, cs in self.curves.items()},
            "pairs": [cf.as_dict() for cf in self.pairs],
            "eval_pairs": [cf.as_dict() for cf in self.eval_pairs],
            "data_flow": self.data_flow,
            "settings": self.settings,
        }


def counterfactual_pairs(
    algorithm: str, kind: str, nodes: int, count: int, seed: int
) -> list[Counterfactual]:
    """``count`` counterfactual pairs of ``nodes``-node graphs whose edit changes the output,
    keeps the trajectory length, and leaves a node whose parent changes in a way the
    pointer-logit difference can score. Raises ValueError when too few are found."""
    from hooked_nar.data import CLRSDataset

    data_seed = int(np.random.SeedSequence([seed, zlib.crc32(b"circuits")]).generate_state(1)[0])
    pool = CLRSDataset(algorithm, 8 * count, sizes=(nodes,), seed=data_seed, progress=False)
    pairs = []
    for i in range(len(pool)):
        cf = make_counterfactual(pool[i], kind, seed=seed + i)
        if not cf.changed_output or cf.edit["length"][0] != cf.edit["length"][1]:
            continue
        try:
            pointer_logit_diff(cf.clean, cf.corrupted, "pi")
        except ValueError:
            continue
        pairs.append(cf)
        if len(pairs) == count:
            return pairs
    raise ValueError(
        f"only {len(pairs)} of {count} usable {kind} counterfactuals of {algorithm} among "
        f"{len(pool)} graphs of {nodes} nodes; try other --nodes or --kind"
    )


def _runs(model, pairs: list[Counterfactual], ablation: str, task: bool) -> AblationRuns:
    clean, corrupted = [cf.clean for cf in pairs], [cf.corrupted for cf in pairs]
    cb, xb = collate(clean), collate(corrupted)
    metrics = {
        "logit_diff": pointer_logit_diff(cb, xb, "pi"),
        "log_prob": hint_log_prob("pi", reference=cb),  # every node: what a mask preserves
    }
    if task:
        metrics |= {
            "node_accuracy": node_accuracy("pi", reference=cb),
            "graph_accuracy": graph_accuracy("pi", reference=cb),
        }
    return AblationRuns(model, clean, metrics, ablation, corrupted=corrupted)


def _score_all(runs: AblationRuns, comps: Components, o: CircuitOptions, progress):
    out = {
        "eap": eap_scores(runs, comps),
        "eap_ig": eap_ig_scores(runs, comps, o.ig_steps, o.ig_scope),
        "exact": exact_scores(runs, comps, o.batch_size, progress),
    }
    if "mask" in METHODS.get(comps.granularity, ()):
        mask = learned_mask_scores(
            runs, comps, o.mask_steps, sparsity=o.mask_sparsity, seed=o.seed, objective="log_prob"
        )
        k = int(round(o.max_fraction * len(comps)))
        if o.mask_swaps and 0 < k < len(comps):
            mask = refine_top_k(runs, mask, k, "log_prob", o.mask_swaps, o.batch_size)
        out["mask"] = mask
    return out


def discover_circuit(model, options: CircuitOptions, progress: bool | None = None) -> CircuitResult:
    """Score, compare and judge circuits of ``model`` (see the module docstring)."""
    o = options
    if o.algorithm != model.cfg.algorithm:
        raise ValueError(
            f"options.algorithm={o.algorithm!r} but the model runs {model.cfg.algorithm!r}"
        )
    if "pi" not in {f.name for f in model.output_fields}:
        raise ValueError(f"{o.algorithm} has no pointer output 'pi' to score circuits on")
    pairs = counterfactual_pairs(o.algorithm, o.kind, o.nodes, o.num_graphs, o.seed)
    eval_pairs = counterfactual_pairs(o.algorithm, o.kind, o.nodes, o.eval_graphs, o.seed + 10_000)
    runs = _runs(model, pairs, o.ablation, task=False)
    eval_runs = _runs(model, eval_pairs, o.ablation, task=True)
    S = max(runs.S, eval_runs.S)
    scores, agreement, curves = {}, {}, {}
    for gran in o.granularities:
        comps = Components(runs.sites, gran, runs.S)
        scores[gran] = _score_all(runs, comps, o, progress)
        agreement[gran] = {
            m: spearman_agreement(scores[gran][m], scores[gran]["exact"], o.agreement_threshold)
            for m in ("eap", "eap_ig")
        }
        if gran not in o.judged:
            continue
        eval_comps = Components(runs.sites, gran, eval_runs.S)
        curves[gran] = {}
        for method in METHODS[gran]:
            s = scores[gran][method]
            if gran == "step" and eval_runs.S != runs.S:
                s = _resize_steps(s, eval_comps)
            curves[gran][method] = faithfulness_curve(
                eval_runs, eval_comps, s, o.fractions, o.num_random, o.batch_size, o.seed, progress
            )
    # message edges of a few scoring pairs: per graph, drawn on the input graph
    edge_runs = _runs(model, pairs[: o.edge_graphs], o.ablation, task=False)
    eb = edge_runs.batch
    ends = eb.edge_index - eb.ptr[eb.batch[eb.edge_index[0]]]
    edge_comps = Components(
        edge_runs.sites, "edge", edge_runs.S, eb.batch[eb.edge_index[0]], ends.T
    )
    scores["edge"] = _score_all(edge_runs, edge_comps, o, progress)
    agreement["edge"] = {
        m: spearman_agreement(scores["edge"][m], scores["edge"]["exact"], o.agreement_threshold)
        for m in ("eap", "eap_ig")
    }
    return CircuitResult(
        o,
        scores,
        agreement,
        curves,
        pairs,
        eval_pairs,
        runs.sites,
        S,
        unrolled_data_flow(
            runs.sites,
            runs.S,
            hint_feedback=model.cfg.hint_mode == "encoded",
            recurrence=getattr(model.cfg, "hidden_recurrence", True),
        ),
        {
            "clean_metric": float(runs.clean_values["logit_diff"].mean()),
            "reference_metric": None
            if runs.reference_values is None
            else float(runs.reference_values["logit_diff"].mean()),
            "eval_full": {
                k: float(v.double().nanmean()) for k, v in eval_runs.clean_values.items()
            },
            "scoring_steps": runs.S,
            "eval_steps": eval_runs.S,
        },
    )


def _resize_steps(scores: Scores, comps: Components) -> Scores:
    """Per-step scores re-laid on ``comps`` (another number of steps; missing steps 0)."""
    old = scores.components
    per = torch.zeros(scores.per_graph.shape[0], len(comps), dtype=torch.float64)
    index = {c: i for i, c in enumerate(comps.items)}
    for j, c in enumerate(old.items):
        if c in index:
            per[:, index[c]] = scores.per_graph[:, j]
    return Scores(scores.method, comps, per, scores.metric, scores.gap)
