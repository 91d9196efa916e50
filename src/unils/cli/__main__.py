"""``python -m unils.cli`` runs the command line (as ``python -m unils`` does)."""

from . import main

raise SystemExit(main())
