"""The ``hooked-nar`` command line (also ``python -m hooked_nar``).

    hooked-nar study --algorithm bfs                 # the whole study -> runs/bfs/report.md
    hooked-nar study --algorithm bfs --quick         # a few small graphs, under a minute
    hooked-nar train --algorithm bfs --out ckpt/bfs  # train a HookedNAR (hooked_nar.train)
    hooked-nar evaluate --checkpoint bfs             # CLRS metrics (hooked_nar.evaluate)
    hooked-nar collect --checkpoint bfs -o acts/bfs  # an ActivationStore on disk
    hooked-nar train-sae --algorithm bfs             # SAE + concept features
    hooked-nar patch --algorithm bfs --sae DIR       # causal tests of concept units
    hooked-nar browse runs/bfs                       # the offline HTML feature browser
    hooked-nar circuit --algorithm bellman_ford      # circuits: EAP / EAP-IG, faithfulness

This module builds the parser from the command modules (:mod:`hooked_nar.app.commands`,
whose docstring gives their interface) and dispatches to them; a
:class:`~hooked_nar.app.common.UsageError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from hooked_nar.app.commands import (
    browse,
    circuit,
    collect,
    evaluate,
    patch,
    study,
    train,
    train_sae,
)
from hooked_nar.app.common import PROG, UsageError

#: command name -> command module, in the order of ``hooked-nar --help``.
COMMANDS = {
    "study": study,
    "train": train,
    "evaluate": evaluate,
    "collect": collect,
    "train-sae": train_sae,
    "patch": patch,
    "browse": browse,
    "circuit": circuit,
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``hooked-nar study: error: ...``) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``hooked-nar`` parser, one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(
        prog=PROG,
        description="Mechanistic interpretability for neural algorithmic reasoners.",
        epilog="Run `hooked-nar COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in COMMANDS.items():
        p = sub.add_parser(
            name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP)
        )
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hooked-nar`` and ``python -m hooked_nar``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    args.argv = argv
    try:
        return args.run(args)
    except UsageError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
