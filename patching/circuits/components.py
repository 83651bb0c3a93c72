"""Components of the unrolled processor, at three granularities, and their data flow.

The processor runs the same weights at every step, so one unit has two readings:

- ``"tied"``: unit k of a site at *every* step (what a weight-level circuit of a
  shared-weight processor is made of): ``sum(site widths)`` components;
- ``"step"``: unit k of a site at step t: ``num_steps * sum(site widths)`` components;
- ``"edge"``: the whole message of graph edge i -> j at step t (site ``hook_msg``), for one
  batch of graphs: ``num_steps * E`` components.

A component is an *address* (site, unit, step, edge); which rows it covers is decided here
once: :meth:`Components.masks` turns a selection of components into boolean masks
``[K, S, R or 1, d or 1]`` per site (True: replace the activation), and
:meth:`Components.aggregate` sums an elementwise attribution ``[S, R, d]`` per site into
per-graph component scores ``[G, C]``.

:data:`DATA_FLOW` lists the edges between sites within the unrolled model, read off
:class:`~hooked_nar.model.processors.Processor.forward`; ``graph`` edges are the message
edges of the input graph (node i's state reaches node j through the message on i -> j).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from torch_geometric.utils import scatter

from patching.circuits.sites import UPDATE, Site

__all__ = ["DATA_FLOW", "GRANULARITIES", "Component", "Components", "unrolled_data_flow"]

GRANULARITIES = ("tied", "step", "edge")

#: ``(source site, target site, step offset, through)``: site ``source`` at step t - offset
#: feeds ``target`` at step t. Sites a processor lacks are dropped by
#: :func:`unrolled_data_flow`.
DATA_FLOW = (
    ("hook_node_out", "hook_msg", 1, "graph edge i -> j: sender i's and receiver j's state"),
    ("hook_msg", UPDATE, 0, "max over the messages into the node"),
    ("hook_msg", "hook_gate", 0, "max over the messages into the node"),
    ("hook_node_out", UPDATE, 1, "the node's own state"),
    ("hook_node_out", "hook_gate", 1, "the node's own state"),
    (UPDATE, "hook_node_out", 0, "gate * update"),
    ("hook_gate", "hook_node_out", 0, "gate * update + (1 - gate) * h"),
    ("hook_node_out", "hook_node_out", 1, "(1 - gate) * h"),
)


def unrolled_data_flow(sites: Sequence[Site], num_steps: int) -> list[tuple[str, str, str]]:
    """Edges ``("site@t", "site@t'", through)`` of the unrolled processor between the given
    sites; ``hidden@-1`` is the initial state (zeros) and the last hidden state feeds the
    output decoders (``"outputs"``)."""
    names = {s.name for s in sites}
    edges = []
    for t in range(num_steps):
        for src, dst, offset, through in DATA_FLOW:
            if src in names and dst in names and t - offset >= 0:
                edges.append((f"{src}@{t - offset}", f"{dst}@{t}", through))
    if "hook_node_out" in names and num_steps:
        edges.append((f"hook_node_out@{num_steps - 1}", "outputs", "decoders"))
    return edges


@dataclass(frozen=True)
class Component:
    """One component: ``site``; ``unit`` (None: every unit, an edge component); ``step``
    (None: every step, a tied component); ``edge`` (row of ``hook_msg`` in the scored
    batch) and ``ends`` ((i, j) within its graph) for edge components."""

    site: str
    unit: int | None = None
    step: int | None = None
    edge: int | None = None
    ends: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        """``msg[12]``, ``gate[3]@t2``, ``msg 2->5@t3``."""
        short = Site(self.site, "", 0).label
        at = "" if self.step is None else f"@t{self.step}"
        if self.edge is not None:
            i, j = self.ends if self.ends is not None else ("?", "?")
            return f"{short} {i}->{j}{at}"
        return f"{short}[{self.unit}]{at}"


class Components:
    """The components of one ``granularity`` over ``sites`` for ``num_steps`` steps.

    ``edge_graph`` ``[E]`` and ``edge_ends`` ``[E, 2]`` (local node indices) describe the
    ``hook_msg`` rows of the batch edge components belong to (granularity ``"edge"`` only).
    """

    def __init__(
        self,
        sites: Sequence[Site],
        granularity: str,
        num_steps: int,
        edge_graph: Tensor | None = None,
        edge_ends: Tensor | None = None,
    ) -> None:
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity={granularity!r} must be one of {GRANULARITIES}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        self.sites, self.granularity, self.num_steps = list(sites), granularity, num_steps
        self.items: list[Component] = []
        if granularity == "edge":
            if edge_graph is None or edge_ends is None:
                raise ValueError("edge components need edge_graph and edge_ends of the batch")
            if not any(s.name == "hook_msg" for s in self.sites):
                raise ValueError("edge components need the hook_msg site")
            self.edge_graph = edge_graph
            ends = [tuple(e) for e in edge_ends.tolist()]
            for t in range(num_steps):
                self.items += [Component("hook_msg", None, t, e, ends[e]) for e in range(len(ends))]
            return
        for site in self.sites:
            for t in [None] if granularity == "tied" else range(num_steps):
                self.items += [Component(site.name, k, t) for k in range(site.width)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Component:
        return self.items[i]

    def site_slices(self) -> dict[str, slice]:
        """Where each site's components lie in the flat order (unit components only)."""
        out, start = {}, 0
        for site in self.sites:
            if self.granularity == "edge":
                if site.name == "hook_msg":
                    out[site.name] = slice(0, len(self))
                continue
            n = site.width * (1 if self.granularity == "tied" else self.num_steps)
            out[site.name] = slice(start, start + n)
            start += n
        return out

    def aggregate(
        self,
        attribution: dict[str, Float[Tensor, "S R d"]],
        row_graph: dict[str, Tensor],
        num_graphs: int,
    ) -> Float[Tensor, "G C"]:
        """Per-graph component scores ``[G, C]``: ``attribution[site]`` ``[S, R, d]`` summed
        over the rows of each graph (and, for tied components, over steps; for edge
        components, over units)."""
        G = num_graphs
        parts = []
        for name, sl in self.site_slices().items():
            a = attribution[name].double()[: self.num_steps]  # [S, R, d]
            if self.granularity == "edge":
                per_edge = a.sum(-1)  # [S, E]
                out = torch.zeros(G, self.num_steps, per_edge.shape[1], dtype=torch.float64)
                out[self.edge_graph, :, torch.arange(per_edge.shape[1])] = per_edge.T
                parts.append(out.reshape(G, -1))
                continue
            per_graph = scatter(a, row_graph[name], 1, dim_size=G, reduce="sum")  # [S, G, d]
            if self.granularity == "tied":
                parts.append(per_graph.sum(0))
            else:
                parts.append(per_graph.permute(1, 0, 2).reshape(G, -1))
            assert parts[-1].shape[1] == sl.stop - sl.start
        return torch.cat(parts, dim=1)

    def masks(self, selected: Bool[Tensor, "K C"]) -> dict[str, Bool[Tensor, "K S r u"]]:
        """Boolean masks per site of the components ``selected`` in each of K rows:
        ``[K, S, 1, d]`` for unit components, ``[K, S, E, 1]`` for edge components."""
        selected = torch.as_tensor(selected)
        if selected.dtype != torch.bool:
            raise ValueError(f"selected must be a bool tensor, got {selected.dtype}")
        return self.expand(selected)

    def expand(self, values: Tensor) -> dict[str, Tensor]:
        """Per-component ``values`` ``[K, C]`` (any dtype) laid out per site as in
        :meth:`masks`."""
        if values.dim() != 2 or values.shape[1] != len(self):
            raise ValueError(f"selected must be [K, {len(self)}], got {tuple(values.shape)}")
        K, S = values.shape[0], self.num_steps
        out = {}
        for name, sl in self.site_slices().items():
            part = values[:, sl]
            if self.granularity == "edge":
                out[name] = part.reshape(K, S, -1)[..., None]
            elif self.granularity == "tied":
                out[name] = part[:, None, None, :].expand(K, S, 1, part.shape[1])
            else:
                out[name] = part.reshape(K, S, 1, -1)
        return out
