"""Is a concept feature causal? Ablate it and steer it, beside controls, on held-out graphs.

:func:`causal_concept_test` takes one concept of the model's algorithm (``"is_visited"``), finds
the SAE feature that tracks it best, and runs two interventions on ``num_graphs`` held-out
graphs, each beside controls and with bootstrap intervals over graphs
(:class:`~patching.controls.CausalResult`). :func:`causal_concept_tests` runs every boolean
concept and :func:`concept_tests_table` prints the summary. Everything is seeded: the same
``seed`` gives the same numbers.

Step alignment (DESIGN.md): processor step t reads hint state t and computes hint t + 1; the
hint logits of column t predict hint t + 1, and processor step t is valid when ``t + 1 <
length`` (:func:`hooked_nar.model.hooked_nar.hint_step_mask`). Concept labels of step t are
taken at hint t + 1 (``state="computed"``).

**Best feature.** Encode the store's valid rows (an :class:`~sae.ActivationStore` at the SAE's
hook; by default ``store_graphs`` held-out graphs with their own seed, disjoint from the test
graphs) and take ``sae.concepts.best_features(feature_concept_scores(acts, labels))``: the
feature with the highest AUROC for the concept (``feature=`` overrides it).

**Target.** The model's prediction of the hint behind the concept (``Concept.source_hint``:
``reach_h`` for ``is_visited`` and ``is_frontier``, ``mark``, ``in_queue``, ``u``). A concept
read from an input (``is_source``, input ``s``) has no hint behind it: its ablation is
measured on every non-scalar node hint of the model together (the mean over hints of the
per-hint measure) and steering is "not applicable". Scalar concepts (``distance_estimate``,
``key_value``) are not tested; they stay correlational (a clamp has no "flip" to count).

**Ablation** (:func:`~patching.interventions.ablate_features`, default ``mode="zero"``: the
feature is off) at every step and every node. Per graph, over its valid (row, step) entries
(rows are nodes; a ``mask_one`` hint such as ``u`` has one prediction per (graph, step), the
arg-max node, so its rows are (graph, step) pairs), the measures of :data:`ABLATION_METRICS`:

- ``margin removed`` (decides, with the flip rate): the decision margin of a row is the logit of the true value
  minus the best other (mask: ``(2y - 1) * logit``; pointer / mask_one / categorical: true
  candidate minus the best other), positive where the model is right. Over the rows the clean
  model gets right, ``sum(m_clean - m_ablated) / sum(m_clean)``: 0 = untouched, 1 = pushed to
  the decision boundary on average, > 1 = flipped. This is the normalised effect ``(patched -
  corrupt) / (clean - corrupt)`` of DESIGN.md with the decision boundary as "corrupt". It
  is needed because the shipped models are confident (BFS ``reach_h`` logits around +-9):
  one feature of a redundant code can halve the margin without flipping a single prediction.
- ``flip rate`` (decides, with the margin): the fraction of entries whose decoded prediction
  differs from the clean run (it also sees rows the clean model gets wrong or barely right).
- ``log-prob drop``: clean minus ablated log-probability of the true hint value (mask:
  Bernoulli; mask_one: softmax over the graph's nodes; pointer: over the node's candidates).

Control: ``num_controls`` random features of matched firing frequency on the store
(:func:`~patching.controls.matched_features`), ablated the same way, averaged per graph.

**Steering.** Sites are (node, step) pairs where the concept is false at hint t + 1, the clean
model also predicts it false, and predicting the hint "on" there would make it true (a
frontier node must not be reached yet; see :func:`steering_sites`). Up to
``sites_per_graph`` sites per graph are drawn with a generator seeded by ``seed`` and the
graph's index. The feature is clamped (:func:`~patching.interventions.steer`) at that node and
step only, to ``steer_value`` (default: the :data:`STEER_QUANTILE` quantile of its activation
over store rows where the concept is true); the measure is whether the model's prediction of
the concept from that step (hint t + 1, the concept's rule applied to the decoded hints, with
the true hint 0 before the first step) at that node flips to true; per graph, the fraction of
its sites that flip. Graphs never interact, so round k steers the k-th site of every graph of
a batch in one forward pass. Controls, at the same sites: (a) ``num_controls`` random
directions (:func:`~patching.controls.random_directions`) with the norm of the feature's
steering delta ``decode(clamped) - decode(original)`` at that site; (b) the matched features,
each clamped to the :data:`STEER_QUANTILE` quantile of its activation where it fires.

**The rule** (:data:`CAUSAL_RULE`, :func:`passes_rule`, :func:`judge`; used by every caller):
a result passes when the effect's 95% interval lies wholly above the control's, the effect
exceeds the control by at least ``min_effect`` (absolute: a fraction of the margin, or of the
sites) and is at least ``min_ratio`` times the control. Ablation passes when the margin
removed or the flip rate passes against matched features (:data:`DECIDING_ABLATION_METRICS`);
steering passes when its flip rate passes against both controls. Verdict: ``"causal"`` when
both pass (or ablation passes and steering is not applicable), ``"causal (ablation only)"``
/ ``"causal (steering only)"`` when one does, else ``"correlational"``.

>>> test = causal_concept_test(model, sae, "is_visited", num_graphs=64)
>>> print(test)               # feature, AUROC, effect [CI] vs control [CI], verdict
>>> tests = causal_concept_tests(model, sae)
>>> print(concept_tests_table(tests, markdown=True))
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from patching.controls import CausalResult, matched_features, random_directions, results_table
from patching.interventions import _sae_hook, ablate_features, feature_acts, steer

__all__ = [
    "ABLATION_METRICS",
    "CAUSAL_RULE",
    "DECIDING_ABLATION_METRICS",
    "STEER_QUANTILE",
    "VERDICTS",
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

#: A result passes when its interval lies above the control's, ``effect - control >=
#: min_effect`` and ``effect >= min_ratio * control`` (see the module docstring).
CAUSAL_RULE: dict[str, float] = {"min_effect": 0.05, "min_ratio": 2.0}
#: Default clamp value: this quantile of the feature's activation where the concept is true
#: (for matched control features: where the control feature fires).
STEER_QUANTILE = 0.9
#: The ablation measures, in the order of :attr:`ConceptTest.ablation`.
ABLATION_METRICS = ("margin removed", "flip rate", "log-prob drop")
#: Ablation passes when any of these passes :data:`CAUSAL_RULE` (the log-prob drop is
#: reported only: it saturates on confident predictions).
DECIDING_ABLATION_METRICS = ("margin removed", "flip rate")
VERDICTS = ("causal", "causal (ablation only)", "causal (steering only)", "correlational")
_STEERABLE_RULES = ("mask", "frontier", "class", "not_class")


# ------------------------------------------------------------------------------ the rule


def passes_rule(result: CausalResult, rule: dict[str, float] | None = None) -> bool:
    """Whether ``result`` meets :data:`CAUSAL_RULE` (or ``rule``): interval above the
    control's, and the effect at least ``min_effect`` above and ``min_ratio`` times it."""
    rule = {**CAUSAL_RULE, **(rule or {})}
    e, c = result.effect, result.control
    if math.isnan(e) or math.isnan(c):
        return False
    return bool(result.separated and e - c >= rule["min_effect"] and e >= rule["min_ratio"] * c)


