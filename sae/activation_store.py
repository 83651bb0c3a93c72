"""``ActivationStore``: valid (graph, node, step) activations of a ``HookedNAR``, with labels.

Rows are collected batch by batch in dataset order (within a batch: by step, then node, as
``NARCache.flatten``); padded steps never enter. Every row carries its dataset graph index,
node index within the graph, processor step, and the concept labels of
:func:`hooked_nar.concept_labels.concept_labels` (``concepts``: the state the step computes,
``concepts_read``: the state it reads).

The store lives in memory, or on disk as safetensors shards plus ``manifest.json`` (when
``path`` is given, or when the rows would exceed ``memory_budget`` bytes). Every file is
written atomically; the manifest is written last, so a directory with a manifest is complete.

>>> store = ActivationStore.from_model(model, dataset)            # hook_node_out, all steps
>>> next(store.batches(1024))                                      # [1024, d_model], shuffled
>>> rows, index, labels = store.for_analysis()                     # [R, d], RowIndex, {c: [R]}
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.hook_points import HookPoint

from hooked_nar.atomic import (
    move_directory_into_place,
    temporary_directory_for,
    write_bytes_atomic,
    write_text_atomic,
)
from hooked_nar.model.cache import RowIndex

if TYPE_CHECKING:
    from torch_geometric.data import Data

    from hooked_nar.data import CLRSDataset
    from hooked_nar.model import HookedNAR

__all__ = ["ActivationStore"]

MANIFEST = "manifest.json"
FORMAT = "hooked_nar.activation_store"
VERSION = 1


def _as_hooks(hooks: str | Sequence[str]) -> list[str]:
    out = [hooks] if isinstance(hooks, str) else list(hooks)
    if not out or not all(isinstance(h, str) and h for h in out):
        raise ValueError(f"hooks must be a hook name or a non-empty list of names, got {hooks!r}")
    bad = [h for h in out if h.startswith("steps.")]
    if bad:
        raise ValueError(
            f"hooks={bad}: give per-step names ('hook_node_out'); select steps with steps="
        )
    if len(set(out)) != len(out):
        raise ValueError(f"hooks={out} has duplicates")
    return out


def _chunk_tensors(acts: dict[str, Tensor], index: RowIndex) -> dict[str, Tensor]:
    out = {f"acts/{h}": a for h, a in acts.items()}
    out.update({"index/graph": index.graph, "index/node": index.node, "index/step": index.step})
    out.update({f"concepts/{c}": v for c, v in index.concepts.items()})
    out.update({f"concepts_read/{c}": v for c, v in index.concepts_read.items()})
    return out


def _split_tensors(t: dict[str, Tensor]) -> tuple[dict[str, Tensor], RowIndex]:
    acts = {k[5:]: v for k, v in t.items() if k.startswith("acts/")}
    index = RowIndex(
        t["index/graph"],
        t["index/node"],
        t["index/step"],
        {k[9:]: v for k, v in t.items() if k.startswith("concepts/")},
        {k[14:]: v for k, v in t.items() if k.startswith("concepts_read/")},
    )
    return acts, index


def _cat_index(parts: list[RowIndex]) -> RowIndex:
    first = parts[0]
    return RowIndex(
        torch.cat([p.graph for p in parts]),
        torch.cat([p.node for p in parts]),
        torch.cat([p.step for p in parts]),
        {c: torch.cat([p.concepts[c] for p in parts]) for c in first.concepts},
        {c: torch.cat([p.concepts_read[c] for p in parts]) for c in first.concepts_read},
    )


def _take_index(index: RowIndex, sel: Tensor) -> RowIndex:
    return RowIndex(
        index.graph[sel],
        index.node[sel],
        index.step[sel],
        {c: v[sel] for c, v in index.concepts.items()},
        {c: v[sel] for c, v in index.concepts_read.items()},
    )


def _bytes_per_row(chunk: dict[str, Tensor]) -> int:
    return sum(
        v[0].numel() * v.element_size() if v.ndim > 1 else v.element_size() for v in chunk.values()
    )


class ActivationStore:
    """Activations of one or several per-step node hooks over valid rows only.

    ``hooks``: hook names per step (``"hook_node_out"``, ``"hook_node_in"``, ...);
    ``d_in[hook]``: width of each; ``metadata``: model, algorithm, hooks, steps, dataset.
    Build with :meth:`from_model`, reopen a saved one with :meth:`load`.
    """

    def __init__(
        self,
        acts: dict[str, Tensor] | None,
        index: RowIndex | None,
        metadata: dict,
        path: str | os.PathLike | None = None,
        manifest: dict | None = None,
    ) -> None:
        self.metadata = dict(metadata)
        self.hooks: list[str] = list(self.metadata["hooks"])
        self._acts, self._index = acts, index
        self.path = None if path is None else Path(path)
        self._manifest = manifest
        if acts is not None:
            self.d_in = {h: int(a.shape[1]) for h, a in acts.items()}
            self.num_rows = int(next(iter(acts.values())).shape[0])
        else:
            self.d_in = {h: int(d) for h, d in manifest["d_in"].items()}
            self.num_rows = int(manifest["num_rows"])

    # ------------------------------------------------------------------ building
    @classmethod
    @torch.no_grad()
    def from_model(
        cls,
        model: HookedNAR,
        dataset: CLRSDataset | Sequence[Data],
        hooks: str | Sequence[str] = "hook_node_out",
        steps: Sequence[int] | None = None,
        batch_size: int = 32,
        path: str | os.PathLike | None = None,
        memory_budget: int = 2**30,
        shard_rows: int = 2**16,
        model_name: str | None = None,
        progress: bool | None = None,
    ) -> ActivationStore:
        """Run ``model`` over ``dataset`` (CLRSDataset or list of Data) and keep valid rows.

        ``steps``: processor steps to keep (``None``: all). ``path``: stream shards of
        ``shard_rows`` rows there; without it the store stays in memory unless it grows past
        ``memory_budget`` bytes, then it spills to a fresh temporary directory.
        ``model_name`` is recorded in the metadata (default: the checkpoint's algorithm).
        """
        from hooked_nar.data import CLRSLoader

        hooks = _as_hooks(hooks)
        valid = {n for n, m in model.steps[0].named_modules() if isinstance(m, HookPoint)}
        unknown = [h for h in hooks if h not in valid]
        if unknown:
            raise ValueError(
                f"hooks={unknown} are not per-step hook points; valid: {sorted(valid)}"
            )
        if steps is not None:
            steps = sorted({int(t) for t in steps})
            if not steps or steps[0] < 0:
                raise ValueError(f"steps must be non-negative step indices, got {steps}")
        if batch_size < 1 or shard_rows < 1 or memory_budget < 0:
            raise ValueError("batch_size and shard_rows must be positive, memory_budget >= 0")
        if len(dataset) == 0:
            raise ValueError("dataset is empty")
        metadata = {
            "model_name": model_name or model.cfg.algorithm,
            "model_class_name": "HookedNAR",
            "model_config": model.cfg.to_dict(),
            "algorithm": model.cfg.algorithm,
            "hooks": hooks,
            "steps": steps,
            "dataset": dict(getattr(dataset, "params", {"num_graphs": len(dataset)})),
        }
        writer = _ShardWriter(Path(path), shard_rows) if path is not None else None
        chunks: list[dict[str, Tensor]] = []
        held = 0
        was_training = model.training
        model.eval()
        show = sys.stderr.isatty() if progress is None else progress
        offset = 0
        hook_set = set(hooks)
        try:
            loader = CLRSLoader(dataset, batch_size=batch_size, shuffle=False)
            device = next(model.parameters()).device
            for batch in tqdm(loader, desc="collect activations", disable=not show, leave=False):
                _, cache = model.run_with_cache(
                    batch.to(device),
                    names_filter=lambda n: (
                        n.startswith("steps.") and n.split(".", 2)[2] in hook_set
                    ),
                )
                acts, index = _flatten(cache, hooks)  # on the CPU, where the store lives
                index.graph = index.graph + offset
                offset += batch.num_graphs
                if steps is not None:
                    keep = torch.isin(index.step, torch.tensor(steps))
                    acts = {h: a[keep] for h, a in acts.items()}
                    index = _take_index(index, keep)
                if len(index) == 0:
                    continue
                chunk = _chunk_tensors(acts, index)
                if writer is None:
                    chunks.append(chunk)
                    held += index.graph.shape[0] * _bytes_per_row(chunk)
                    if held > memory_budget:  # spill everything so far to disk
                        writer = _ShardWriter(
                            Path(tempfile.mkdtemp(prefix="hooked_nar_acts_")), shard_rows
                        )
                        for c in chunks:
                            writer.add(c)
                        chunks = []
                else:
                    writer.add(chunk)
        except BaseException:
            if writer is not None:
                shutil.rmtree(writer.tmp, ignore_errors=True)
            raise
        finally:
            model.train(was_training)
        if writer is not None:
            manifest = writer.finish(metadata)
            return cls(None, None, metadata, writer.path, manifest)
        if not chunks:
            raise ValueError("no valid rows: every graph has length 1 or steps selects none")
        merged = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
        acts, index = _split_tensors(merged)
        return cls(acts, index, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActivationStore:
        """Open a store saved with ``path=`` or :meth:`save` (data stays on disk)."""
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"path={str(path)!r} holds no readable {MANIFEST} ({e})") from e
        if manifest.get("format") != FORMAT:
            raise ValueError(f"path={str(path)!r} is not an activation store")
        return cls(None, None, manifest["metadata"], path, manifest)

    def save(self, path: str | os.PathLike, shard_rows: int = 2**16) -> ActivationStore:
        """Write this store to ``path`` as shards + manifest; returns the on-disk store."""
        writer = _ShardWriter(Path(path), shard_rows)
        for acts, index in self._chunks():
            writer.add(_chunk_tensors(acts, index))
        manifest = writer.finish(self.metadata)
        return ActivationStore(None, None, self.metadata, writer.path, manifest)

    # ------------------------------------------------------------------ access
    @property
    def in_memory(self) -> bool:
        """True when the rows are held in memory, False when they are safetensors shards on disk."""
        return self._acts is not None

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        where = "memory" if self.in_memory else str(self.path)
        name = self.metadata["model_name"]
        return f"ActivationStore({name!r}, hooks={self.hooks}, rows={self.num_rows}, in {where})"

    def _hook(self, hook: str | None) -> str:
        if hook is None:
            if len(self.hooks) > 1:
                raise ValueError(f"this store holds hooks {self.hooks}; pass hook=")
            return self.hooks[0]
        if hook not in self.hooks:
            raise ValueError(f"hook={hook!r} is not in this store (hooks: {self.hooks})")
        return hook

    def _chunks(self) -> Iterator[tuple[dict[str, Tensor], RowIndex]]:
        if self.in_memory:
            yield self._acts, self._index
            return
        from safetensors.torch import load_file

        for shard in self._manifest["shards"]:
            yield _split_tensors(load_file(self.path / shard["file"]))

    def _load_all(self) -> None:
        parts = list(self._chunks())
        self._cached = (
            {h: torch.cat([p[0][h] for p in parts]) for h in self.hooks},
            _cat_index([p[1] for p in parts]),
        )

    def _all(self) -> tuple[dict[str, Tensor], RowIndex]:
        if self.in_memory:
            return self._acts, self._index
        if getattr(self, "_cached", None) is None:
            self._load_all()
        return self._cached

    def rows(self, hook: str | None = None) -> Tensor:
        """All activations of ``hook`` ``[R, d_in]`` (loaded from disk when stored there)."""
        return self._all()[0][self._hook(hook)]

    @property
    def index(self) -> RowIndex:
        """Dataset graph, node, step and concept labels of every row (``RowIndex``)."""
        return self._all()[1]

    def labels(self, state: str = "computed") -> dict[str, Tensor]:
        """Concept labels ``{concept: [R]}`` at the state each step computes (or ``"read"``)."""
        if state not in ("computed", "read"):
            raise ValueError(f"state must be 'computed' or 'read', got {state!r}")
        return self.index.concepts if state == "computed" else self.index.concepts_read

    def for_analysis(
        self, hook: str | None = None, state: str = "computed"
    ) -> tuple[Tensor, RowIndex, dict[str, Tensor]]:
        """``(rows [R, d_in], index, labels {concept: [R]})`` for statistics and probes."""
        return self.rows(hook), self.index, self.labels(state)

    def mean(self, hook: str | None = None, per_step: bool = True) -> Tensor | dict[int, Tensor]:
        """Mean activation over valid rows: ``{step: [d_in]}`` per step, else ``[d_in]``."""
        rows, step = self.rows(hook), self.index.step
        if not per_step:
            return rows.mean(0)
        return {int(t): rows[step == t].mean(0) for t in step.unique()}

    def batches(
        self, batch_size: int, hook: str | None = None, seed: int = 0, epochs: int | None = None
    ) -> Iterator[Tensor]:
        """Shuffled ``[batch_size, d_in]`` float32 batches, endlessly (or for ``epochs``).

        Every epoch visits each row once in a fresh order; a batch may straddle two epochs.
        On disk, shards are visited in random order and shuffled within pairs of shards.
        This is the data provider ``SAETrainer`` consumes (it calls ``next`` per step).
        """
        hook = self._hook(hook)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        gen = torch.Generator().manual_seed(seed)
        carry = torch.zeros(0, self.d_in[hook])
        epoch = 0
        while epochs is None or epoch < epochs:
            for block in self._shuffled_blocks(hook, gen):
                block = torch.cat([carry, block])
                n = block.shape[0] // batch_size * batch_size
                yield from block[:n].split(batch_size)
                carry = block[n:]
            epoch += 1
        if carry.shape[0]:
            yield carry

    def _shuffled_blocks(self, hook: str, gen: torch.Generator) -> Iterator[Tensor]:
        if self.in_memory:
            rows = self._acts[hook]
            yield rows[torch.randperm(rows.shape[0], generator=gen)]
            return
        from safetensors import safe_open

        shards = self._manifest["shards"]
        order = torch.randperm(len(shards), generator=gen).tolist()
        for i in range(0, len(order), 2):
            parts = []
            for j in order[i : i + 2]:
                with safe_open(self.path / shards[j]["file"], framework="pt") as f:
                    parts.append(f.get_tensor(f"acts/{hook}"))
            block = torch.cat(parts)
            yield block[torch.randperm(block.shape[0], generator=gen)]


def _flatten(cache, hooks: list[str]) -> tuple[dict[str, Tensor], RowIndex]:
    """Valid rows of every hook of one cache, in ``NARCache.flatten`` order."""
    rows, index = cache.flatten(hooks[0])
    acts = {hooks[0]: rows.float().cpu()}
    for h in hooks[1:]:
        st = cache.stack(h)
        if st.values.shape[1] != cache.batch.num_nodes:
            raise ValueError(f"hook {h!r} is not node-level ({st.values.shape[1]} rows per step)")
        s, n = st.mask.nonzero(as_tuple=True)
        acts[h] = st.values[s, n].float().cpu()
    index = RowIndex(
        index.graph.cpu(),
        index.node.cpu(),
        index.step.cpu(),
        {c: v.cpu() for c, v in index.concepts.items()},
        {c: v.cpu() for c, v in index.concepts_read.items()},
    )
    return acts, index


class _ShardWriter:
    """Collects chunks into shards of ``shard_rows`` rows in a temporary sibling directory
    and moves it to ``path`` when finished (a previous store at ``path`` is replaced)."""

    def __init__(self, path: Path, shard_rows: int) -> None:
        self.path, self.shard_rows = path, shard_rows
        self.tmp = temporary_directory_for(path)
        self.pending: list[dict[str, Tensor]] = []
        self.pending_rows = 0
        self.shards: list[dict] = []
        self.dtypes: dict[str, str] = {}
        self.d_in: dict[str, int] = {}

    def add(self, chunk: dict[str, Tensor]) -> None:
        self.pending.append(chunk)
        self.pending_rows += chunk["index/graph"].shape[0]
        while self.pending_rows >= self.shard_rows:
            self._flush(self.shard_rows)

    def _flush(self, rows: int) -> None:
        merged = {k: torch.cat([c[k] for c in self.pending]) for k in self.pending[0]}
        head = {k: v[:rows] for k, v in merged.items()}
        rest = {k: v[rows:] for k, v in merged.items()}
        name = f"shard_{len(self.shards):05d}.safetensors"
        write_bytes_atomic(self.tmp / name, save({k: v.contiguous() for k, v in head.items()}))
        self.shards.append({"file": name, "num_rows": int(head["index/graph"].shape[0])})
        self.dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in head.items()}
        self.d_in = {k[5:]: int(v.shape[1]) for k, v in head.items() if k.startswith("acts/")}
        self.pending_rows -= self.shards[-1]["num_rows"]
        self.pending = [rest] if self.pending_rows else []

    def finish(self, metadata: dict) -> dict:
        try:
            if self.pending_rows:
                self._flush(self.pending_rows)
            if not self.shards:
                raise ValueError("no valid rows: every graph has length 1 or steps selects none")
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "metadata": metadata,
                "d_in": self.d_in,
                "num_rows": sum(s["num_rows"] for s in self.shards),
                "shards": self.shards,
                "tensors": self.dtypes,
            }
            write_text_atomic(self.tmp / MANIFEST, json.dumps(manifest, indent=1))
            move_directory_into_place(self.tmp, self.path)
            return manifest
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
