"""`python -m medcne`: the command line (see :mod:`medcne.cli`; entered through :mod:`medcne.launch`)."""

import os
import sys

from .launch import main

status = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0:
    # A process of a several-process run other than rank 0 holds no output. It has left the process
    # group; it ends here without the interpreter's finalisation, where gloo's threads can still abort
    # the process (SIGABRT, "terminate called without an active exception") after a run that succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
raise SystemExit(status)
