"""Running the stages of ``hooked-nar study`` and writing ``report.md`` and ``results.json``
after each one (see :mod:`hooked_nar.app.study`)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from hooked_nar.app.common import PROG
from hooked_nar.app.study.browser import stage_browser
from hooked_nar.app.study.causal import stage_causal
from hooked_nar.app.study.circuit import CIRCUIT_DIR, stage_circuit
from hooked_nar.app.study.context import Section, StudyContext, checkpoint_label, markdown_table
from hooked_nar.app.study.data import stage_data
from hooked_nar.app.study.model import stage_model
from hooked_nar.app.study.sae import stage_sae
from hooked_nar.atomic import write_json_atomic, write_text_atomic

#: The stages of ``study``, in order. Later stages may use what earlier ones set on ctx.
STAGES: list[Callable[[StudyContext], Section]] = [
    stage_data,
    stage_model,
    stage_sae,
    stage_causal,
]


# ---------------------------------------------------------------------------------- study


def _status_line(ctx: StudyContext, status: str) -> str:
    """What the report says about the run: complete, stopped (and why), or unfinished."""
    done = ", ".join(s.key for s in ctx.sections) or "none"
    if status == "complete":
        return ""
    if status.startswith("stopped"):
        return f"**Incomplete: {status}.** Stages finished: {done}."
    return (
        f"**Incomplete:** stages finished when this was written: {done}. The next stage was "
        "running then; if no `hooked-nar study` is writing this folder now, the run was killed."
    )


def _report(ctx: StudyContext, status: str) -> str:
    a = ctx.args
    cmd = " ".join(shlex.quote(x) for x in [PROG, *a.argv])
    note = _status_line(ctx, status)
    lines = [
        f"# hooked-nar study: {ctx.algorithm}",
        "",
        f"`{cmd}`",
        *(["", note] if note else []),
        "",
        markdown_table(
            ["setting", "value"],
            [
                ["algorithm", ctx.algorithm],
                ["generator", a.generator],
                ["graphs", a.num_graphs],
                ["nodes per graph", a.num_nodes],
                ["seed", a.seed],
                ["checkpoint", checkpoint_label(a)],
                ["quick", a.quick],
            ],
        ),
    ]
    for i, sec in enumerate(ctx.sections, 1):
        lines += ["", f"## {i}. {sec.title}", "", sec.markdown]
    return "\n".join(lines) + "\n"


def _write(ctx: StudyContext, status: str) -> None:
    """Rewrite results.json and report.md; ``status``: ``"complete"``, ``"running"`` or
    ``"stopped ..."`` (why)."""
    a = ctx.args
    results = {
        "algorithm": ctx.algorithm,
        "settings": {
            "generator": a.generator,
            "num_graphs": a.num_graphs,
            "num_nodes": a.num_nodes,
            "seed": a.seed,
            "quick": a.quick,
            "batch_size": a.batch_size,
            "sae_eval_graphs": getattr(a, "sae_eval_graphs", None),
            "checkpoint": None if a.checkpoint_path is None else str(a.checkpoint_path),
        },
        "complete": status == "complete",
        "status": status.split(" ", 1)[0],
        "stages": [s.key for s in ctx.sections],
        **ctx.results,
        "seconds": time.perf_counter() - ctx.started,
    }
    write_json_atomic(ctx.out / "results.json", results, indent=2)
    write_text_atomic(ctx.out / "report.md", _report(ctx, status))


#: What a study writes at the top of its folder, removed before a new run in the same folder
#: (so that no figure of an earlier run stays beside the new report).
_RUN_FILES = ("report.md", "results.json", "*.png")


def clear_previous_run(out: Path, keep: Path | None = None) -> list[Path]:
    """Remove what an earlier study left in ``out``: its report, results, PNGs, SAE,
    circuit and browser folders (only when ``out/results.json`` is a study's), and the temporary files
    of killed writers (:func:`hooked_nar.atomic.remove_stale_temporaries`). ``keep``: a path not to
    remove (the ``--sae`` being reused). Returns the paths removed."""
    import json

    from hooked_nar.app.browser.build import BROWSER_DIR
    from hooked_nar.atomic import remove_stale_temporaries

    removed = remove_stale_temporaries(out)
    try:
        previous = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return removed
    if not (isinstance(previous, dict) and "stages" in previous and "algorithm" in previous):
        return removed
    keep = None if keep is None else keep.resolve()
    candidates = [p for pattern in _RUN_FILES for p in sorted(out.glob(pattern))]
    candidates += [out / d for d in ("sae", CIRCUIT_DIR, BROWSER_DIR) if (out / d).is_dir()]
    for path in candidates:
        if keep is not None and (path.resolve() == keep or keep.is_relative_to(path.resolve())):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt while the stages run (main thread only), so that
    ``kill`` leaves a report that says the run was stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_study(args: argparse.Namespace) -> StudyContext:
    """Run every stage of :data:`STAGES` (then :func:`stage_circuit` with ``args.circuit``,
    :func:`stage_browser` with ``args.browser``)
    for validated ``args``; returns the context."""
    ctx = StudyContext(
        args=args,
        algorithm=args.algorithm,
        out=Path(args.output),
        progress=sys.stderr.isatty() and not args.no_progress and not args.quiet,
    )
    given_sae = getattr(args, "sae", None)
    clear_previous_run(ctx.out, keep=None if given_sae is None else Path(given_sae))
    stages = [
        *STAGES,
        *([stage_circuit] if getattr(args, "circuit", False) else []),
        *([stage_browser] if getattr(args, "browser", False) else []),
    ]
    with _sigterm_as_interrupt():
        for stage in stages:
            t0 = time.perf_counter()
            try:
                sec = stage(ctx)
            except BaseException as e:
                why = "interrupted" if isinstance(e, KeyboardInterrupt) else type(e).__name__
                _write(ctx, f"stopped during stage {_stage_name(stage)} ({why})")
                raise
            sec.results["seconds"] = time.perf_counter() - t0
            ctx.sections.append(sec)
            ctx.results[sec.key] = sec.results
            _write(ctx, "complete" if stage is stages[-1] else "running")
    return ctx


def _stage_name(stage: Callable) -> str:
    return stage.__name__.removeprefix("stage_")


def print_summary(ctx: StudyContext, file=None) -> None:
    """The summary table of every stage's key figures, to ``file`` (default stdout)."""
    file = file or sys.stdout
    seconds = time.perf_counter() - ctx.started
    rows = [row for sec in ctx.sections for row in sec.summary]
    width = max((len(k) for k, _ in rows), default=0)
    print(f"{PROG} study {ctx.algorithm}: {ctx.out / 'report.md'} ({seconds:.1f} s)", file=file)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=file)
