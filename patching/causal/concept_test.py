"""Causal concept tests: ablate and steer a concept's representation, measure its own
downstream consequence beside a null and a positive control, and judge with one rule.

>>> test = causal_concept_test(model, sae, "is_visited")            # unit="group"
>>> print(test)                    # unit, target, effect vs null, p (Holm), verdict
>>> tests = causal_concept_tests(model, sae)                         # every boolean concept
>>> print(concept_tests_table(tests, markdown=True))

For each concept (see the modules of :mod:`patching.causal`):

1. the unit (:mod:`~patching.causal.units`): the concept's feature group, features or
   direction, at the SAE's hook of every processor step; the negation group (features
   with AUROC <= 1 - ``group_auroc``) is listed beside it;
2. the target (:mod:`~patching.causal.targets`): the concept's declared consequence;
3. ablation at the (node, step) rows where the concept holds, and steering at sites where
   the algorithm makes the concept true next (:mod:`~patching.causal.sites`), each at every
   dose, beside null units of the same size and the positive control (the concept's
   difference-of-means direction);
4. the verdict (:mod:`~patching.causal.rule`) at the verdict dose, with rank p-values
   Holm-corrected across every deciding comparison of the run;
5. specificity: the unit's null-subtracted effect on its own target beside its effect on
   every other concept's target and beside the other concepts' units on its target.

Everything is seeded: the same ``seed`` gives the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from patching.causal.options import VERDICT_DOSE, CausalOptions
from patching.causal.rule import (
    DECIDING_METRICS,
    Comparison,
    compare,
    concept_verdict,
    intervention_verdict,
)
from patching.causal.runs import ConceptSpec, prepare_batches, run_doses
from patching.causal.sites import check_concept, sites_per_step
from patching.causal.targets import concept_target
from patching.causal.units import Unit, direction_unit, feature_unit, mean_difference, null_units
from patching.controls import uninformative_features
from patching.stats import holm, null_size_for

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sae_lens import SAE
    from torch_geometric.data import Data

    from hooked_nar.data import CLRSDataset
    from hooked_nar.model import HookedNAR
    from sae.activation_store import ActivationStore

__all__ = ["ConceptTest", "causal_concept_test", "causal_concept_tests"]


@dataclass
class ConceptTest:
    """The causal test of one concept's unit.

    ``unit``: kind, name, features (SAE units) and size; ``negation_features``: the group
    of its negation; ``auroc``: the unit's own AUROC for the concept (features: of their
    summed activations; direction: of the projection); ``target``: the declared consequence;
    ``ablation`` / ``steering``: the deciding :class:`~patching.causal.rule.Comparison` at
    the verdict dose (``steering`` None when no site exists, e.g. an input concept);
    ``control_*``: the positive control's; ``*_verdict`` and ``verdict``;
    ``specificity``: per intervention, the null-subtracted effect on every concept's target
    (``on_targets``), the other concepts' units on this target (``units_here``) and
    ``specific``; ``dose``: per intervention, rows ``(dose, effect, null mean, null 2.5%,
    null 97.5%, off-distribution)``; ``sites_per_step``; ``settings``.
    """

    algorithm: str
    concept: str
    unit: dict[str, Any]
    negation_features: list[int]
    auroc: float
    target: str
    ablation: Comparison
    steering: Comparison | None
    control_ablation: Comparison
    control_steering: Comparison | None
    ablation_verdict: str
    steering_verdict: str
    verdict: str
    specificity: dict[str, Any] = field(default_factory=dict)
    dose: dict[str, list] = field(default_factory=dict)
    sites_per_step: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def causal(self) -> bool:
        """Whether the verdict is ``"causal"``."""
        return self.verdict == "causal"

    def as_dict(self) -> dict:
        """Every field as a JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        u = self.unit
        lines = [
            f"{self.algorithm} {self.concept}: {u['name']} (AUROC {self.auroc:.3f}) -> "
            f"{self.target}; verdict: {self.verdict}",
            f"  ablation ({DECIDING_METRICS['ablation']}): {self.ablation.text()} -> "
            f"{self.ablation_verdict}; control {self.control_ablation.text()}",
        ]
        if self.steering is not None:
            lines.append(
                f"  steering ({DECIDING_METRICS['steering']}): {self.steering.text()} -> "
                f"{self.steering_verdict}; control {self.control_steering.text()}"
            )
        else:
            lines.append("  steering: n/a (no site where the algorithm makes it true next)")
        lines.append(f"  specific: {self.specificity.get('specific')}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ the run


@dataclass
class _Store:
    hook: str
    rows: Tensor
    labels: dict[str, Tensor]
    acts: Tensor | None
    num_rows: int


def causal_concept_test(
    model: HookedNAR,
    sae: SAE,
    concept: str,
    dataset: CLRSDataset | Sequence[Data] | None = None,
    *,
    store: ActivationStore | None = None,
    options: CausalOptions | None = None,
    **changes,
) -> ConceptTest:
    """Test one boolean ``concept`` (see the module docstring). ``options``: a
    :class:`~patching.causal.options.CausalOptions` (``**changes`` override its fields,
    e.g. ``unit="feature", features=(3,)``); ``dataset``: test graphs; ``store``: an
    :class:`~sae.ActivationStore` at the SAE's hook for units, nulls and natural scales."""
    (test,) = causal_concept_tests(
        model, sae, [concept], dataset, store=store, options=options, **changes
    )
    return test


def causal_concept_tests(
    model: HookedNAR,
    sae: SAE,
    concepts: list[str] | None = None,
    dataset: CLRSDataset | Sequence[Data] | None = None,
    *,
    store: ActivationStore | None = None,
    options: CausalOptions | None = None,
    **changes,
) -> list[ConceptTest]:
    """Test every boolean concept of the model's algorithm (or ``concepts``) in one run:
    shared store, test graphs and Holm correction. Scalar concepts are not tested."""
    from hooked_nar.concept_labels import CONCEPTS

    opts = (options or CausalOptions()).with_(**changes)
    alg = model.cfg.algorithm
    names = list(CONCEPTS[alg]) if concepts is None else list(concepts)
    for c in names:
        if check_concept(model, c).dtype != torch.bool:
            if concepts is not None:
                raise ValueError(
                    f"concept={c!r} is a scalar concept; it is not tested (correlational only)"
                )
    names = [c for c in names if CONCEPTS[alg][c].dtype == torch.bool]
    hook = _hook(model, sae)
    d_in = _d_in(model, sae)
    opts.check(None if sae is None else sae.cfg.d_sae, d_in)
    targets = {c: concept_target(model, c) for c in names}
    for c, v in CONCEPTS[alg].items():  # every other boolean concept's target is measured too
        if v.dtype == torch.bool and c not in targets:
            try:
                targets[c] = concept_target(model, c)
            except ValueError:
                continue
    st = _store(model, sae, store, hook, opts)
    constant = {c for c in targets if st.labels[c].all() or not st.labels[c].any()}
    names_run = [c for c in names if c not in constant]
    m = 2 * len(names_run)
    num_null = opts.num_null or math.ceil(null_size_for(max(m, 1), _alpha(opts)) / 2)
    specs = [
        _build(c, targets, st, sae, opts, num_null, model) for c in targets if c not in constant
    ]
    data = (
        dataset
        if dataset is not None
        else _dataset(alg, opts.num_graphs, opts.sizes, 30_000 + opts.seed)
    )
    was_training = model.training
    model.eval()
    try:
        batches = prepare_batches(model, data, specs, opts)
        raw = run_doses(model, sae, specs, names_run, batches, hook, opts, len(data))
        ran = [
            _assemble(alg, i, s, specs, raw, batches, opts)
            for i, s in enumerate(specs)
            if s.name in names_run
        ]
    finally:
        model.train(was_training)
    by_name = {t.concept: t for t in ran}
    tests = [by_name.get(c) or _untestable(alg, c, targets[c], opts) for c in names]
    _correct(tests)
    for t in tests:
        _judge(t, opts)
        t.settings.update(
            {
                "algorithm": alg,
                "hook": hook,
                "sae": None
                if sae is None
                else {"d_sae": sae.cfg.d_sae, "architecture": sae.cfg.architecture()},
                "options": {k: v for k, v in asdict(opts).items() if k != "direction"},
                "num_null_per_kind": num_null,
                "num_graphs": len(data),
                "dataset": dict(getattr(data, "params", {"num_graphs": len(data)})),
                "store_rows": st.num_rows,
                "holm_comparisons": m,
            }
        )
    return tests


def _untestable(alg: str, concept: str, target, opts: CausalOptions) -> ConceptTest:
    """The result of a concept that is constant on the store's rows: no unit, no null,
    nothing measured; ``"inconclusive"``."""
    nan = compare(
        DECIDING_METRICS["ablation"], torch.full((1,), math.nan), torch.full((1, 1), math.nan)
    )
    return ConceptTest(
        alg,
        concept,
        {
            "kind": opts.unit,
            "name": "none (constant on the store's rows)",
            "features": [],
            "size": 0,
        },
        [],
        math.nan,
        f"{target.hint}: {target.description}",
        nan,
        None,
        nan,
        None,
        "inconclusive",
        "n/a",
        "inconclusive",
        settings={"note": "the concept is constant on the store's rows; use more store graphs"},
    )


def _alpha(opts: CausalOptions) -> float:
    from patching.causal.rule import CAUSAL_RULE

    return {**CAUSAL_RULE, **(opts.rule or {})}["alpha"]


def _hook(model, sae) -> str:
    if sae is None:
        return "hook_node_out"
    from patching.interventions import _sae_hook

    return _sae_hook(model, sae, None)


def _d_in(model, sae) -> int:
    return int(sae.cfg.d_in) if sae is not None else int(model.cfg.d_model)


def _dataset(alg: str, num_graphs: int, sizes, seed: int):
    from hooked_nar.data import CLRSDataset

    return CLRSDataset(alg, num_graphs, sizes=tuple(sizes), seed=seed, progress=False)


def _store(model, sae, store, hook: str, opts: CausalOptions) -> _Store:
    from sae import ActivationStore

    if store is None:
        data = _dataset(model.cfg.algorithm, opts.store_graphs, opts.sizes, 20_000 + opts.seed)
        store = ActivationStore.from_model(model, data, hooks=hook, progress=opts.show_progress)
    if store.metadata.get("algorithm") not in (None, model.cfg.algorithm):
        raise ValueError(
            f"store holds {store.metadata.get('algorithm')} activations, the model runs "
            f"{model.cfg.algorithm}"
        )
    rows = store.rows(hook).float()
    acts = None
    if sae is not None:
        from patching.interventions import feature_acts

        acts = feature_acts(sae, rows).float()
    return _Store(hook, rows, store.labels("computed"), acts, len(store))


def _build(
    concept, targets, st: _Store, sae, opts: CausalOptions, num_null: int, model
) -> ConceptSpec:
    """The unit, positive control, negation group and nulls of ``concept``."""
    from sae.feature_scores import auroc

    y = st.labels[concept].bool()
    control = direction_unit(
        mean_difference(st.rows, y), st.rows, y, "difference of means", opts.center
    )
    negation: list[int] = []
    if st.acts is not None:
        scores = auroc(st.acts, y).nan_to_num(0.5)
        live = (st.acts > 0).any(0)
        negation = torch.nonzero(live & (scores <= 1 - opts.group_auroc)).flatten().tolist()
    if opts.unit == "direction":
        direction = opts.direction if opts.direction is not None else control.directions[0]
        name = "difference of means" if opts.direction is None else "direction"
        unit = direction_unit(direction, st.rows, y, name, opts.center)
        unit_auroc = float(auroc(st.rows @ unit.directions.T, y).max())
    else:
        if opts.unit == "feature":
            feats = list(opts.features) if opts.features else [int(scores.argmax())]
        else:
            feats = torch.nonzero(live & (scores >= opts.group_auroc)).flatten().tolist()
            feats = feats or [int(scores.argmax())]
        name = f"{'group' if opts.unit == 'group' else 'features'} {feats}"
        unit = feature_unit(sae, feats, st.acts, y, name)
        unit_auroc = float(auroc(st.acts[:, feats].sum(1), y)[0])
    sharing = {
        c: st.labels[c].bool() for c, t in targets.items() if t.hint == targets[concept].hint
    }
    sharing[concept] = y
    pool = []
    if st.acts is not None:
        pool = uninformative_features(
            st.acts, sharing, opts.null_auroc_margin, exclude=unit.features
        )
    nulls = null_units(unit, pool, sae, st.acts, st.rows, num_null, seed=opts.seed)
    return ConceptSpec(
        concept, targets[concept], unit, control, nulls, negation, unit_auroc, len(pool)
    )


def _decoder_cosines(unit: Unit) -> dict[str, float]:
    """Mean and largest ``|cos|`` between the decoder rows of a feature group (a split code
    has many features with nearly orthogonal decoders); NaN below two features."""
    if unit.kind != "features" or unit.size < 2:
        return {"decoder_cos_mean": math.nan, "decoder_cos_max": math.nan}
    w = unit.directions / unit.directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    off = (w @ w.T).abs()[~torch.eye(unit.size, dtype=torch.bool)]
    return {"decoder_cos_mean": float(off.mean()), "decoder_cos_max": float(off.max())}


def _assemble(
    alg: str, i: int, s: ConceptSpec, specs, raw, batches, opts: CausalOptions
) -> ConceptTest:
    seed = opts.seed
    comps: dict[str, Any] = {}
    spec_out: dict[str, Any] = {}
    dose_out: dict[str, list] = {}
    for kind in ("ablation", "steering"):
        runs = raw[s.name][kind]
        metric = DECIDING_METRICS[kind]
        if not runs:
            comps[kind] = comps["control_" + kind] = None
            continue
        unit, null, ctrl = runs[VERDICT_DOSE]
        comps[kind] = compare(metric, unit[i], null[:, i], seed=seed)
        comps["control_" + kind] = compare(metric, ctrl[i], null[:, i], seed=seed)
        on_targets = {
            o.name: compare(metric, unit[j], null[:, j], seed=seed).diff
            for j, o in enumerate(specs)
        }
        units_here = {}
        for o in specs:
            other = raw.get(o.name, {}).get(kind)
            if o.name != s.name and other:
                u, n, _ = other[VERDICT_DOSE]
                units_here[o.name] = compare(metric, u[i], n[:, i], seed=seed).diff
        spec_out[kind] = {"on_targets": on_targets, "units_here": units_here}
        off = 1.0
        dose_out[kind] = []
        for dose, (u, n, _) in sorted(runs.items()):
            means = n[:, i].nanmean(1)
            lo, hi = torch.quantile(
                means.nan_to_num(0.0), torch.tensor([0.025, 0.975], dtype=means.dtype)
            )
            dose_out[kind].append(
                (
                    dose,
                    float(u[i].nanmean()),
                    float(means.nanmean()),
                    float(lo),
                    float(hi),
                    dose > off,
                )
            )
    pps = sites_per_step([r for b in batches for r in b.rounds[s.name]]) if batches else []
    return ConceptTest(
        alg,
        s.name,
        {
            "kind": s.unit.kind,
            "name": s.unit.name,
            "features": s.unit.features,
            "size": s.unit.size,
            **_decoder_cosines(s.unit),
        },
        s.negation,
        s.auroc,
        f"{s.target.hint}: {s.target.description}",
        comps["ablation"],
        comps["steering"],
        comps["control_ablation"],
        comps["control_steering"],
        "",
        "n/a",
        "",
        spec_out,
        dose_out,
        pps,
        settings={
            "null": {
                "uninformative_features": s.pool,
                "feature_subsets": sum(n.kind == "features" for n in s.nulls),
                "random_subspaces": sum(n.kind == "direction" for n in s.nulls),
            }
        },
    )


def _correct(tests: list[ConceptTest]) -> None:
    """Holm across the run's deciding comparisons (units), and separately the controls'."""
    for names in (("ablation", "steering"), ("control_ablation", "control_steering")):
        comps = [getattr(t, n) for t in tests for n in names if getattr(t, n) is not None]
        for c, p in zip(comps, holm([c.p for c in comps]), strict=True):
            c.p_holm = p


def _judge(t: ConceptTest, opts: CausalOptions) -> None:
    from patching.causal.rule import moves

    t.ablation_verdict = intervention_verdict(t.ablation, t.control_ablation, t.auroc, opts.rule)
    verdicts = [t.ablation_verdict]
    if t.steering is not None:
        t.steering_verdict = intervention_verdict(
            t.steering, t.control_steering, t.auroc, opts.rule
        )
        verdicts.append(t.steering_verdict)
    t.verdict = concept_verdict(verdicts)
    specific = []
    for kind, own in (("ablation", t.ablation), ("steering", t.steering)):
        sp = t.specificity.get(kind)
        if own is None or sp is None or not moves(own, opts.rule):
            continue
        others = [v for c, v in sp["on_targets"].items() if c != t.concept]
        others += list(sp["units_here"].values())
        others = [v for v in others if not math.isnan(v)]
        sp["specific"] = bool(own.diff_ci[0] > max(others, default=-math.inf))
        specific.append(sp["specific"])
    t.specificity["specific"] = any(specific) if specific else None
