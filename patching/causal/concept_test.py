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
3. ablation at every node and step, and steering at sites where the algorithm makes the
   concept true next (:mod:`~patching.causal.sites`), each at every dose, beside null units
   of the same size and the positive control (the concept's difference-of-means direction);
4. the verdict (:mod:`~patching.causal.rule`) at the verdict dose, with rank p-values
   Holm-corrected across every deciding comparison of the run;
5. specificity: the unit's null-subtracted effect on its own target beside its effect on
   every other concept's target and beside the other concepts' units on its target.

Everything is seeded: the same ``seed`` gives the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

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
from patching.causal.sites import _concept, site_candidates, sites_per_step, steering_sites
from patching.causal.targets import (
    concept_target,
    consequence_rows,
    flip_rate,
    margin_removed,
    margins,
    steering_rows,
)
from patching.causal.units import (
    Unit,
    ablation_hooks,
    direction_unit,
    feature_unit,
    mean_difference,
    null_units,
    steering_hooks,
)
from patching.controls import uninformative_features
from patching.stats import holm, null_size_for

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


@dataclass
class _Concept:
    name: str
    target: Any
    unit: Unit
    control: Unit
    nulls: list[Unit]
    negation: list[int]
    auroc: float
    pool: int  # uninformative live features the feature nulls are drawn from


@dataclass
class _Batch:
    batch: Any
    num_steps: int
    graphs: Tensor  # dataset indices
    true_sites: dict[str, Tensor]  # concept -> [N, S] where it holds (ablated there)
    clean: dict[str, Tensor]  # concept -> clean margins on its consequence rows
    rows: dict[str, Any]  # concept -> consequence rows
    rounds: dict[str, list]  # concept -> steering rounds
    steer_rows: dict[tuple, Any]  # (site concept, target concept, round) -> rows
    steer_clean: dict[tuple, Tensor]


def causal_concept_test(
    model,
    sae,
    concept: str,
    dataset=None,
    *,
    store=None,
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
    model,
    sae,
    concepts: list[str] | None = None,
    dataset=None,
    *,
    store=None,
    options: CausalOptions | None = None,
    **changes,
) -> list[ConceptTest]:
    """Test every boolean concept of the model's algorithm (or ``concepts``) in one run:
    shared store, test graphs and Holm correction. Scalar concepts are not tested."""
    from hooked_nar.concepts import CONCEPTS

    opts = (options or CausalOptions()).with_(**changes)
    alg = model.cfg.algorithm
    names = list(CONCEPTS[alg]) if concepts is None else list(concepts)
    for c in names:
        if _concept(model, c).dtype != torch.bool:
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
        batches = _prepare(model, data, specs, hook, opts)
        ran = _measure(model, sae, specs, names_run, batches, hook, opts, len(data))
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
) -> _Concept:
    """The unit, positive control, negation group and nulls of ``concept``."""
    from sae.concepts import auroc

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
    return _Concept(
        concept, targets[concept], unit, control, nulls, negation, unit_auroc, len(pool)
    )


def _prepare(model, data, specs: list[_Concept], hook: str, opts: CausalOptions) -> list[_Batch]:
    """Clean runs, consequence rows and steering sites of every batch."""
    from hooked_nar.concepts import concept_labels
    from hooked_nar.data import CLRSLoader

    out, offset = [], 0
    for batch in CLRSLoader(data, batch_size=opts.batch_size, shuffle=False):
        B = batch.num_graphs
        graphs = torch.arange(offset, offset + B)
        offset += B
        with torch.no_grad():
            logits = model(batch)
        S = logits.num_steps
        labels = concept_labels(batch, "computed", [s.name for s in specs])
        valid = labels["step_mask"]
        rows, clean, rounds, srows, sclean, true_sites = {}, {}, {}, {}, {}, {}
        for s in specs:
            true_sites[s.name] = labels[s.name].bool() & valid
            rows[s.name] = consequence_rows(batch, labels[s.name], valid, s.target)
            clean[s.name] = margins(model, logits, batch, s.target, rows[s.name])
        for s in specs:
            cand = site_candidates(batch, s.name)
            own = steering_rows(batch, cand, s.target)
            has = torch.zeros_like(cand)
            site_step = own.step - (1 if s.target.step == "next" else 0)
            has[own.cand, site_step] = True
            rounds[s.name] = steering_sites(
                batch, cand & has, opts.sites_per_graph, opts.seed, graphs
            )
            for k, sites in enumerate(rounds[s.name]):
                for o in specs:
                    r = steering_rows(batch, sites, o.target)
                    srows[(s.name, o.name, k)] = r
                    sclean[(s.name, o.name, k)] = margins(model, logits, batch, o.target, r)
        out.append(_Batch(batch, S, graphs, true_sites, clean, rows, rounds, srows, sclean))
    return out


@torch.no_grad()
def _ablate(
    model, sae, site_concept: str, unit: Unit, dose: float, batches, specs, hook: str, G: int
) -> Tensor:
    """``[C, G]``: margin removed on every concept's consequence rows when ``unit`` is
    ablated wherever ``site_concept`` holds."""
    out = torch.full((len(specs), G), math.nan, dtype=torch.float64)
    for b in batches:
        hooks = ablation_hooks(unit, hook, b.true_sites[site_concept], dose, sae)
        logits = model.run_with_hooks(b.batch, fwd_hooks=hooks)
        for i, s in enumerate(specs):
            r = b.rows[s.name]
            edited = margins(model, logits, b.batch, s.target, r)
            out[i, b.graphs] = margin_removed(b.clean[s.name], edited, r.graph, b.batch.num_graphs)
    return out


