"""`medcne` command line: thin wrappers that parse, call the API and write files.

Each sub-command lives in its own module with ``add_parser(subparsers)`` (which
sets ``func`` on its parser) so the commands stay independent. Errors a user
can cause (:class:`~medcne.errors.MedcneError`) print one line and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import MedcneError

# Order is the order of `medcne --help`.
COMMANDS = (
    "info", "fetch", "augment_preview", "fit", "embed", "evaluate", "baseline", "compare", "plot", "view", "qc", "propagate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medcne", description="2D maps of medical image datasets with t-SimCNE."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)  # argparse itself prints usage and exits 2
    try:
        return int(args.func(args) or 0)
    except (MedcneError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"medcne {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medcne {args.command}: interrupted", file=sys.stderr)
        return 130
