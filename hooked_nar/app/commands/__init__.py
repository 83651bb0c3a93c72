"""The subcommands of ``hooked-nar``: one module per command.

A command module defines three names, and nothing heavy at import time:

- ``HELP: str``: one line for the command list of ``hooked-nar --help``;
- ``add_arguments(parser: argparse.ArgumentParser) -> None``: its options; the parser's
  description is the module's ``DESCRIPTION`` if it defines one, else ``HELP``;
- ``run(args: argparse.Namespace) -> int``: do the work and return the exit code. ``args``
  also carries ``args.command`` (the command name) and ``args.argv`` (the full argument list,
  command included, for the report's command line).

Torch, PyG, TransformerLens and SAELens are imported inside ``run`` (``hooked-nar COMMAND
--help`` must not load them: ``tests/test_lazy_imports.py``). ``run`` raises
:class:`hooked_nar.app.common.UsageError` for a bad argument, before any long work; the
command line prints it as one line and exits with code 2.

To add a command: write ``hooked_nar/app/commands/<name>.py`` and add the module, under its
command name, to :data:`hooked_nar.app.cli.COMMANDS` (an explicit import, no module names
stored as strings).
"""
