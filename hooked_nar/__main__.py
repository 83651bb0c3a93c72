"""``python -m hooked_nar`` runs the ``hooked-nar`` command line (see hooked_nar.app.cli)."""

from hooked_nar.app.cli import main

raise SystemExit(main())
