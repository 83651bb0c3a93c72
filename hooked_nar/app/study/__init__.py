"""The ``study`` pipeline behind ``hooked-nar study``: one CLRS algorithm end to end.

:func:`run_study` runs a list of stages (:data:`STAGES`). Each stage is a function
``stage(ctx: StudyContext) -> Section``: it reads what earlier stages left on the context,
and returns a report section (markdown), a ``results.json`` entry and a few summary lines.
After every stage ``report.md`` and ``results.json`` are rewritten atomically, so an
interrupted run leaves complete files describing the finished stages. To add a stage,
write such a function in a module of its own and append it to :data:`STAGES` in
:mod:`~hooked_nar.app.study.run`.

The modules: :mod:`~hooked_nar.app.study.context` (what the stages share, presets, markdown
helpers), one per stage (:mod:`~hooked_nar.app.study.data`, ``model``, ``sae``, ``causal``,
``browser``), and :mod:`~hooked_nar.app.study.run` (the loop and the report). Stages import
only ``context``; ``run`` imports the stages; nothing imports ``run`` but this package.

The settings come from :mod:`hooked_nar.app.commands.study`, which validates them first: an
``argparse.Namespace`` with ``algorithm``, ``output``, ``generator``, ``num_graphs``,
``num_nodes``, ``seed``, ``batch_size``, ``quick``, ``quiet``, ``no_progress``, ``argv``,
``checkpoint`` (as given) and ``checkpoint_path`` / ``checkpoint_source`` (resolved, or None).
"""

from hooked_nar.app.study.context import (
    CAUSAL_DEFAULTS,
    CAUSAL_QUICK,
    DEFAULTS,
    QUICK,
    SAE_DEFAULTS,
    SAE_QUICK,
    Section,
    StudyContext,
    longest_trajectory,
    sae_eval_indices,
)
from hooked_nar.app.study.run import STAGES, clear_previous_run, print_summary, run_study

__all__ = [
    "CAUSAL_DEFAULTS",
    "CAUSAL_QUICK",
    "DEFAULTS",
    "QUICK",
    "SAE_DEFAULTS",
    "SAE_QUICK",
    "STAGES",
    "Section",
    "StudyContext",
    "clear_previous_run",
    "longest_trajectory",
    "print_summary",
    "run_study",
    "sae_eval_indices",
]
