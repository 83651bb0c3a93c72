"""``HookedNAR``: an encode-process-decode Neural Algorithmic Reasoner with a hook point at
every activation of every processor step, built on TransformerLens's ``HookedRootModule``."""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter
from transformer_lens import HookedRootModule

from hooked_nar.data.loader import as_batch
from hooked_nar.model.cache import NARCache
from hooked_nar.model.checkpoint import load_checked_state, read_checkpoint, save_model
from hooked_nar.model.config import NARConfig
from hooked_nar.model.decoders import Decoder
from hooked_nar.model.encoders import Encoder
from hooked_nar.model.fields import (
    DENSE_POINTER_ALGORITHMS,
    Field,
    algorithm_fields,
    complete_pairs,
    decode,
    field_loss,
    hard_values,
    row_graph,
    soft_values,
    true_values,
)
from hooked_nar.model.hook_layout import StepHooks
from hooked_nar.model.processors import processor_class
from hooked_nar.model.sae_splicing import SAESplice, SAESplicing
from hooked_nar.model.steps import hint_step_mask, num_processor_steps

__all__ = ["HookedNAR", "NARLogits", "SAESplice", "hint_step_mask", "num_processor_steps"]


@dataclass
class NARLogits:
    """Logits of every output ``{name: [X(, C)]}`` and hint ``{name: [X, S(, C)]}`` field.

    Hint column t holds the prediction of processor step t, i.e. of hint step t + 1;
    ``num_processor_steps`` = S columns (the batch's hint steps T_max minus one).
    Pointer logits are over ``pointer_index`` [2, P] (candidate i, node j).
    """

    outputs: dict[str, Float[Tensor, " rows *classes"]]
    hints: dict[str, Float[Tensor, " rows steps *classes"]]
    pointer_index: Int[Tensor, "2 candidates"]
    num_processor_steps: int
    loss: Tensor | None = None  # the loss of a processor that scores its own choices (discrete)


