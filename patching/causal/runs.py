"""Running a causal test's interventions and measuring them: clean runs, target rows and
steering sites of every batch (:func:`prepare_batches`), one ablation or steering run measured
on every concept's target (:func:`run_ablation`, :func:`run_steering`), and every unit, null
unit and positive control at every dose (:func:`run_doses`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from patching.causal.options import VERDICT_DOSE, CausalOptions
from patching.causal.sites import site_candidates, steering_sites
from patching.causal.targets import (
    consequence_rows,
    flip_rate,
    margin_removed,
    margins,
    steering_rows,
)
from patching.causal.units import Unit, ablation_hooks, steering_hooks

__all__ = [
    "ConceptSpec",
    "PreparedBatch",
    "dose_subset",
    "null_vector",
    "prepare_batches",
    "run_ablation",
    "run_doses",
    "run_steering",
]


@dataclass
class ConceptSpec:
    name: str
    target: Any
    unit: Unit
    control: Unit
    nulls: list[Unit]
    negation: list[int]
    auroc: float
    pool: int  # uninformative live features the feature nulls are drawn from


@dataclass
class PreparedBatch:
    batch: Any
    num_steps: int
    graphs: Tensor  # dataset indices
    true_sites: dict[str, Tensor]  # concept -> [N, S] where it holds (ablated there)
    clean: dict[str, Tensor]  # concept -> clean margins on its consequence rows
    rows: dict[str, Any]  # concept -> consequence rows
    rounds: dict[str, list]  # concept -> steering rounds
    steer_rows: dict[tuple, Any]  # (site concept, target concept, round) -> rows
    steer_clean: dict[tuple, Tensor]


def prepare_batches(
    model, data, specs: list[ConceptSpec], opts: CausalOptions
) -> list[PreparedBatch]:
    """Clean runs, consequence rows and steering sites of every batch."""
    from hooked_nar.concept_labels import concept_labels
    from hooked_nar.data import CLRSLoader

    out, offset = [], 0
    for batch in CLRSLoader(data, batch_size=opts.batch_size, device=model.device):
        B = batch.num_graphs
        graphs = torch.arange(offset, offset + B)
        offset += B
        with torch.no_grad():
            logits = model(batch)
        S = logits.num_processor_steps
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
        out.append(PreparedBatch(batch, S, graphs, true_sites, clean, rows, rounds, srows, sclean))
    return out


@torch.no_grad()
def run_ablation(
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
            removed = margin_removed(b.clean[s.name], edited, r.graph, b.batch.num_graphs)
            out[i, b.graphs] = removed.cpu()
    return out


@torch.no_grad()
def run_steering(
    model, site_concept: str, vector: Tensor, batches, specs, hook: str, G: int
) -> Tensor:
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
                flips[i, b.graphs] += f.cpu()
                count[i, b.graphs] += n.cpu()
    return torch.where(count > 0, flips / count.clamp(min=1), torch.full_like(flips, math.nan))


def null_vector(null: Unit, unit: Unit, dose: float) -> Tensor:
    return null.steer_unit * unit.steer_vector(dose).norm()


def dose_subset(nulls: list[Unit], per_kind: int) -> list[Unit]:
    feats = [n for n in nulls if n.kind == "features"][:per_kind]
    dirs = [n for n in nulls if n.kind == "direction"][:per_kind]
    return feats + dirs


def run_doses(
    model, sae, specs: list[ConceptSpec], names, batches, hook: str, opts: CausalOptions, G: int
) -> dict[str, dict]:
    """Run the tested concepts' (``names``) units, nulls and controls at every dose and
    measure each run on every concept's target: ``{concept: {"ablation" | "steering":
    {dose: (unit [C, G], null [K, C, G], control [C, G] or None)}}}``."""
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
        dose_nulls = dose_subset(s.nulls, opts.num_null_dose)
        for dose in opts.ablation_doses:
            nulls = s.nulls if dose == VERDICT_DOSE else dose_nulls
            unit = run_ablation(model, sae, s.name, s.unit, dose, batches, specs, hook, G)
            null = torch.stack(
                [run_ablation(model, sae, s.name, n, dose, batches, specs, hook, G) for n in nulls]
            )
            ctrl = (
                run_ablation(model, sae, s.name, s.control, dose, batches, specs, hook, G)
                if dose == VERDICT_DOSE
                else None
            )
            r["ablation"][dose] = (unit, null, ctrl)
            bar.update(1 + len(nulls) + (ctrl is not None))
        if has_sites[s.name]:
            for dose in opts.steer_doses:
                nulls = s.nulls if dose == VERDICT_DOSE else dose_nulls
                unit = run_steering(
                    model, s.name, s.unit.steer_vector(dose), batches, specs, hook, G
                )
                null = torch.stack(
                    [
                        run_steering(
                            model, s.name, null_vector(n, s.unit, dose), batches, specs, hook, G
                        )
                        for n in nulls
                    ]
                )
                ctrl = None
                if dose == VERDICT_DOSE:
                    ctrl = run_steering(
                        model, s.name, s.control.steer_vector(dose), batches, specs, hook, G
                    )
                r["steering"][dose] = (unit, null, ctrl)
                bar.update(1 + len(nulls) + (ctrl is not None))
        raw[s.name] = r
    bar.close()
    return raw
