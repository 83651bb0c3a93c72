"""``HookedNAR``: an encode-process-decode Neural Algorithmic Reasoner with a hook point at
every activation of every processor step, built on TransformerLens's ``HookedRootModule``."""

from __future__ import annotations

import difflib
import random
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from hooked_nar.data.loader import as_batch
from hooked_nar.model import typed_fields
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
    row_graph,
)
from hooked_nar.model.hook_layout import StepHooks
from hooked_nar.model.processors import processor_class
from hooked_nar.model.steps import hint_step_mask, num_processor_steps

__all__ = ["HookedNAR", "NARLogits", "hint_step_mask", "num_processor_steps"]


@dataclass
class NARLogits:
    """Logits of every output ``{name: [X(, C)]}`` and hint ``{name: [X, S(, C)]}`` field.

    Hint column t holds the prediction of processor step t, i.e. of hint step t + 1.
    Pointer logits are over ``pointer_index`` [2, P] (candidate i, node j).
    """

    outputs: dict[str, Tensor]
    hints: dict[str, Tensor]
    pointer_index: Tensor
    num_steps: int
    loss: Tensor | None = None  # the loss of a processor that scores its own choices (discrete)


class HookedNAR(HookedRootModule):
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
        self._sae_splices: dict[str, SAESplice] = {}  # full hook name -> splice (add_sae)
        self._hook_widths: dict[str, int] = {}  # per-step hook -> last dim (add_sae checks)
        self._sae_every_step: dict[str, tuple] = {}  # hook -> (sae, use_error_term), steps=None
        self.setup()

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
                f"{len(self.steps)} and hooks are attached; call model.ensure_steps({num_steps}) "
                "before adding hooks (run_with_hooks / run_with_cache do this for you)"
            )
        hint_fields = self.hint_fields
        first_new = len(self.steps)
        self.steps.extend(
            StepHooks(self.cfg, hint_fields) for _ in range(num_steps - len(self.steps))
        )
        for hook, (sae, use_error_term) in self._sae_every_step.items():  # add_sae(steps=None)
            for t in range(first_new, num_steps):
                self._splice_sae(sae, t, hook, use_error_term)
        self.setup()

    def _check_hook_name(self, name) -> None:
        if isinstance(name, str) and name not in self.hook_dict:
            close = difflib.get_close_matches(name, list(self.hook_dict), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(f"hook name {name!r} does not exist in this HookedNAR{hint}")

    def add_hook(
        self, name, hook, dir="fwd", is_permanent=False, level=None, prepend=False
    ) -> None:
        """TransformerLens's ``add_hook``, after building the processor steps a hook name refers to;
        an unknown name raises ValueError with close matches."""
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

    def run_with_hooks(self, *model_args, **kwargs):
        """TransformerLens's ``run_with_hooks`` on a PyG batch: the :class:`NARLogits` of the
        forward with ``fwd_hooks`` / ``bwd_hooks`` ``[(name or filter, fn)]`` attached, removed
        afterwards (also after an exception)."""
        model_args = self._prepare(model_args)
        return super().run_with_hooks(*model_args, **kwargs)

    def run_with_cache(self, *model_args, names_filter=None, **kwargs):
        """Run and cache activations: ``(logits, NARCache)``; the cache knows the batch."""
        model_args = self._prepare(model_args)
        if isinstance(names_filter, (str, list)):
            for name in [names_filter] if isinstance(names_filter, str) else names_filter:
                self._check_hook_name(name)
        out, cache = super().run_with_cache(*model_args, names_filter=names_filter, **kwargs)
        return out, NARCache(cache, self, model_args[0])

    # ------------------------------------------------------------------- SAEs
    def add_sae(
        self, sae, hook: str | None = None, steps=None, use_error_term: bool = False
    ) -> None:
        """Splice a SAELens ``sae`` at ``steps.{t}.{hook}`` for every step t in ``steps``.

        ``hook`` defaults to the SAE's ``cfg.metadata.hook_name``, else ``"hook_node_out"``;
        ``steps=None`` means every step, including steps that ``ensure_steps`` builds later.
        Each step gets its own :class:`SAESplice` with its own hook points
        (``steps.3.hook_node_out.hook_sae_acts_post`` [N, d_sae], ...) around the one shared
        SAE; ``steps.3.hook_node_out`` is then what flows on: the reconstruction, or exactly
        the clean activation plus any edit of the SAE's hooks with ``use_error_term=True``.
        An SAE already at one of those places is replaced. Bad arguments raise ``ValueError``
        (``TypeError`` for a non-SAE) before anything is spliced.
        """
        hook, targets, every = self._sae_targets(sae, hook, steps)
        for t in targets:
            self._splice_sae(sae, t, hook, use_error_term)
        if every:
            self._sae_every_step[hook] = (sae, use_error_term)
        self.setup()

    def reset_saes(self, hook: str | None = None) -> None:
        """Remove the SAEs spliced at ``hook`` (``"hook_node_out"``: every step;
        ``"steps.3.hook_node_out"``: one; ``None``: all) and put the original hook points back."""
        for name, splice in list(self._sae_splices.items()):
            if hook is None or hook in (name, name.split(".", 2)[2]):
                parent, _, attr = name.rpartition(".")
                setattr(self.get_submodule(parent), attr, splice.original)
                del self._sae_splices[name]
        for key in [k for k in self._sae_every_step if hook is None or k == hook]:
            del self._sae_every_step[key]
        self.setup()

    @contextmanager
    def saes(self, saes=(), hook: str | None = None, steps=None, use_error_term: bool = False):
        """``with model.saes(sae, steps=[2, 3]): ...`` splices ``saes`` (one SAE or a list,
        see :meth:`add_sae`) for the block and restores the previous splices afterwards, also
        when the block (or a bad argument) raises."""
        before, every = dict(self._sae_splices), dict(self._sae_every_step)
        try:
            for sae in saes if isinstance(saes, (list, tuple)) else [saes]:
                self.add_sae(sae, hook, steps, use_error_term)
            yield self
        finally:
            self.reset_saes()
            for name, splice in before.items():
                parent, _, attr = name.rpartition(".")
                setattr(self.get_submodule(parent), attr, splice)
            self._sae_splices.update(before)
            self._sae_every_step.update(every)
            for h, (sae, err) in every.items():  # steps built inside the block
                for t in range(len(self.steps)):
                    if f"steps.{t}.{h}" not in self._sae_splices:
                        self._splice_sae(sae, t, h, err)
            self.setup()

    def _sae_targets(self, sae, hook, steps) -> tuple[str, list[int], bool]:
        if not all(hasattr(sae, a) for a in ("encode", "decode", "hook_dict", "cfg")):
            raise TypeError(f"sae must be a SAELens SAE, got {type(sae).__name__}")
        if hook is None:
            hook = getattr(sae.cfg.metadata, "hook_name", None) or "hook_node_out"
        if not isinstance(hook, str):
            raise ValueError(f"hook must be a str such as 'hook_node_out', got {hook!r}")
        if hook.startswith("steps."):  # a full name: steps.{t}.<hook>
            _, t, rest = (hook.split(".", 2) + ["", ""])[:3]
            if steps is not None or not t.isdigit():
                raise ValueError(
                    f"hook={hook!r}: give a per-step name ('hook_node_out') and steps="
                )
            hook, steps = rest, [int(t)]
        valid = [
            n
            for n, m in self.steps[0].named_modules()
            if isinstance(m, HookPoint) and ".hook_sae_" not in n
        ]
        if hook not in valid:
            close = difflib.get_close_matches(hook, valid, n=3)
            raise ValueError(
                f"hook={hook!r} is not a hook point of a processor step"
                + (f"; did you mean {close}?" if close else f"; valid: {valid}")
            )
        trained_on = getattr(getattr(sae.cfg, "metadata", None), "algorithm", None)
        if trained_on is not None and trained_on != self.cfg.algorithm:
            raise ValueError(
                f"the SAE was trained on a {trained_on} model (cfg.metadata.algorithm), "
                f"this model runs {self.cfg.algorithm}"
            )
        d_in, width = getattr(sae.cfg, "d_in", None), self._hook_width(hook)
        if d_in != width:
            raise ValueError(f"the SAE has d_in={d_in} but {hook} carries vectors of {width}")
        every = steps is None
        if every:
            targets = list(range(len(self.steps)))
        else:
            targets = [steps] if isinstance(steps, int) else list(steps)
        for t in targets:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < len(self.steps):
                raise ValueError(
                    f"steps contains {t!r}; this model has hook points for steps 0.."
                    f"{len(self.steps) - 1} (model.ensure_steps(n) builds more)"
                )
        return hook, sorted(set(targets)), every

    def _hook_width(self, hook: str) -> int:
        """The last dimension of what the per-step hook point ``hook`` carries, measured once
        on a small graph of the model's algorithm (widths differ between hooks and
        processors: ``hook_node_out`` d_model, ``attn.hook_pattern`` heads, ...)."""
        if hook not in self._hook_widths:
            from hooked_nar.data import CLRSDataset

            class _Seen(Exception):  # stops the forward at the first sight of the hook
                pass

            def record(x: Tensor, hook) -> None:
                raise _Seen(x.shape[-1])

            graph = CLRSDataset(self.cfg.algorithm, 1, sizes=(3,), seed=0, progress=False)[0]
            try:
                with torch.no_grad():
                    self.run_with_hooks(
                        graph.to(next(self.parameters()).device),
                        fwd_hooks=[(f"steps.0.{hook}", record)],
                    )
            except _Seen as seen:
                self._hook_widths[hook] = int(seen.args[0])
        return self._hook_widths[hook]

    def _splice_sae(self, sae, step: int, hook: str, use_error_term: bool) -> None:
        parent_name, _, attr = hook.rpartition(".")
        parent = self.steps[step].get_submodule(parent_name) if parent_name else self.steps[step]
        current = getattr(parent, attr)
        original = current.original if isinstance(current, SAESplice) else current
        splice = SAESplice(sae, original, use_error_term)
        setattr(parent, attr, splice)
        self._sae_splices[f"steps.{step}.{hook}"] = splice

    # ---------------------------------------------------------------- forward
    def pointer_index(self, batch) -> Tensor:
        """Candidate (i, j) pairs of pointer heads: in-edges of j, or all nodes of j's graph."""
        return complete_pairs(batch.ptr) if self.dense_pointers else batch.edge_index

    def forward(self, batch, return_type: str = "logits"):
        """``return_type``: ``"logits"`` (NARLogits), ``"loss"`` (scalar) or ``"both"``."""
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
        missing = [f.name for f in self.input_fields if f.name not in batch]
        if missing or "length" not in batch:
            raise ValueError(
                f"batch lacks fields {missing + (['length'] if 'length' not in batch else [])}"
            )

    def _true_hints(self, batch, step: int, pidx: Tensor) -> dict[str, Tensor]:
        T = batch[self.hint_fields[0].name].shape[1]
        step = min(step, T - 1)
        return {
            f.name: typed_fields.true_values(f, batch[f.name][:, step], batch, pidx)
            for f in self.encoder.hint_fields
        }

    def _next_fed_hints(self, batch, step: int, step_logits, pidx) -> dict[str, Tensor]:
        if (
            self.training
            and self.cfg.teacher_forcing > 0
            and random.random() < self.cfg.teacher_forcing
        ):
            return self._true_hints(batch, step, pidx)
        if self.cfg.hint_feedback == "hard":
            return {
                f.name: typed_fields.hard_values(f, step_logits[f.name], batch, pidx)
                for f in self.encoder.hint_fields
            }
        return {
            f.name: typed_fields.soft_values(f, step_logits[f.name], batch, pidx).detach()
            for f in self.encoder.hint_fields
        }

    # ------------------------------------------------------------ checkpoints
    def save_pretrained(self, path, metadata: dict | None = None):
        """Save to ``path`` (``config.json`` + ``model.safetensors``), atomically."""
        return save_model(
            self, path, metadata if metadata is not None else getattr(self, "metadata", None)
        )

    @classmethod
    def from_pretrained(cls, name_or_path, **expected_config) -> HookedNAR:
        """Load a shipped checkpoint (``"bfs"``, ``"dijkstra"``, ...) or a saved directory.

        Keyword arguments (e.g. ``algorithm="bfs"``) must match the stored config.
        """
        cfg, state, metadata, path = read_checkpoint(name_or_path, expected_config)
        model = cls(cfg)
        load_checked_state(model, state, path)
        model.metadata = metadata
        return model.eval()

    # ------------------------------------------------------------ objectives
    def loss(self, logits: NARLogits, batch) -> Tensor:
        """Sum over fields of the mean per-field loss; hints only on valid steps (or the
        processor's own loss, when it computed one)."""
        if logits.loss is not None:
            return logits.loss
        total = logits.pointer_index.new_zeros((), dtype=torch.float32)
        for f in self.output_fields:
            valid = torch.ones(self._rows(f, batch), dtype=torch.bool, device=total.device)
            total = total + typed_fields.field_loss(
                f, logits.outputs[f.name], batch[f.name], valid, batch, logits.pointer_index
            )
        if self.hint_fields:
            target_steps = hint_step_mask(batch, logits.num_steps)  # [B, S]
            for f in self.hint_fields:
                target = batch[f.name][:, 1 : logits.num_steps + 1]
                S = target.shape[1]
                if S == 0:
                    continue
                valid = target_steps[row_graph(f, batch)][:, :S]
                total = total + typed_fields.field_loss(
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
    def predict(self, batch, hints: bool = False) -> dict[str, Tensor]:
        """Decoded outputs (and, with ``hints=True``, decoded hints ``[X, S]`` under their names).

        Pointers are the parent's index within its graph ``[N]``, comparable to CLRS's ``pi``.
        """
        batch = as_batch(batch)
        logits = self(batch)
        self._check_finite(logits, batch)
        out = {
            f.name: typed_fields.decode(f, logits.outputs[f.name], batch, logits.pointer_index)
            for f in self.output_fields
        }
        if hints:
            for f in self.hint_fields:
                out[f.name] = typed_fields.decode(
                    f, logits.hints[f.name], batch, logits.pointer_index
                )
        return out


class SAESplice(HookPoint):
    """A SAELens SAE run in place of one step's hook point (see ``HookedNAR.add_sae``).

    It is itself the hook point of that name and sees what flows on. The SAE is held outside
    the module tree (its weights are shared by every step and stay out of ``state_dict``);
    this module owns fresh copies of the SAE's hook points, swapped into the SAE while it
    runs, so ``steps.{t}.<hook>.hook_sae_acts_post`` belongs to step t alone. With
    ``use_error_term`` the output is ``x + (recons - clean_recons) + (error' - error)``:
    bit-identical to ``x`` until a hook edits the SAE's activations or error (SAELens's
    formula ``recons + error``, arranged to be exact); gradients reach ``x`` through the SAE.
    """

    def __init__(self, sae, original: HookPoint, use_error_term: bool = False) -> None:
        super().__init__()
        self.__dict__["sae"] = sae
        self.__dict__["original"] = original
        self.use_error_term = use_error_term
        for name, hp in sae.hook_dict.items():
            if "." not in name:
                setattr(self, name, type(hp)(hp.d_sae) if hasattr(hp, "d_sae") else type(hp)())

    def _run(self, x: Tensor, hooks: dict[str, nn.Module]) -> Tensor:
        sae = self.sae
        saved = {name: sae._modules[name] for name in hooks}
        try:
            for name, module in hooks.items():
                setattr(sae, name, module)
            return sae.decode(sae.encode(x))
        finally:
            for name, module in saved.items():
                setattr(sae, name, module)

    def forward(self, x: Tensor) -> Tensor:
        """Replace ``x`` [N, d_in] by the SAE's reconstruction (plus its error with
        ``use_error_term``), through the SAE's own hook points."""
        d_in = self.sae.cfg.d_in
        if x.shape[-1] != d_in:
            raise ValueError(
                f"the SAE at {self.name} has d_in={d_in}, activations have {x.shape[-1]}"
            )
        own = {name: self._modules[name] for name in self.sae.hook_dict if name in self._modules}
        out = self._run(x, own)
        if self.use_error_term:
            with torch.no_grad():
                clean = self._run(x, {name: nn.Identity() for name in own})
                error = (x - clean).to(out.dtype)
            out = x.detach().to(out.dtype) + (out - clean) + (self.hook_sae_error(error) - error)
        return self.hook_sae_output(out)
