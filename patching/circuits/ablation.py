"""Clean and reference activations of every site, and forward passes with some of them
replaced: the one intervention that scoring and faithfulness both use.

:class:`AblationRuns` holds a batch of clean graphs, the activations of every site at every
step on them, and the *reference* activations an ablated unit takes:

- ``"counterfactual"``: the activation on the paired counterfactual graph (same nodes and
  edges, e.g. another source or another weight; :mod:`patching.counterfactuals`);
- ``"mean"``: the mean over rows (nodes or edges) of the reference graphs at that step,
  the same for every row: what the unit does on average, with the graph-specific part gone;
- ``"zero"``: zeros.

:meth:`AblationRuns.run` evaluates K copies of the clean batch in one forward pass, copy k
with the activations where ``masks[site][k]`` is True replaced by the reference, and
returns each metric per copy and graph ``[K, G]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from hooked_nar.data.loader import batch_algorithm, collate
from hooked_nar.model.hooked_nar import num_processor_steps
from patching.circuits.sites import Site, processor_sites, site_hooks
from patching.metrics import Metric, as_metric

__all__ = ["ABLATIONS", "AblationRuns"]

ABLATIONS = ("counterfactual", "mean", "zero")


def _graph_list(x, name: str) -> list[Data]:
    if isinstance(x, Data) and not hasattr(x, "ptr"):
        return [x]
    if hasattr(x, "to_data_list"):
        return x.to_data_list()
    if isinstance(x, (list, tuple)) and x and all(isinstance(d, Data) for d in x):
        return list(x)
    raise TypeError(f"{name} must be a PyG Data, a Batch or a non-empty list of Data")


class AblationRuns:
    """Clean graphs, their activations and the reference activations of every site.

    ``clean``: graphs (list/Batch). ``ablation``: one of :data:`ABLATIONS`.
    ``corrupted``: the paired counterfactual graphs (needed for ``"counterfactual"``).
    ``mean_graphs``: graphs the ``"mean"`` is taken over (default ``clean``).
    ``metrics``: ``{name: Metric}`` evaluated by :meth:`run`; the first one is the
    continuous metric that scores are computed from. ``hint_gradients``: gradients through
    :meth:`run` follow the re-encoded hints (:meth:`HookedNAR.hint_feedback_gradients`),
    as the ablation's effects do; False only to measure what that changes.
    """

    def __init__(
        self,
        model,
        clean,
        metrics: dict[str, Metric],
        ablation: str = "counterfactual",
        corrupted=None,
        mean_graphs=None,
        sites: Sequence[Site] | None = None,
        hint_gradients: bool = True,
    ) -> None:
        if ablation not in ABLATIONS:
            raise ValueError(f"ablation={ablation!r} must be one of {ABLATIONS}")
        if not metrics:
            raise ValueError("metrics is empty")
        self.model, self.ablation, self.hint_gradients = model, ablation, hint_gradients
        self.metrics = {k: as_metric(m, k) for k, m in metrics.items()}
        self.clean = _graph_list(clean, "clean")
        algs = {batch_algorithm(d) for d in self.clean}
        if algs != {model.cfg.algorithm}:
            raise ValueError(
                f"clean runs {sorted(algs)} but the model runs {model.cfg.algorithm!r}"
            )
        self.sites = list(sites) if sites is not None else processor_sites(model)
        self.batch = collate(self.clean, device=model.device)
        self.steps = num_processor_steps(self.batch.length.view(-1)).cpu()  # [G]
        self.S = int(self.steps.max())
        self.clean_acts, self.clean_values = self._capture(self.batch)
        if ablation == "counterfactual":
            if corrupted is None:
                raise ValueError("ablation='counterfactual' needs the corrupted graphs")
            cor = _graph_list(corrupted, "corrupted")
            if len(cor) != len(self.clean):
                raise ValueError(f"corrupted has {len(cor)} graphs for {len(self.clean)} clean")
            cb = collate(cor, device=model.device)
            if not torch.equal(cb.edge_index, self.batch.edge_index):
                raise ValueError("clean and corrupted must have the same nodes and edges")
            if not torch.equal(num_processor_steps(cb.length.view(-1)).cpu(), self.steps):
                raise ValueError("clean and corrupted must run the same number of steps")
            self.ref_acts, self.reference_values = self._capture(cb)
        elif ablation == "mean":
            mb = (
                self.batch
                if mean_graphs is None
                else collate(_graph_list(mean_graphs, "mean"), device=model.device)
            )
            acts, _ = self._capture(mb) if mean_graphs is not None else (self.clean_acts, None)
            self.ref_acts = {}
            for site in self.sites:
                graph = self.row_graph(mb, site).cpu()
                steps = num_processor_steps(mb.length.view(-1)).cpu()
                means = []
                for t in range(self.S):
                    ok = steps[graph] > t
                    a = acts[site.name][min(t, len(acts[site.name]) - 1)]
                    m = a[ok].mean(0) if ok.any() else a.mean(0)
                    means.append(m.expand(self._rows(site), -1))
                self.ref_acts[site.name] = torch.stack(means)
            self.reference_values = None
        else:
            self.ref_acts = {s.name: torch.zeros_like(self.clean_acts[s.name]) for s in self.sites}
            self.reference_values = None

    # ---------------------------------------------------------------- layout
    @property
    def num_graphs(self) -> int:
        """Number of clean graphs."""
        return len(self.clean)

    def _rows(self, site: Site) -> int:
        return self.batch.edge_index.shape[1] if site.rows == "edge" else self.batch.num_nodes

    @staticmethod
    def row_graph(batch, site: Site) -> Tensor:
        """Graph of each row of ``site`` on ``batch`` ``[R]``."""
        return batch.batch[batch.edge_index[0]] if site.rows == "edge" else batch.batch

    def row_graphs(self) -> dict[str, Tensor]:
        """Graph of each row of every site on the clean batch."""
        return {s.name: self.row_graph(self.batch, s).cpu() for s in self.sites}

    def message_aggregate(self) -> Site | None:
        """The site ``hook_aggr`` ``[N, d]``, ready to stand in for ``hook_msg`` unit
        components, or None where it cannot.

        Message unit k is aggregated on its own (``aggr[:, k]`` is a scatter of
        ``msg[:, k]`` over the in-edges), so replacing unit k on every edge replaces
        aggregate unit k by the aggregate of the reference messages: the same intervention,
        on a site whose rows are nodes. Its reference is built that way (for ``"mean"`` it
        is *not* the mean aggregate); the reduction is the one that reproduces the clean
        aggregate from the clean messages (checked), else None."""
        name = "hook_aggr"
        if name in self.clean_acts:
            return self._aggregate_site
        msg = next((s for s in self.sites if s.name == "hook_msg"), None)
        if msg is None or not hasattr(self.model.steps[0], name):
            return None
        seen = [None] * self.S

        def keep(x: Tensor, t: int) -> Tensor:
            seen[t] = x.detach().clone().cpu()  # beside the captured activations
            return x

        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), site_hooks(self.model, {name: keep}, self.S):
                self.model(self.batch)
        finally:
            self.model.train(was)
        aggr = torch.stack(seen)  # [S, N, d]
        dst, N = self.batch.edge_index[1].cpu(), self.batch.num_nodes
        clean = self.clean_acts["hook_msg"]
        ref = self.ref_acts["hook_msg"].expand_as(clean)
        for reduce in dict.fromkeys((getattr(self.model.cfg, "aggregation", "max"), "sum")):
            if torch.allclose(scatter(clean, dst, 1, dim_size=N, reduce=reduce), aggr, atol=1e-5):
                self.clean_acts[name] = aggr
                self.ref_acts[name] = scatter(ref, dst, 1, dim_size=N, reduce=reduce)
                self._aggregate_site = Site(name, "node", msg.width)
                return self._aggregate_site
        return None

    def delta(self, site: str) -> Float[Tensor, "S R d"]:
        """Reference minus clean activation of ``site``."""
        return self.ref_acts[site] - self.clean_acts[site]

    # ---------------------------------------------------------------- running
    @torch.no_grad()
    def _capture(self, batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Activations ``{site: [S, R, d]}`` and metric values ``{name: [G]}`` of one run."""
        S = int(num_processor_steps(batch.length.view(-1)).max())
        acts: dict[str, list[Tensor]] = {s.name: [None] * S for s in self.sites}

        def keep(name):
            def fn(x: Tensor, t: int) -> Tensor:
                acts[name][t] = x.detach().clone().cpu()  # scores are computed on the CPU
                return x

            return fn

        was = self.model.training
        self.model.eval()
        try:
            with site_hooks(self.model, {s.name: keep(s.name) for s in self.sites}, S):
                logits = self.model(batch)
        finally:
            self.model.train(was)
        values = {k: m(logits, batch).detach().cpu() for k, m in self.metrics.items()}
        return {k: torch.stack(v) for k, v in acts.items()}, values

    def run(
        self,
        masks: dict[str, Bool[Tensor, "K S r u"]],
        grad: bool = False,
    ) -> dict[str, Tensor]:
        """Every metric ``[K, G]`` on K copies of the clean batch, copy k with the
        activations where ``masks[site][k]`` (``[S, R or 1, d or 1]``) is True replaced by
        the reference (a float mask ``a`` moves them ``a`` of the way there, for gradients
        with ``grad=True``). Sites missing from ``masks`` run unchanged."""
        K = next(iter(masks.values())).shape[0] if masks else 1
        big = collate(self.clean * K, device=self.model.device)
        fns = {}
        for name, mask in masks.items():
            if mask.shape[0] != K:
                raise ValueError(f"masks[{name!r}] has {mask.shape[0]} copies, expected {K}")
            fns[name] = self._replacer(name, mask, K)
        was = self.model.training
        self.model.eval()
        try:
            with (
                torch.set_grad_enabled(grad),
                self.model.hint_feedback_gradients() if self.hint_gradients else nullcontext(),
                site_hooks(self.model, fns, self.S),
            ):
                logits = self.model(big)
                return {
                    k: m(logits, big).cpu().view(K, self.num_graphs)
                    for k, m in self.metrics.items()
                }
        finally:
            self.model.train(was)

    def _replacer(self, name: str, mask: Tensor, K: int):
        ref = self.ref_acts[name]

        def fn(x: Tensor, t: int) -> Tensor:
            if t >= mask.shape[1] or not (mask.requires_grad or mask[:, t].any()):
                return x
            R, d = ref.shape[1], ref.shape[2]
            m = mask[:, t].expand(K, R, d).reshape(K * R, d).to(x.device)
            source = ref[t].repeat(K, 1).to(x)
            if m.dtype == torch.bool:
                return torch.where(m, source, x)
            return x + m.to(x) * (source - x)  # a fraction of the way to the reference

        return fn
