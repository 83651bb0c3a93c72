"""``python -m hooked_nar`` runs the ``hooked-nar`` command line (see hooked_nar.cli)."""

from hooked_nar.cli import main

raise SystemExit(main())
