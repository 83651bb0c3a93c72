"""SAEs spliced into a HookedNAR's processor steps, as SAELens's ``HookedSAETransformer``
splices them into a transformer: :class:`SAESplicing` gives ``HookedNAR`` ``add_sae``,
``reset_saes``, the ``saes()`` context, ``run_with_saes``, ``run_with_cache_with_saes`` and
``run_with_hooks_with_saes``; :class:`SAESplice` is the hook point that runs one SAE at one
step.

>>> sae = sae_lens.SAE.load_from_disk(path)          # or sae.load_sae / sae.train_sae
>>> with model.saes(sae, use_error_term=True):        # every step; outputs unchanged
...     logits, cache = model.run_with_cache(batch)   # + steps.{t}.hook_node_out.hook_sae_*
>>> logits = model.run_with_saes(batch, saes=[sae])   # spliced for this call only

Why splicing lives in the model and the rest in ``sae``: splicing is a property of the hooked
model (TransformerLens hook points swapped in place, as SAELens does in the model class), and
the core never imports ``sae``. This module only duck-types the SAE (``encode``, ``decode``,
``hook_dict``, ``cfg``) and names ``sae_lens`` in type hints; the ``sae`` package trains,
saves, loads, evaluates and analyses the SAEs spliced here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

if TYPE_CHECKING:
    from sae_lens import SAE

__all__ = ["SAESplice", "SAESplicing"]


class SAESplicing:
    """``add_sae`` / ``reset_saes`` / ``saes()`` for a HookedNAR (a mixin: it uses the model's
    ``steps``, ``cfg``, ``setup`` and ``run_with_hooks``)."""

    def _init_sae_splicing(self) -> None:
        self._sae_splices: dict[str, SAESplice] = {}  # full hook name -> splice (add_sae)
        self._hook_widths: dict[str, int] = {}  # per-step hook -> last dim (add_sae checks)
        self._sae_every_step: dict[str, tuple] = {}  # hook -> (sae, use_error_term), steps=None

    def _splice_new_steps(self, first_new: int, num_steps: int) -> None:
        """Give steps ``first_new .. num_steps - 1``, just built, the SAEs of
        ``add_sae(steps=None)``."""
        for hook, (sae, use_error_term) in self._sae_every_step.items():
            for t in range(first_new, num_steps):
                self._splice_sae(sae, t, hook, use_error_term)

    def add_sae(
        self,
        sae: SAE,
        hook: str | None = None,
        steps: int | Sequence[int] | None = None,
        use_error_term: bool = False,
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
    def saes(
        self,
        saes: SAE | Sequence[SAE] = (),
        hook: str | None = None,
        steps: int | Sequence[int] | None = None,
        use_error_term: bool = False,
    ) -> Iterator[SAESplicing]:
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

    def run_with_saes(
        self,
        *model_args,
        saes: SAE | Sequence[SAE] = (),
        hook: str | None = None,
        steps: int | Sequence[int] | None = None,
        use_error_term: bool = False,
        **model_kwargs,
    ):
        """``model(*model_args, **model_kwargs)`` with ``saes`` spliced for this call only
        (:meth:`saes`), as SAELens's ``HookedSAETransformer.run_with_saes``."""
        with self.saes(saes, hook, steps, use_error_term):
            return self(*model_args, **model_kwargs)

    def run_with_cache_with_saes(
        self,
        *model_args,
        saes: SAE | Sequence[SAE] = (),
        hook: str | None = None,
        steps: int | Sequence[int] | None = None,
        use_error_term: bool = False,
        **kwargs,
    ):
        """``run_with_cache`` with ``saes`` spliced for this call only; the cache holds the
        SAEs' hook points (``steps.{t}.hook_node_out.hook_sae_acts_post``, ...)."""
        with self.saes(saes, hook, steps, use_error_term):
            return self.run_with_cache(*model_args, **kwargs)

    def run_with_hooks_with_saes(
        self,
        *model_args,
        saes: SAE | Sequence[SAE] = (),
        hook: str | None = None,
        steps: int | Sequence[int] | None = None,
        use_error_term: bool = False,
        **kwargs,
    ):
        """``run_with_hooks`` with ``saes`` spliced for this call only (``fwd_hooks`` may name
        the SAEs' hook points)."""
        with self.saes(saes, hook, steps, use_error_term):
            return self.run_with_hooks(*model_args, **kwargs)

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