@torch.no_grad()
def _steer(model, site_concept: str, vector: Tensor, batches, specs, hook: str, G: int) -> Tensor:
    """``[C, G]``: flip rate on every concept's target rows at ``site_concept``'s sites."""
    flips = torch.zeros(len(specs), G, dtype=torch.float64)
    count = torch.zeros(len(specs), G, dtype=torch.float64)
    for b in batches:
        for k, sites in enumerate(b.rounds[site_concept]):
            logits = model.run_with_hooks(b.batch, fwd_hooks=steering_hooks(vector, sites, hook))
            for i, s in enumerate(specs):
                r = b.steer_rows[(site_concept, s.name, k)]
                edited = margins(model, logits, b.batch, s.target, r)
                f, n = flip_rate(
                    b.steer_clean[(site_concept, s.name, k)], edited, r.graph, b.batch.num_graphs
                )
                flips[i, b.graphs] += f
                count[i, b.graphs] += n
    return torch.where(count > 0, flips / count.clamp(min=1), torch.full_like(flips, math.nan))


def _null_vector(null: Unit, unit: Unit, dose: float) -> Tensor:
    return null.steer_unit * unit.steer_vector(dose).norm()


def _measure(
    model, sae, specs, names, batches, hook, opts: CausalOptions, G: int
) -> list[ConceptTest]:
    """Run the tested concepts' (``names``) units, nulls and controls at every dose and
    measure each run on every concept's target."""
    from tqdm.auto import tqdm

    tested = [s for s in specs if s.name in names]
    has_sites = {s.name: any(b.rounds[s.name] for b in batches) for s in specs}
    total = sum((2 + len(s.nulls)) * (1 + has_sites[s.name]) for s in tested) + sum(
        (
            len(opts.ablation_doses)
            + has_sites[s.name] * len(opts.steer_doses)
            - 1
            - has_sites[s.name]
        )
        * (1 + min(len(s.nulls), 2 * opts.num_null_dose))
        for s in tested
    )
    bar = tqdm(total=total, desc="causal tests", disable=not opts.show_progress, leave=False)
    raw: dict[str, dict] = {}
    for s in tested:
        r: dict[str, Any] = {"ablation": {}, "steering": {}}
        dose_nulls = _dose_subset(s.nulls, opts.num_null_dose)
        for dose in opts.ablation_doses:
            nulls = s.nulls if dose == VERDICT_DOSE else dose_nulls
            unit = _ablate(model, sae, s.name, s.unit, dose, batches, specs, hook, G)
            null = torch.stack(
                [_ablate(model, sae, s.name, n, dose, batches, specs, hook, G) for n in nulls]
            )
            ctrl = (
                _ablate(model, sae, s.name, s.control, dose, batches, specs, hook, G)
                if dose == VERDICT_DOSE
                else None
            )
            r["ablation"][dose] = (unit, null, ctrl)
            bar.update(1 + len(nulls) + (ctrl is not None))
        if has_sites[s.name]:
            for dose in opts.steer_doses:
                nulls = s.nulls if dose == VERDICT_DOSE else dose_nulls
                unit = _steer(model, s.name, s.unit.steer_vector(dose), batches, specs, hook, G)
                null = torch.stack(
                    [
                        _steer(
                            model, s.name, _null_vector(n, s.unit, dose), batches, specs, hook, G
                        )
                        for n in nulls
                    ]
                )
                ctrl = None
                if dose == VERDICT_DOSE:
                    ctrl = _steer(
                        model, s.name, s.control.steer_vector(dose), batches, specs, hook, G
                    )
                r["steering"][dose] = (unit, null, ctrl)
                bar.update(1 + len(nulls) + (ctrl is not None))
        raw[s.name] = r
    bar.close()
    alg = model.cfg.algorithm
    return [
        _assemble(alg, i, s, specs, raw, batches, opts)
        for i, s in enumerate(specs)
        if s.name in names
    ]


def _decoder_cosines(unit: Unit) -> dict[str, float]:
    """Mean and largest ``|cos|`` between the decoder rows of a feature group (a split code
    has many features with nearly orthogonal decoders); NaN below two features."""
    if unit.kind != "features" or unit.size < 2:
        return {"decoder_cos_mean": math.nan, "decoder_cos_max": math.nan}
    w = unit.directions / unit.directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    off = (w @ w.T).abs()[~torch.eye(unit.size, dtype=torch.bool)]
    return {"decoder_cos_mean": float(off.mean()), "decoder_cos_max": float(off.max())}


def _dose_subset(nulls: list[Unit], per_kind: int) -> list[Unit]:
    feats = [n for n in nulls if n.kind == "features"][:per_kind]
    dirs = [n for n in nulls if n.kind == "direction"][:per_kind]
    return feats + dirs


def _assemble(
    alg: str, i: int, s: _Concept, specs, raw, batches, opts: CausalOptions
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