def ablation_passes(
    ablation: CausalResult | Sequence[CausalResult], rule: dict[str, float] | None = None
) -> bool:
    """Whether an ablation passes: one result must pass :func:`passes_rule`; of a list, any
    result whose metric is in :data:`DECIDING_ABLATION_METRICS`."""
    if isinstance(ablation, CausalResult):
        return passes_rule(ablation, rule)
    return any(passes_rule(r, rule) for r in ablation if r.metric in DECIDING_ABLATION_METRICS)


def judge(
    ablation: CausalResult | Sequence[CausalResult],
    steering: Sequence[CausalResult] | None,
    rule: dict[str, float] | None = None,
) -> str:
    """The verdict (one of :data:`VERDICTS`) from the ablation results (see
    :func:`ablation_passes`) and the steering results (one per control; ``None`` or empty:
    steering not applicable)."""
    abl = ablation_passes(ablation, rule)
    if not steering:
        return "causal" if abl else "correlational"
    st = all(passes_rule(r, rule) for r in steering)
    if abl and st:
        return "causal"
    if abl:
        return "causal (ablation only)"
    return "causal (steering only)" if st else "correlational"


# ------------------------------------------------------------------------------- results


@dataclass
class ConceptTest:
    """The causal test of one concept's feature.

    ``ablation``: one result per :data:`ABLATION_METRICS` (margin removed, flip rate, log-prob
    drop) of the target hint(s) against matched features;
    ``steering``: [flip rate against random directions, against matched features] (empty when
    not applicable, with the reason in ``steering_note``); ``verdict``: :func:`judge` of the
    ablation and steering results; ``settings``: everything that produced them.
    """

    algorithm: str
    concept: str
    feature: int
    auroc: float
    targets: list[str]
    ablation: list[CausalResult]
    steering: list[CausalResult]
    steering_note: str
    verdict: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ablation_causal(self) -> bool:
        """Whether the ablation passes :data:`CAUSAL_RULE` (margin removed or flip rate)."""
        return ablation_passes(self.ablation, self.settings.get("rule"))

    @property
    def steering_causal(self) -> bool | None:
        """None when steering is not applicable."""
        if not self.steering:
            return None
        return all(passes_rule(r, self.settings.get("rule")) for r in self.steering)

    @property
    def causal(self) -> bool:
        """Whether the verdict is anything but ``correlational``."""
        return self.verdict != "correlational"

    def as_dict(self) -> dict:
        """Every field and both judgements as a JSON-ready dict."""
        out = asdict(self)
        out["ablation_causal"] = self.ablation_causal
        out["steering_causal"] = self.steering_causal
        return out

    def __str__(self) -> str:
        head = (
            f"{self.algorithm} {self.concept}: feature {self.feature} "
            f"(AUROC {self.auroc:.3f}) -> {', '.join(self.targets)}; verdict: {self.verdict}"
        )
        lines = [head, results_table(self.ablation + self.steering)]
        if self.steering_note:
            lines.append(f"steering: {self.steering_note}")
        return "\n".join(lines)