class HookedNAR(SAESplicing, HookedRootModule):
    """Encoder -> processor (shared weights, applied once per algorithm step) -> decoders.

    ``model(batch)`` returns :class:`NARLogits`; ``model(batch, return_type="loss")`` the
    training loss; ``model.predict(batch)`` decoded outputs (pointers as within-graph node
    indices, directly comparable to CLRS). All TransformerLens hook machinery works
    (``run_with_hooks``, ``run_with_cache``, ``hooks()``, ``add_hook``, backward hooks).
    """

    def __init__(self, cfg: NARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.input_fields = algorithm_fields(cfg.algorithm, "input")
        self.hint_fields = (
            [] if cfg.hint_mode == "none" else algorithm_fields(cfg.algorithm, "hint")
        )
        self.output_fields = algorithm_fields(cfg.algorithm, "output")
        self.dense_pointers = cfg.algorithm in DENSE_POINTER_ALGORITHMS
        encoded = [] if cfg.hint_mode != "encoded" else self._encodable(self.hint_fields)
        self.processor = processor_class(cfg.processor)(cfg)
        # a processor that runs the trajectory itself reads the batch, not embeddings or heads
        self.owns_trajectory = getattr(self.processor, "owns_trajectory", False)
        own = self.owns_trajectory
        self.encoder = Encoder(cfg.d_model, [] if own else self.input_fields, [] if own else encoded)
        if cfg.xavier_scalars:
            for f in encoded:
                if f.type == "scalar" and f.name in self.encoder.hints:
                    layer = self.encoder.hints[f.name]
                    nn.init.trunc_normal_(layer.weight, std=cfg.d_model**-0.5)
        self.readout = nn.Linear(cfg.d_model, cfg.d_model) if cfg.global_readout else None
        self.decoder = Decoder(
            cfg.d_model, self.hint_fields, self.output_fields, self.dense_pointers, not own
        )
        self.steps = nn.ModuleList(
            StepHooks(cfg, self.hint_fields) for _ in range(cfg.initial_steps)
        )
        self._hint_gradients = False
        self._init_sae_splicing()
        self.setup()

    @property
    def device(self) -> torch.device:
        """Where the weights live; batches go there with ``collate(graphs, device=...)``."""
        return next(self.parameters()).device

    @contextmanager
    def hint_feedback_gradients(self) -> Iterator[None]:
        """While the block runs, gradients reach a step's hidden state through the hints it
        decodes and the next step re-encodes (``hint_mode="encoded"``), a path training cuts
        with ``detach``: soft feedback is left attached, hard feedback passes the soft
        values' gradient straight through. Forward values are unchanged; for attribution
        (EAP, EAP-IG), whose gradients must follow every path an ablation does."""
        was, self._hint_gradients = self._hint_gradients, True
        try:
            yield
        finally:
            self._hint_gradients = was

    def _encodable(self, fields: list[Field]) -> list[Field]:
        # Pointers over a complete candidate set have no edge of edge_index to live on.
        return [f for f in fields if not (f.type == "pointer" and self.dense_pointers)]

    # ------------------------------------------------------------------ hooks
    def ensure_steps(self, num_steps: int) -> None:
        """Build hook points for at least ``num_steps`` processor steps."""
        if num_steps <= len(self.steps):
            return
        if any(hp.fwd_hooks or hp.bwd_hooks for hp in self.hook_dict.values()):
            raise RuntimeError(
                f"this batch needs {num_steps} processor steps but hook points exist for "
                f"{len(self.steps)} and hooks are attached (hooks added by name filters would "
                f"miss the new steps); call model.ensure_steps({num_steps}) before adding "
                "permanent hooks or hooks with add_hook, or remove them first "
                "(model.reset_hooks(including_permanent=True))"
            )
        hint_fields = self.hint_fields
        first_new = len(self.steps)
        self.steps.extend(
            StepHooks(self.cfg, hint_fields) for _ in range(num_steps - len(self.steps))
        )
        self._splice_new_steps(first_new, num_steps)
        self.setup()

    def _check_hook_name(self, name) -> None:
        if isinstance(name, str) and name not in self.hook_dict:
            close = difflib.get_close_matches(name, list(self.hook_dict), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(f"hook name {name!r} does not exist in this HookedNAR{hint}")

    def add_hook(
        self, name, hook, dir="fwd", is_permanent=False, level=None, prepend=False
    ) -> None:
        """TransformerLens's ``add_hook``, after building the processor steps a hook name refers to
        (``"steps.30.hook_node_out"`` builds steps up to 30); an unknown name raises ValueError
        with close matches."""
        if isinstance(name, str):
            step = re.match(r"steps\.(\d+)\.", name)
            if step is not None:
                self.ensure_steps(int(step.group(1)) + 1)
        self._check_hook_name(name)
        super().add_hook(
            name, hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend
        )

    def _enable_hook(self, name, hook, dir):  # the path taken by hooks() / run_with_hooks
        self._check_hook_name(name)
        super()._enable_hook(name, hook, dir)

    def _prepare(self, args: tuple) -> tuple:
        """``args`` with a single graph (a PyG ``Data``) made a one-graph ``Batch``, after
        building hook points for the processor steps it needs."""
        if args and hasattr(args[0], "length"):
            args = (as_batch(args[0]), *args[1:])
            self.ensure_steps(int(num_processor_steps(args[0].length).max()))
        return args

    def run_with_hooks(self, *model_args, **kwargs) -> NARLogits | Tensor:
        """TransformerLens's ``run_with_hooks`` on a PyG batch: the :class:`NARLogits` of the
        forward with ``fwd_hooks`` / ``bwd_hooks`` ``[(name or filter, fn)]`` attached, removed
        afterwards (also after an exception)."""
        model_args = self._prepare(model_args)
        return super().run_with_hooks(*model_args, **kwargs)

    def run_with_cache(
        self, *model_args, names_filter=None, **kwargs
    ) -> tuple[NARLogits | Tensor, NARCache]:
        """Run and cache activations: ``(logits, NARCache)``; the cache knows the batch."""
        if kwargs.get("incl_bwd") and kwargs.get("return_type", "logits") != "loss":
            raise ValueError(
                "run_with_cache(incl_bwd=True) runs backward from the output: pass "
                "return_type='loss' (the logits are a NARLogits of several fields)"
            )
        model_args = self._prepare(model_args)
        if isinstance(names_filter, (str, list)):
            for name in [names_filter] if isinstance(names_filter, str) else names_filter:
                self._check_hook_name(name)
        out, cache = super().run_with_cache(*model_args, names_filter=names_filter, **kwargs)
        return out, NARCache(cache, self, model_args[0])

    # ---------------------------------------------------------------- forward
    def pointer_index(self, batch: Batch) -> Int[Tensor, "2 candidates"]:
        """Candidate (i, j) pairs of pointer heads: in-edges of j, or all nodes of j's graph."""
        return complete_pairs(batch.ptr) if self.dense_pointers else batch.edge_index

    def forward(
        self, batch: Batch | Data, return_type: Literal["logits", "loss", "both"] = "logits"
    ) -> NARLogits | Float[Tensor, ""] | tuple[NARLogits, Float[Tensor, ""]]:
        """``return_type``: ``"logits"`` (NARLogits), ``"loss"`` (scalar) or ``"both"``.
        ``batch``: a PyG ``Batch`` of graphs of this model's algorithm, or one ``Data``."""
        if return_type not in ("logits", "loss", "both"):
            raise ValueError(f"return_type={return_type!r} must be 'logits', 'loss' or 'both'")
        self._check_batch(batch)
        batch = as_batch(batch)
        steps_per_graph = num_processor_steps(batch.length.view(-1))
        num_steps = int(steps_per_graph.max())
        self.ensure_steps(num_steps)
        pidx = self.pointer_index(batch)
        if self.owns_trajectory:
            hints, outputs, loss = self.processor.run(batch, self.steps, self.decoder, num_steps)
            logits = NARLogits(outputs, hints, pidx, num_steps, loss)
            return {"logits": logits, "loss": loss, "both": (logits, loss)}[return_type]
        N, B, E = batch.num_nodes, batch.num_graphs, batch.edge_index.shape[1]
        ei, node_batch = batch.edge_index, batch.batch
        node_emb, edge_emb, graph_emb = self.encoder.encode_inputs(batch, N, E, B)

        h = node_emb.new_zeros(N, self.cfg.d_model)
        last_h = h
        last_step = steps_per_graph[node_batch] - 1  # [N]
        hint_logits: dict[str, list[Tensor]] = {f.name: [] for f in self.hint_fields}
        fed_hints = self._true_hints(batch, 0, pidx) if self.cfg.hint_mode == "encoded" else {}
        for t in range(num_steps):
            hooks = self.steps[t]
            node_fts, edge_fts, graph_fts = node_emb, edge_emb, graph_emb
            if fed_hints:
                node_fts, edge_fts, graph_fts = self.encoder.encode_hints(
                    fed_hints, node_emb, edge_emb, graph_emb
                )
            if not self.cfg.hidden_recurrence:
                h = torch.zeros_like(h)  # the fed hints are the whole state
            h = hooks.hook_node_in(h)
            if self.readout is not None:
                pooled = scatter(h, node_batch, 0, dim_size=B, reduce="max")
                graph_fts = hooks.hook_graph_in(graph_fts + self.readout(pooled))
            for layer in range(self.cfg.num_layers):
                h = self.processor(
                    node_fts, edge_fts, graph_fts, h, node_batch, ei, hooks.layer(layer)
                )
                if hooks.layers is not None:
                    h = hooks.layers[layer].hook_node_out(h)
            h = hooks.hook_node_out(h)
            last_h = torch.where((last_step == t)[:, None], h, last_h)
            if self.hint_fields:
                z = torch.cat([h, node_emb], -1)
                step_logits = self.decoder(
                    self.hint_fields, z, edge_emb, node_batch, ei, pidx, B, hooks.decoder
                )
                for name, lg in step_logits.items():
                    hint_logits[name].append(lg)
                if self.cfg.hint_mode == "encoded":
                    fed_hints = self._next_fed_hints(batch, t + 1, step_logits, pidx)

        z = torch.cat([last_h, node_emb], -1)
        outputs = self.decoder(
            self.output_fields, z, edge_emb, node_batch, ei, pidx, B, self.decoder
        )
        hints = {k: torch.stack(v, dim=1) for k, v in hint_logits.items()}
        logits = NARLogits(outputs, hints, pidx, num_steps)
        if return_type == "logits":
            return logits
        loss = self.loss(logits, batch)
        return loss if return_type == "loss" else (logits, loss)

    def _check_batch(self, batch) -> None:
        algorithm = getattr(batch, "algorithm", None)
        algorithms = set(algorithm) if isinstance(algorithm, (list, tuple)) else {algorithm}
        if algorithms != {self.cfg.algorithm}:
            raise ValueError(
                f"batch holds {sorted(map(str, algorithms))} but this model runs {self.cfg.algorithm!r}"
            )
        if batch.edge_index.device != self.device:
            raise ValueError(
                f"batch is on {batch.edge_index.device} but the model on {self.device}: "
                "move it with batch.to(model.device) or collate(graphs, device=model.device)"
            )
        missing = [f.name for f in self.input_fields if f.name not in batch]
        if missing or "length" not in batch:
            raise ValueError(
                f"batch lacks fields {missing + (['length'] if 'length' not in batch else [])}"
            )

    def _true_hints(self, batch, step: int, pidx: Tensor) -> dict[str, Tensor]:
        T = batch[self.hint_fields[0].name].shape[1]
        step = min(step, T - 1)
        return {
            f.name: true_values(f, batch[f.name][:, step], batch, pidx)
            for f in self.encoder.hint_fields
        }

    def _next_fed_hints(self, batch, step: int, step_logits, pidx) -> dict[str, Tensor]:
        if (
            self.training
            and self.cfg.teacher_forcing > 0
            and random.random() < self.cfg.teacher_forcing
        ):
            return self._true_hints(batch, step, pidx)
        fed = {}
        for f in self.encoder.hint_fields:
            logits = step_logits[f.name]
            if self.cfg.hint_feedback == "hard":
                fed[f.name] = hard_values(f, logits, batch, pidx)
                if self._hint_gradients:  # straight through: the value stays hard
                    soft = soft_values(f, logits, batch, pidx)
                    fed[f.name] = fed[f.name] + (soft - soft.detach())
            else:
                soft = soft_values(f, logits, batch, pidx)
                fed[f.name] = soft if self._hint_gradients else soft.detach()
        return fed

    # ------------------------------------------------------------ checkpoints
    def save_pretrained(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Save to ``path`` (``config.json`` + ``model.safetensors``), atomically."""
        return save_model(
            self, path, metadata if metadata is not None else getattr(self, "metadata", None)
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **expected_config) -> HookedNAR:
        """Load a shipped checkpoint (``"bfs"``, ``"dijkstra"``, ...) or a saved directory.

        Keyword arguments (e.g. ``algorithm="bfs"``) must match the stored config.
        """
        cfg, state, metadata, path = read_checkpoint(name_or_path, expected_config)
        model = cls(cfg)
        load_checked_state(model, state, path)
        model.metadata = metadata
        return model.eval()

    # ------------------------------------------------------------ objectives
    def loss(self, logits: NARLogits, batch: Batch) -> Float[Tensor, ""]:
        """Sum over fields of the mean per-field loss; hints only on valid steps (or the
        processor's own loss, when it computed one)."""
        if logits.loss is not None:
            return logits.loss
        total = logits.pointer_index.new_zeros((), dtype=torch.float32)
        for f in self.output_fields:
            valid = torch.ones(self._rows(f, batch), dtype=torch.bool, device=total.device)
            total = total + field_loss(
                f, logits.outputs[f.name], batch[f.name], valid, batch, logits.pointer_index
            )
        if self.hint_fields:
            target_steps = hint_step_mask(batch, logits.num_processor_steps)  # [B, S]
            for f in self.hint_fields:
                target = batch[f.name][:, 1 : logits.num_processor_steps + 1]
                S = target.shape[1]
                if S == 0:
                    continue
                valid = target_steps[row_graph(f, batch)][:, :S]
                total = total + field_loss(
                    f, logits.hints[f.name][:, :S], target, valid, batch, logits.pointer_index
                )
        return total

    @staticmethod
    def _rows(f: Field, batch) -> int:
        return {
            "node": batch.num_nodes,
            "edge": batch.edge_index.shape[1],
            "graph": batch.num_graphs,
        }[f.location]

    def _check_finite(self, logits: NARLogits, batch) -> None:
        """ValueError when an output's logits are not finite (inputs beyond what the model
        can represent), instead of decoding NaN into pointer -1 or class 0."""
        bad = [k for k, v in logits.outputs.items() if not torch.isfinite(v).all()]
        if bad:
            sizes = {
                f.name: float(batch[f.name].abs().max())
                for f in self.input_fields
                if f.name in batch and batch[f.name].is_floating_point()
            }
            raise ValueError(
                f"the logits of {bad} are not finite: inputs too large for the model "
                f"(largest |value| per input field: {sizes}); rescale the weights (the shipped "
                "checkpoints were trained on weights in [0, 1])"
            )

    @torch.no_grad()
    def predict(self, batch: Batch | Data, hints: bool = False) -> dict[str, Tensor]:
        """Decoded outputs (and, with ``hints=True``, decoded hints ``[X, S]`` under their names).

        Pointers are the parent's index within its graph ``[N]``, comparable to CLRS's ``pi``.
        """
        batch = as_batch(batch)
        logits = self(batch)
        self._check_finite(logits, batch)
        out = {
            f.name: decode(f, logits.outputs[f.name], batch, logits.pointer_index)
            for f in self.output_fields
        }
        if hints:
            for f in self.hint_fields:
                out[f.name] = decode(
                    f, logits.hints[f.name], batch, logits.pointer_index
                )
        return out
