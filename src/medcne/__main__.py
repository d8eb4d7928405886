"""`python -m medcne`: the command line (see :mod:`medcne.cli`)."""

from .cli import main

raise SystemExit(main())