def _ci(value: float, ci: tuple[float, float]) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def concept_tests_table(tests: Sequence[ConceptTest], markdown: bool = False) -> str:
    """One row per test: feature, AUROC, target, ablation (margin removed, flip rate) and
    steering flip rate, each with its controls and 95% intervals, and the verdict; scalar concepts of the algorithm are listed below
    as not tested (correlational only)."""
    header = [
        "concept",
        "feature",
        "AUROC",
        "target",
        "ablation: margin removed",
        "control",
        "ablation: flip rate",
        "control",
        "steering: flip to concept",
        "random-direction control",
        "matched-feature control",
        "verdict",
    ]
    rows = []
    for t in tests:
        m, fl = t.ablation[0], t.ablation[1]
        s = t.steering
        rows.append(
            [
                t.concept,
                str(t.feature),
                f"{t.auroc:.3f}",
                ", ".join(t.targets),
                _ci(m.effect, m.effect_ci),
                _ci(m.control, m.control_ci),
                _ci(fl.effect, fl.effect_ci),
                _ci(fl.control, fl.control_ci),
                _ci(s[0].effect, s[0].effect_ci) if s else "n/a",
                _ci(s[0].control, s[0].control_ci) if s else "n/a",
                _ci(s[1].control, s[1].control_ci) if len(s) > 1 else "n/a",
                t.verdict,
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        fmt = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
        lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    from hooked_nar.concepts import CONCEPTS

    for alg in dict.fromkeys(t.algorithm for t in tests):
        scalars = [c for c, v in CONCEPTS[alg].items() if v.dtype != torch.bool]
        if scalars:
            lines.append(
                ("\n" if markdown else "")
                + f"{alg}: scalar concepts not tested (correlational only): {', '.join(scalars)}"
            )
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------- measurements


def _per_graph(values: Tensor, valid: Tensor, graph: Tensor, num_graphs: int) -> Tensor:
    """Mean of ``values`` [X, S] over valid entries per graph (``graph`` [X]) -> [B] (NaN
    where a graph has none)."""
    v = torch.where(valid, values.double(), torch.zeros((), dtype=torch.float64))
    total = torch.zeros(num_graphs, dtype=torch.float64).index_add_(0, graph, v.sum(1))
    count = torch.zeros(num_graphs, dtype=torch.float64).index_add_(0, graph, valid.double().sum(1))
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


@dataclass
class _Measures:
    """One target field of one run: ``pred`` [X, S] (decoded prediction), ``logp`` [X, S]
    (log-probability of the true value), ``margin`` [X, S] (logit of the true value minus the
    best other; > 0 where the prediction is right), ``valid`` [X, S], ``graph`` [X]."""

    pred: Tensor
    logp: Tensor
    margin: Tensor
    valid: Tensor
    graph: Tensor


def _field_measures(model, logits, batch, fields) -> dict[str, _Measures]:
    """:class:`_Measures` of every target field (rows: nodes; mask_one: (graph, step))."""
    from hooked_nar.model import typed_fields
    from hooked_nar.model.hooked_nar import hint_step_mask

    S = logits.num_steps
    steps_ok = hint_step_mask(batch, S)  # [B, S]
    pidx = logits.pointer_index
    N, B = batch.num_nodes, batch.num_graphs
    out = {}
    for f in fields:
        lg = logits.hints[f.name]
        target = batch[f.name][:, 1 : S + 1]
        s = min(S, target.shape[1])
        lg, target = lg[:, :s], target[:, :s].float()
        node_valid = steps_ok[batch.batch][:, :s]
        if f.type == "mask":
            pred = lg > 0
            logp = -F.binary_cross_entropy_with_logits(lg, target, reduction="none")
            margin = (2 * target - 1) * lg
            out[f.name] = _Measures(pred, logp, margin, node_valid, batch.batch)
        elif f.type == "categorical":
            pred = lg.argmax(-1)
            logp = (F.log_softmax(lg, -1) * target).sum(-1)
            other = lg.masked_fill(target > 0.5, -math.inf).amax(-1)
            margin = (lg * target).sum(-1) - other
            out[f.name] = _Measures(pred, logp, margin, node_valid, batch.batch)
        elif f.type == "pointer":
            pred = typed_fields.decode(f, lg, batch, pidx)
            lp = typed_fields.log_probs(f, lg, batch, pidx)
            is_true = typed_fields.pointer_targets(target, batch, pidx)
            logp = typed_fields.scatter_rows(lp * is_true, pidx[1], N)
            true_score = typed_fields.scatter_rows(lg * is_true, pidx[1], N)
            other = typed_fields.scatter_max_rows(lg.masked_fill(is_true, -math.inf), pidx[1], N)
            has_true = typed_fields.scatter_rows(is_true.float(), pidx[1], N) > 0
            valid = node_valid & has_true
            out[f.name] = _Measures(pred, logp, true_score - other, valid, batch.batch)
        elif f.type == "mask_one":
            lp = typed_fields.log_probs(f, lg, batch, pidx)
            onehot = typed_fields.decode(f, lg, batch, pidx)
            node_ids = torch.arange(N, dtype=lp.dtype)[:, None]
            pred = typed_fields.scatter_rows(onehot * node_ids, batch.batch, B).round().long()
            logp = typed_fields.scatter_rows(lp * target, batch.batch, B)
            true_logit = typed_fields.scatter_rows(lg * target, batch.batch, B)
            other = typed_fields.scatter_max_rows(
                lg.masked_fill(target > 0.5, -math.inf), batch.batch, B
            )
            out[f.name] = _Measures(
                pred, logp, true_logit - other, steps_ok[:, :s], torch.arange(B)
            )
    return out


def _margin_removed(clean: _Measures, edited: _Measures, num_graphs: int) -> Tensor:
    """Per graph: the fraction of the clean decision margin that the edit removes, summed over
    the valid rows the clean model gets right: ``sum(m_clean - m_edit) / sum(m_clean)``
    (1: on the decision boundary on average; > 1: flipped) -> [B]."""
    mc, me = clean.margin.double(), edited.margin.double()
    ok = clean.valid & (mc > 0) & torch.isfinite(mc) & torch.isfinite(me)
    zero = torch.zeros((), dtype=torch.float64)
    num = torch.zeros(num_graphs, dtype=torch.float64).index_add_(
        0, clean.graph, torch.where(ok, mc - me, zero).sum(1)
    )
    den = torch.zeros(num_graphs, dtype=torch.float64).index_add_(
        0, clean.graph, torch.where(ok, mc, zero).sum(1)
    )
    return torch.where(den > 0, num / den.clamp(min=1e-12), torch.full_like(num, math.nan))


def _ablation_per_graph(clean: dict, edited: dict, num_graphs: int) -> Tensor:
    """``[3, B]``: per graph margin removed, flip rate and log-prob drop (each the mean over
    the target fields)."""
    per_field = []
    for name, c in clean.items():
        e = edited[name]
        per_field.append(
            torch.stack(
                [
                    _margin_removed(c, e, num_graphs),
                    _per_graph((c.pred != e.pred).double(), c.valid, c.graph, num_graphs),
                    _per_graph(c.logp - e.logp, c.valid, c.graph, num_graphs),
                ]
            )
        )
    return torch.stack(per_field).nanmean(0)


def concept_predictions(
    model, batch, concept: str, fwd_hooks: Sequence = (), logits=None
) -> tuple[Tensor, Tensor]:
    """The model's prediction of ``concept`` at every (node, processor step) ``[N, S]`` bool,
    and the true labels ``[N, S]`` (both at hint t + 1, False on padded steps).

    The concept's rule (:data:`hooked_nar.concepts.CONCEPTS`) is applied to the decoded hint
    predictions, with the true hint 0 as the state before the first step. ``fwd_hooks``: an
    intervention to run with (e.g. :func:`~patching.interventions.steer`); ``logits``: use
    these instead of running the model.
    """
    c = _concept(model, concept)
    if logits is None:
        with torch.no_grad():
            logits = model.run_with_hooks(batch, fwd_hooks=list(fwd_hooks))
    timeline = _predicted_timeline(model, batch, c.source_hint, logits)
    return _labels(batch, concept, c.source_hint, timeline), _labels(batch, concept)


# ------------------------------------------------------------------------------ internals


def _concept(model, concept: str):
    from hooked_nar.concepts import CONCEPTS

    alg = model.cfg.algorithm
    if not isinstance(concept, str) or concept not in CONCEPTS[alg]:
        raise ValueError(
            f"concept={concept!r} is not a concept of {alg}; valid: {list(CONCEPTS[alg])}"
        )
    return CONCEPTS[alg][concept]


def _hint_field(model, name: str):
    return next((f for f in model.hint_fields if f.name == name), None)


def _predicted_timeline(model, batch, hint: str, logits) -> Tensor:
    """``[N, T(, C)]``: the true hint at step 0, then the decoded predictions of steps 1..S."""
    from hooked_nar.model import typed_fields

    f = _hint_field(model, hint)
    dec = typed_fields.decode(f, logits.hints[hint], batch, logits.pointer_index)
    true = batch[hint]
    T = true.shape[1]
    pred = torch.cat([true[:, :1].float(), dec[:, : T - 1].float()], 1)
    if pred.shape[1] < T:
        pred = torch.cat([pred, true[:, pred.shape[1] :].float()], 1)
    return pred


def _labels(batch, concept: str, hint: str | None = None, timeline: Tensor | None = None) -> Tensor:
    """Concept labels ``[N, S]`` at hint t + 1, from ``batch`` or with ``hint`` replaced."""
    from hooked_nar.concepts import concept_labels

    if timeline is not None:
        batch = copy.copy(batch)
        batch[hint] = timeline
    return concept_labels(batch, "computed", [concept])[concept]


def _on_value(rule: tuple, like: Tensor) -> Tensor:
    """The hint value at one step that makes a node's concept true (``like`` [N(, C)])."""
    if rule[0] in ("mask", "frontier"):
        return torch.ones_like(like)
    C = like.shape[-1]
    k = rule[1] if rule[0] == "class" else (rule[1] + 1) % C
    return F.one_hot(torch.full(like.shape[:-1], k, dtype=torch.long), C).to(like)


def steering_sites(
    model,
    batch,
    concept: str,
    *,
    logits=None,
    sites_per_graph: int = 4,
    seed: int = 0,
    graph_ids: Tensor | None = None,
) -> tuple[list[Tensor], Tensor]:
    """Where steering ``concept`` can be tested: ``(rounds, candidates)``.

    ``candidates`` [N, S] bool: valid steps where the concept is false at hint t + 1 in truth
    and in the clean prediction (``logits``, else a clean run), and would be true if the
    model predicted the hint "on" at that node and step alone (a frontier node must not be
    reached yet). ``rounds``: up to ``sites_per_graph`` masks [N, S], the k-th holding the
    k-th of each graph's sites (drawn with a generator seeded by ``seed`` and the graph's
    dataset index ``graph_ids`` [B], default 0..B-1), so one round steers at most one site
    per graph.
    """
    if logits is None:
        with torch.no_grad():
            logits = model(batch)
    if graph_ids is None:
        graph_ids = torch.arange(batch.num_graphs)
    c = _concept(model, concept)
    timeline = _predicted_timeline(model, batch, c.source_hint, logits)
    pred = _labels(batch, concept, c.source_hint, timeline)
    truth = _labels(batch, concept)
    from hooked_nar.concepts import concept_labels

    valid = concept_labels(batch, "computed", [concept])["step_mask"]
    S = valid.shape[1]
    feasible = torch.zeros_like(valid)
    for t in range(S):
        on = timeline.clone()
        on[:, t + 1] = _on_value(c.rule, timeline[:, t + 1])
        feasible[:, t] = _labels(batch, concept, c.source_hint, on)[:, t]
    cand = valid & ~truth & ~pred & feasible
    rounds = [torch.zeros_like(cand) for _ in range(sites_per_graph)]
    ptr = batch.ptr.tolist()
    for g in range(batch.num_graphs):
        lo, hi = ptr[g], ptr[g + 1]
        nodes, steps = cand[lo:hi].nonzero(as_tuple=True)
        if nodes.numel() == 0:
            continue
        gen = torch.Generator().manual_seed(seed * 1_000_003 + int(graph_ids[g]))
        pick = torch.randperm(nodes.numel(), generator=gen)[:sites_per_graph]
        for k, i in enumerate(pick.tolist()):
            rounds[k][lo + nodes[i], steps[i]] = True
    return [r for r in rounds if r.any()], cand


def _add_at_sites(hook: str, sites: Tensor, add: Tensor) -> list:
    """Forward hooks adding ``add`` [N, S, d] to the rows of ``sites`` [N, S] at each step."""

    def make(t: int) -> Callable:
        rows, delta = sites[:, t], add[:, t]

        def fn(x: Tensor, hook) -> Tensor:
            return torch.where(rows[:, None].to(x.device), x + delta.to(x), x)

        return fn

    return [(f"steps.{t}.{hook}", make(t)) for t in range(sites.shape[1]) if sites[:, t].any()]


@torch.no_grad()
def _steering_delta_norms(model, sae, hook, feature, value, cache, sites: Tensor) -> Tensor:
    """``[N, S]``: the norm of ``decode(clamped) - decode(original)`` at each site (0 elsewhere)."""
    norms = torch.zeros(sites.shape, dtype=torch.float32)
    for t in range(sites.shape[1]):
        rows = sites[:, t]
        if not rows.any():
            continue
        x = cache[f"steps.{t}.{hook}"][rows]
        acts = sae.encode(x.to(sae.dtype))
        clamped = acts.clone()
        clamped[:, feature] = value
        norms[rows, t] = (sae.decode(clamped) - sae.decode(acts)).norm(dim=-1).float()
    return norms


def _quantile(x: Tensor, q: float) -> float:
    return float(torch.quantile(x.double(), q)) if x.numel() else 0.0


def _default_dataset(alg: str, num_graphs: int, sizes, seed: int):
    from hooked_nar.data import CLRSDataset

    return CLRSDataset(alg, num_graphs, sizes=tuple(sizes), seed=seed, progress=False)


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


@dataclass
class _Setup:
    hook: str
    rows: Tensor
    labels: dict[str, Tensor]
    acts: Tensor
    frequency: Tensor
    store_rows: int
    store_params: dict


def _setup(model, sae, store, hook, store_graphs, sizes, seed, progress) -> _Setup:
    from sae import ActivationStore

    if store is None:
        data = _default_dataset(model.cfg.algorithm, store_graphs, sizes, 20_000 + seed)
        store = ActivationStore.from_model(model, data, hooks=hook, progress=progress)
    if store.metadata.get("algorithm") not in (None, model.cfg.algorithm):
        raise ValueError(
            f"store holds {store.metadata.get('algorithm')} activations, the model runs "
            f"{model.cfg.algorithm}"
        )
    rows = store.rows(hook)
    acts = feature_acts(sae, rows)
    return _Setup(
        hook,
        rows,
        store.labels("computed"),
        acts,
        (acts > 0).float().mean(0),
        len(store),
        dict(store.metadata.get("dataset", {})),
    )


# ---------------------------------------------------------------------------------- tests


def causal_concept_test(
    model,
    sae,
    concept: str,
    dataset=None,
    *,
    feature: int | None = None,
    store=None,
    mode: Literal["zero", "mean", "resample"] = "zero",
    num_controls: int = 8,
    steer_value: float | None = None,
    steer_scale: float = 1.0,
    num_graphs: int = 64,
    sizes: Sequence[int] = (16,),
    sites_per_graph: int = 4,
    store_graphs: int = 128,
    batch_size: int = 64,
    seed: int = 0,
    rule: dict[str, float] | None = None,
    progress: bool | None = None,
) -> ConceptTest:
    """Ablate and steer the feature of ``concept`` beside controls (see the module docstring).

    ``dataset``: test graphs (default: ``num_graphs`` ER graphs with ``sizes`` nodes, seed
    ``30_000 + seed``); ``store``: an :class:`~sae.ActivationStore` at the SAE's hook for the
    best feature, frequencies and clamp values (default: ``store_graphs`` graphs, seed
    ``20_000 + seed``); ``feature``: test this feature instead of the best one; ``mode``:
    the ablation (``"mean"`` / ``"resample"`` use the store as reference); ``steer_value``:
    the clamp value (default: ``steer_scale`` times the :data:`STEER_QUANTILE` quantile of
    its activation where the concept is true); ``steer_scale`` also multiplies the matched
    control features' clamp values (a dose for dose-response curves); ``sites_per_graph``: steering sites drawn per graph; ``rule``: overrides of
    :data:`CAUSAL_RULE`. Returns a :class:`ConceptTest`.
    """
    if _concept(model, concept).dtype != torch.bool:
        raise ValueError(
            f"concept={concept!r} is a scalar concept; it is not tested (correlational only)"
        )
    (test,) = _run_tests(
        model,
        sae,
        [concept],
        dataset,
        store,
        feature=feature,
        steer_value=steer_value,
        mode=mode,
        num_controls=num_controls,
        steer_scale=steer_scale,
        num_graphs=num_graphs,
        sizes=sizes,
        sites_per_graph=sites_per_graph,
        store_graphs=store_graphs,
        batch_size=batch_size,
        seed=seed,
        rule=rule,
        progress=progress,
    )
    return test


def _run_tests(
    model,
    sae,
    concepts: Sequence[str],
    dataset,
    store,
    *,
    feature: int | None,
    steer_value: float | None,
    num_graphs: int,
    sizes: Sequence[int],
    store_graphs: int,
    progress: bool | None,
    **options,
) -> list[ConceptTest]:
    """Check the options, build the shared store statistics and test dataset once, and run
    :func:`_run_test` for each of ``concepts`` (boolean concepts of the model's algorithm)."""
    hook = _sae_hook(model, sae, None)
    _check_options(
        sae,
        feature,
        options["mode"],
        options["num_controls"],
        options["sites_per_graph"],
        num_graphs,
        options["batch_size"],
    )
    show = _progress(progress)
    setup = _setup(model, sae, store, hook, store_graphs, sizes, options["seed"], show)
    if dataset is None:
        dataset = _default_dataset(model.cfg.algorithm, num_graphs, sizes, 30_000 + options["seed"])
    return [
        _run_test(
            model,
            sae,
            c,
            dataset,
            setup,
            feature=feature,
            steer_value=steer_value,
            show=show,
            **options,
        )
        for c in concepts
    ]


def _check_options(sae, feature, mode, num_controls, sites_per_graph, num_graphs, batch_size):
    if feature is not None and not (
        isinstance(feature, int) and not isinstance(feature, bool) and 0 <= feature < sae.cfg.d_sae
    ):  # numpy / torch integers: pass int(feature)
        raise ValueError(f"feature must be an int in 0..{sae.cfg.d_sae - 1}, got {feature!r}")
    if min(num_controls, sites_per_graph, num_graphs, batch_size) < 1:
        raise ValueError("num_controls, sites_per_graph, num_graphs and batch_size must be >= 1")
    if mode not in ("zero", "mean", "resample"):
        raise ValueError(f"mode={mode!r} must be 'zero', 'mean' or 'resample'")


def _run_test(
    model,
    sae,
    concept: str,
    dataset,
    setup: _Setup,
    *,
    feature: int | None,
    mode: str,
    num_controls: int,
    steer_value: float | None,
    steer_scale: float,
    sites_per_graph: int,
    batch_size: int,
    seed: int,
    rule: dict[str, float] | None,
    show: bool,
) -> ConceptTest:
    from sae.concepts import auroc as auroc_fn
    from sae.concepts import best_features, feature_concept_scores

    c = _concept(model, concept)
    alg = model.cfg.algorithm
    hook = setup.hook
    labels = setup.labels[concept]
    if feature is None:
        best = best_features(feature_concept_scores(setup.acts, {concept: labels}))[concept]
        feature, auroc = int(best["feature"]), float(best["auroc"])
    else:
        auroc = float(auroc_fn(setup.acts[:, feature], labels)[0])
    controls = matched_features(setup.frequency, feature, num_controls, seed=seed)
    if not controls:
        raise ValueError("the SAE has no live feature to serve as a control")

    # targets: the hint behind the concept, or every non-scalar node hint for inputs
    target_field = _hint_field(model, c.source_hint)
    if target_field is not None:
        fields = [target_field]
        steer_note = ""
        if c.rule[0] not in _STEERABLE_RULES:
            steer_note = f"not applicable: rule {c.rule[0]!r} has no 'on' value to predict"
    else:
        fields = [f for f in model.hint_fields if f.location == "node" and f.type != "scalar"]
        steer_note = (
            f"not applicable: {concept} is read from the input {c.source_hint!r}, which the "
            "model never predicts"
        )
    if not fields:
        raise ValueError(f"the model predicts no hint to measure {concept!r} on")

    # clamp values
    if steer_value is None:
        steer_value = steer_scale * _quantile(setup.acts[labels.bool(), feature], STEER_QUANTILE)
    steer_value = float(steer_value)
    control_values = []
    for j in controls:
        a = setup.acts[:, j]
        control_values.append(steer_scale * _quantile(a[a > 0], STEER_QUANTILE))

    reference = setup.rows if mode != "zero" else None
    ablations = [
        ablate_features(model, sae, [f], mode, reference=reference, hook=hook, seed=seed)
        for f in [feature, *controls]
    ]
    directions = random_directions(sae.cfg.d_in, len(controls), 1.0, seed=seed + 1)

    from hooked_nar.data import CLRSLoader

    abl_parts, ctl_parts = [], []  # [3, B] per batch: margin removed, flip rate, log-prob drop
    st_eff, st_dir, st_feat = [], [], []
    num_sites = 0
    was_training = model.training
    model.eval()
    offset = 0
    try:
        from tqdm.auto import tqdm

        loader = CLRSLoader(dataset, batch_size=batch_size, shuffle=False)
        for batch in tqdm(loader, desc=f"causal test {concept}", disable=not show, leave=False):
            B = batch.num_graphs
            graph_ids = torch.arange(offset, offset + B)
            offset += B
            with torch.no_grad():
                logits, cache = model.run_with_cache(
                    batch,
                    names_filter=lambda n: n.startswith("steps.") and n.split(".", 2)[2] == hook,
                )
                clean = _field_measures(model, logits, batch, fields)
                per = []
                for ab in ablations:
                    edited = _field_measures(
                        model, model.run_with_hooks(batch, fwd_hooks=list(ab)), batch, fields
                    )
                    per.append(_ablation_per_graph(clean, edited, B))
            abl_parts.append(per[0])
            ctl_parts.append(torch.stack(per[1:]).nanmean(0))
            if steer_note:
                continue

            rounds, _ = steering_sites(
                model,
                batch,
                concept,
                logits=logits,
                sites_per_graph=sites_per_graph,
                seed=seed,
                graph_ids=graph_ids,
            )
            flips = torch.zeros(1 + 2 * len(controls), B, dtype=torch.float64)
            count = torch.zeros(B, dtype=torch.float64)
            for sites in rounds:
                site_node, site_step = sites.nonzero(as_tuple=True)
                site_graph = batch.batch[site_node]
                count.index_add_(0, site_graph, torch.ones(len(site_node), dtype=torch.float64))
                norms = _steering_delta_norms(model, sae, hook, feature, steer_value, cache, sites)
                runs = [list(steer(model, feature, steer_value, nodes=sites, sae=sae, hook=hook))]
                for k in range(len(controls)):
                    add = norms[..., None] * directions[k]
                    runs.append(_add_at_sites(hook, sites, add))
                for j, v in zip(controls, control_values, strict=True):
                    runs.append(list(steer(model, j, v, nodes=sites, sae=sae, hook=hook)))
                for r, hooks in enumerate(runs):
                    with torch.no_grad():
                        out = model.run_with_hooks(batch, fwd_hooks=hooks)
                    pred, _ = concept_predictions(model, batch, concept, logits=out)
                    hit = pred[site_node, site_step].double()
                    flips[r].index_add_(0, site_graph, hit)
            num_sites += int(count.sum())
            rate = torch.where(count > 0, flips / count.clamp(min=1), math.nan)
            st_eff.append(rate[0])
            st_dir.append(rate[1 : 1 + len(controls)].mean(0))
            st_feat.append(rate[1 + len(controls) :].mean(0))
    finally:
        model.train(was_training)

    settings = {
        "algorithm": alg,
        "model": getattr(getattr(model, "metadata", None), "get", lambda *_: None)("name")
        or getattr(sae.cfg.metadata, "model_name", None)
        or alg,
        "sae": {
            "architecture": sae.cfg.architecture(),
            "d_sae": sae.cfg.d_sae,
            "hook": hook,
        },
        "concept": concept,
        "feature": feature,
        "auroc": auroc,
        "targets": [f.name for f in fields],
        "mode": mode,
        "steps": "all",
        "nodes": "all",
        "control_features": controls,
        "control_frequency": [float(setup.frequency[j]) for j in controls],
        "feature_frequency": float(setup.frequency[feature]),
        "steer_value": steer_value,
        "steer_quantile": STEER_QUANTILE,
        "steer_scale": steer_scale,
        "control_steer_values": control_values,
        "num_graphs": len(dataset),
        "dataset": dict(getattr(dataset, "params", {"num_graphs": len(dataset)})),
        "store_rows": setup.store_rows,
        "store_dataset": setup.store_params,
        "sites_per_graph": sites_per_graph,
        "num_sites": num_sites,
        "num_controls": len(controls),
        "seed": seed,
        "rule": {**CAUSAL_RULE, **(rule or {})},
    }
    common = {k: settings[k] for k in ("algorithm", "concept", "feature", "mode", "seed")}
    cat = lambda xs: torch.cat(xs, -1) if xs else torch.zeros(0)  # noqa: E731
    name = f"{mode}-ablate f{feature}"
    effect, control = cat(abl_parts), cat(ctl_parts)
    ablation = [
        CausalResult.from_per_graph(
            name,
            metric,
            effect[i] if effect.numel() else effect,
            control[i] if control.numel() else control,
            {**common, "control": f"{len(controls)} frequency-matched features"},
            seed=seed,
        )
        for i, metric in enumerate(ABLATION_METRICS)
    ]
    steering = []
    if not steer_note:
        sname = f"clamp f{feature} = {steer_value:.3g}"
        extra = {"steer_value": steer_value, "num_sites": num_sites}
        steering = [
            CausalResult.from_per_graph(
                sname,
                "flip to concept",
                cat(st_eff),
                cat(st_dir),
                {**common, **extra, "control": f"{len(controls)} random directions, same norm"},
                seed=seed,
            ),
            CausalResult.from_per_graph(
                sname,
                "flip to concept",
                cat(st_eff),
                cat(st_feat),
                {**common, **extra, "control": f"{len(controls)} matched features clamped high"},
                seed=seed,
            ),
        ]
        if num_sites == 0:
            steer_note = "no site where the concept is false and could be predicted true"
    verdict = judge(ablation, steering or None, rule)
    return ConceptTest(
        alg,
        concept,
        feature,
        auroc,
        settings["targets"],
        ablation,
        steering,
        steer_note,
        verdict,
        settings,
    )


def causal_concept_tests(
    model,
    sae,
    concepts: Sequence[str] | None = None,
    dataset=None,
    *,
    store=None,
    mode: Literal["zero", "mean", "resample"] = "zero",
    num_controls: int = 8,
    steer_scale: float = 1.0,
    num_graphs: int = 64,
    sizes: Sequence[int] = (16,),
    sites_per_graph: int = 4,
    store_graphs: int = 128,
    batch_size: int = 64,
    seed: int = 0,
    rule: dict[str, float] | None = None,
    progress: bool | None = None,
) -> list[ConceptTest]:
    """:func:`causal_concept_test` of every boolean concept of the model's algorithm (or of
    ``concepts``), each with its best feature, sharing one store and one test dataset.
    Scalar concepts are skipped (correlational only; :func:`concept_tests_table` lists them).
    """
    from hooked_nar.concepts import CONCEPTS

    alg = model.cfg.algorithm
    table = CONCEPTS[alg]
    if concepts is None:
        concepts = list(table)
    for c in concepts:
        _concept(model, c)
    concepts = [c for c in concepts if table[c].dtype == torch.bool]
    return _run_tests(
        model,
        sae,
        concepts,
        dataset,
        store,
        feature=None,
        steer_value=None,
        mode=mode,
        num_controls=num_controls,
        steer_scale=steer_scale,
        num_graphs=num_graphs,
        sizes=sizes,
        sites_per_graph=sites_per_graph,
        store_graphs=store_graphs,
        batch_size=batch_size,
        seed=seed,
        rule=rule,
        progress=progress,
    )
