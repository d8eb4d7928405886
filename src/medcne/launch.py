"""The ``medcne`` command's entry point (console script and ``python -m medcne``).

Loading the command line takes a fraction of a second (numpy and the readers),
and a Ctrl-C in that time would end in Python's traceback. Here it ends as at
any later moment: one line, exit status 130. Imports nothing at its top, and
the package's face (``medcne/__init__.py``) imports nothing heavy, so the
guard is in place before the first module of weight loads.
"""

import sys


def main() -> int:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        from .errors import INTERRUPTED

        print("medcne: interrupted", file=sys.stderr)
        return INTERRUPTED
    return run()
