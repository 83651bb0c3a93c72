"""Steering sites: where making a concept true can be tested, and the model's concept
predictions.

A site is a (node v, processor step t) where the concept is false at the state step t
computes (hint t + 1) and the algorithm itself makes it true at the next step (hint t + 2):
a BFS node that is unvisited but has a visited neighbour, a node that enters the queue next.
Steering there asks the model to take that step one step early, a state it can represent;
its consequence (:mod:`patching.causal.targets`) is measured where the truth does not have
it. Sites are drawn per graph, spread over steps (one site per step before a second one at
any step), with a generator seeded by ``seed`` and the graph's dataset index.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from hooked_nar.concept_labels import CONCEPTS, concept_labels

if TYPE_CHECKING:
    from torch_geometric.data import Batch

    from hooked_nar.model import HookedNAR, NARLogits

__all__ = [
    "check_concept",
    "concept_predictions",
    "site_candidates",
    "sites_per_step",
    "steering_sites",
]


def check_concept(model: HookedNAR, concept: str):
    """The :class:`~hooked_nar.concept_labels.Concept` named ``concept`` of the model's algorithm;
    ValueError naming the valid ones otherwise."""
    alg = model.cfg.algorithm
    if not isinstance(concept, str) or concept not in CONCEPTS[alg]:
        raise ValueError(
            f"concept={concept!r} is not a concept of {alg}; valid: {list(CONCEPTS[alg])}"
        )
    return CONCEPTS[alg][concept]


def concept_predictions(
    model: HookedNAR,
    batch: Batch,
    concept: str,
    fwd_hooks: Sequence = (),
    logits: NARLogits | None = None,
) -> tuple[Bool[Tensor, "N S"], Bool[Tensor, "N S"]]:
    """The model's prediction of ``concept`` at every (node, processor step), and the true
    labels (both at hint t + 1, False on padded steps): the concept's rule applied to the
    decoded hint predictions, with the true hint 0 as the state before the first step.
    ``fwd_hooks``: an intervention to run with; ``logits``: use these instead of a run.
    A concept read from an input (``is_source``) is predicted as its truth."""
    from hooked_nar.model.fields import decode

    c = check_concept(model, concept)
    truth = concept_labels(batch, "computed", [concept])[concept]
    field = next((f for f in model.hint_fields if f.name == c.source_hint), None)
    if field is None:
        return truth.clone(), truth
    if logits is None:
        with torch.no_grad():
            logits = model.run_with_hooks(batch, fwd_hooks=list(fwd_hooks))
    dec = decode(field, logits.hints[c.source_hint], batch, logits.pointer_index)
    true = batch[c.source_hint]
    T = true.shape[1]
    timeline = torch.cat([true[:, :1].float(), dec[:, : T - 1].float()], 1)
    if timeline.shape[1] < T:
        timeline = torch.cat([timeline, true[:, timeline.shape[1] :].float()], 1)
    edited = copy.copy(batch)
    edited[c.source_hint] = timeline
    return concept_labels(edited, "computed", [concept])[concept], truth


def site_candidates(batch: Batch, concept: str) -> Bool[Tensor, "N S"]:
    """(v, t) with steps t and t + 1 valid, the concept false at hint t + 1 and true at
    hint t + 2 in the true trajectory."""
    lab = concept_labels(batch, "computed", [concept])
    y, valid = lab[concept], lab["step_mask"]
    nxt = torch.zeros_like(y)
    nxt[:, :-1] = y[:, 1:] & valid[:, 1:]
    return valid & ~y & nxt


def steering_sites(
    batch: Batch,
    candidates: Bool[Tensor, "N S"],
    sites_per_graph: int,
    seed: int = 0,
    graph_ids: Int[Tensor, " graphs"] | None = None,
) -> list[Bool[Tensor, "N S"]]:
    """Up to ``sites_per_graph`` rounds of sites, the k-th round holding the k-th site of
    every graph (one site per graph per round, so rounds run in one forward pass each).
    Within a graph, candidates are shuffled and taken one step at a time (every step once,
    in random order, before any step twice). ``graph_ids`` [B]: dataset indices for the seeds (default
    0..B-1)."""
    if sites_per_graph < 1:
        raise ValueError(f"sites_per_graph must be >= 1, got {sites_per_graph}")
    if graph_ids is None:
        graph_ids = torch.arange(batch.num_graphs, device=candidates.device)
    rounds = [torch.zeros_like(candidates) for _ in range(sites_per_graph)]
    ptr = batch.ptr.tolist()
    for g in range(batch.num_graphs):
        lo, hi = ptr[g], ptr[g + 1]
        nodes, steps = candidates[lo:hi].nonzero(as_tuple=True)
        if nodes.numel() == 0:
            continue
        gen = torch.Generator().manual_seed(seed * 1_000_003 + int(graph_ids[g]))
        perm = torch.randperm(nodes.numel(), generator=gen, device="cpu").to(nodes.device)
        nodes, steps = nodes[perm], steps[perm]
        # rank of each candidate among those of its step: every step once (in shuffled
        # order, so the first site is at a random step) before any step twice
        rank = torch.zeros_like(steps)
        for s in steps.unique():
            at = (steps == s).nonzero().flatten()
            rank[at] = torch.arange(at.numel(), device=at.device)
        order = torch.argsort(rank, stable=True)
        for k, i in enumerate(order[:sites_per_graph].tolist()):
            rounds[k][lo + nodes[i], steps[i]] = True
    return [r for r in rounds if r.any()]


def sites_per_step(rounds: list[Tensor]) -> list[int]:
    """Number of sites at each processor step over all ``rounds``."""
    if not rounds:
        return []
    return torch.stack(rounds).sum((0, 1)).tolist()
