"""Where the processor's units live, and one way to read or replace them at every step.

A *site* is an activation of the processor with one channel per unit, present at every
processor step ``t``:

- ``hook_msg`` ``[E, d]``: the message of every graph edge i -> j (a row per edge);
- ``update`` ``[N, d]``: the candidate hidden state ``LN(relu(W_z z + W_a aggr))`` before the
  gate mixes it with the old state (the output of the processor's ``dropout`` module; it has
  no hook point, so a forward hook on that module stands in for one);
- ``hook_gate`` ``[N, d]``: the gate ``g`` of ``h' = g * update + (1 - g) * h``;
- ``hook_node_out`` ``[N, d]``: the hidden state after the step (the next step's input).

Sites are found by introspection (the hook points each step owns, the processor's modules),
so a processor without a gate simply has no ``hook_gate`` site. ``hook_aggr`` is left out on
purpose: with max aggregation, replacing message unit k on every edge replaces aggregate
unit k exactly, so it would duplicate ``hook_msg``.

:func:`site_hooks` installs ``fn(x, t) -> x'`` at every step of every named site for the
duration of a ``with`` block and removes everything afterwards, also after an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import Tensor
from transformer_lens.hook_points import HookPoint

__all__ = ["UPDATE", "Site", "cut_hidden_carry", "processor_sites", "site_hooks"]

#: The name of the update site (the module output that stands in for a hook point).
UPDATE = "update"
#: Hook points of a processor step that carry units, in data-flow order (``update`` is added
#: between the message and the gate when the processor has one).
_HOOK_SITES = ("hook_msg", "hook_triplet_msg", "hook_gate", "hook_node_out")


@dataclass(frozen=True)
class Site:
    """One site: its ``name``, whether its rows are graph ``"node"``s or ``"edge"``s, and its
    ``width`` (number of units)."""

    name: str
    rows: str
    width: int

    @property
    def label(self) -> str:
        """Short human name (``msg``, ``update``, ``gate``, ``hidden``)."""
        return {"hook_node_out": "hidden", "hook_triplet_msg": "triplet"}.get(
            self.name, self.name.removeprefix("hook_")
        )


def processor_sites(model) -> list[Site]:
    """The unit-carrying sites of ``model``'s processor step, in data-flow order.

    Read from the hook points ``model.steps[0]`` owns and the processor's ``dropout`` module
    (the update site, single-layer processors only). Raises ``ValueError`` for a processor
    with several layers per step (its per-layer hooks are not addressed here).
    """
    if model.cfg.num_layers != 1:
        raise ValueError(
            f"circuits address single-layer processor steps; this model has num_layers="
            f"{model.cfg.num_layers}"
        )
    d = model.cfg.d_model
    step = model.steps[0]
    sites = []
    for name in _HOOK_SITES:
        if not isinstance(getattr(step, name, None), HookPoint):
            continue
        if name in ("hook_gate", "hook_node_out") and not any(s.name == UPDATE for s in sites):
            if _has_update(model):
                sites.append(Site(UPDATE, "node", d))
        sites.append(Site(name, "edge" if "msg" in name else "node", d))
    return sites


def _has_update(model) -> bool:
    return hasattr(model.processor, "dropout") and hasattr(model.processor, "out_aggr")


SiteFn = Callable[[Tensor, int], Tensor]


@contextmanager
def site_hooks(model, fns: dict[str, SiteFn], num_steps: int) -> Iterator[None]:
    """Run ``fns[site](x, t)`` on the activation ``x`` of ``site`` at every step t < num_steps
    (its return value flows on) while the block runs; everything is removed afterwards."""
    model.ensure_steps(num_steps)
    fwd = []
    for site, fn in fns.items():
        if site == UPDATE:
            continue
        for t in range(num_steps):
            fwd.append((f"steps.{t}.{site}", _at_step(fn, t)))
    handle = None
    if UPDATE in fns:
        state = {"t": -1}

        def enter(x: Tensor, hook) -> Tensor:
            state["t"] = hook.layer()
            return x

        fwd += [(f"steps.{t}.hook_node_in", enter) for t in range(len(model.steps))]
        update_fn = fns[UPDATE]

        def update_hook(module, args, out: Tensor) -> Tensor:
            return update_fn(out, state["t"]) if state["t"] < num_steps else out

        handle = model.processor.dropout.register_forward_hook(update_hook)
    try:
        with model.hooks(fwd_hooks=fwd):
            yield
    finally:
        if handle is not None:
            handle.remove()


@contextmanager
def cut_hidden_carry(model, num_steps: int) -> Iterator[None]:
    """While the block runs, gradients do not follow the gated carry ``(1 - gate) * h`` from
    one step's hidden state into the next (forward values unchanged).

    What a tied hidden unit's attribution needs: ablating unit k at every step replaces
    ``h_{t+1}[k]`` too, so the carry of ``h_t[k]`` into it reaches nothing; a gradient that
    follows it counts the same effect once per step. A no-op without a gate."""
    if not isinstance(getattr(model.steps[0], "hook_gate", None), HookPoint):
        yield
        return
    model.ensure_steps(num_steps)
    seen: dict[tuple[str, int], Tensor] = {}

    def keep(kind: str):
        def hook(x: Tensor, hook) -> Tensor:
            seen[kind, hook.layer()] = x
            return x

        return hook

    def cut(x: Tensor, hook) -> Tensor:
        h, gate = seen.get(("h", hook.layer())), seen.get(("gate", hook.layer()))
        if h is None or gate is None or not h.requires_grad:
            return x
        return x - (1 - gate.detach()) * (h - h.detach())  # the same value, carry cut

    fwd = []
    for t in range(num_steps):
        fwd += [
            (f"steps.{t}.hook_node_in", keep("h")),
            (f"steps.{t}.hook_gate", keep("gate")),
            (f"steps.{t}.hook_node_out", cut),
        ]
    try:
        with model.hooks(fwd_hooks=fwd):
            yield
    finally:
        seen.clear()


def _at_step(fn: SiteFn, t: int):
    def hook(x: Tensor, hook) -> Tensor:
        return fn(x, t)

    return hook
