"""The application layer: the ``hooked-nar`` command line and the ``study`` pipeline.

It sits above the three libraries (the ``hooked_nar`` core, ``sae`` and ``patching``) and is
imported by none of them (``tests/test_layering.py`` walks every import to check it).

- :mod:`hooked_nar.app.cli`: ``main``, the parser and the dispatch to the commands;
- :mod:`hooked_nar.app.commands`: one module per subcommand (see its docstring);
- :mod:`hooked_nar.app.common`: what the commands share (``UsageError``, ``PROG``, checks);
- :mod:`hooked_nar.app.study`: the stages of ``hooked-nar study``;
- :mod:`hooked_nar.app.sae_study`: one SAE study (collect, train, evaluate, analyse, figures).
"""
