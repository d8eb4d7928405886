"""`medcne` command line: thin wrappers that parse, call the API and write files.

Each sub-command lives in its own module with ``add_parser(subparsers)`` (which
sets ``func`` on its parser) so the commands stay independent.

Every error ends in one line on stderr, ``medcne COMMAND: error: ...``, and exit
status 2: bad options (argparse's usage is not repeated), user errors
(:class:`~medcne.errors.MedcneError`) and the failures of the system around a
command (:mod:`.failures`: disk full, read-only or unreadable paths, damaged
files, memory). ``--debug`` shows the traceback instead. SIGTERM and SIGHUP (a
closed terminal) stop a command as Ctrl-C does (exit 130; 143 and 129); a closed
pipe (``medcne info ... | head``) ends it quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from .. import __version__
from ..errors import INTERRUPTED, MedcneError
from ..limits import check_args
from ..params import for_cli, on_cli, speak_as_cli
from ..train.progress import end_progress_bars
from .common import check_out_is_not_an_input
from .failures import describe

# Order is the order of `medcne --help`.
COMMANDS = (
    "info", "fetch", "augment_preview", "fit", "embed", "evaluate", "baseline", "compare", "plot", "view",
    "sweep", "qc", "propagate", "convert", "tile",
)
# What the shell reports for a process ended by SIGPIPE (128 + 13), as `yes | head` does.
BROKEN_PIPE_STATUS = 141


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``medcne fit: error: ...``) instead of the usage, exit 2.

    Options are taken only as spelt in full: a prefix (``--epoch``) is refused, not read as the one option
    it matches today, which a later option could change. An option a command does not know is named by
    that command (``medcne info: error: ...``), with its help.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:
            sub = self._subcommand(parsed)
            command = getattr(parsed, "command", None)
            if sub is not None and command in argv and argv.index(extras[0]) < argv.index(command):
                self.error(f"unrecognized arguments: {' '.join(extras)}; a command's options go after its "
                           f"name (`medcne {command} ... {extras[0]}`)")
            (sub or self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _subcommand(self, args) -> argparse.ArgumentParser | None:
        """The parser of the command named in ``args`` (None for a parser without commands)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(args, action.dest, None))
        return None

    def error(self, message: str):
        if "expected one argument" in message:
            message += "; a value that starts with '-' needs '=', e.g. --epochs=-1,1,1"
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="medcne", description="2D maps of medical image datasets with t-SimCNE.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"medcne {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, or SIGHUP (the terminal closed), raised where the program is so that it stops as on Ctrl-C
    (checkpoint hints, cleanup); ``status`` is the shell's for that signal (143, 129)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__()
        self.status = 128 + int(signum)
        self.word = "hung up" if signum == getattr(signal, "SIGHUP", None) else "terminated"


def _terminate(signum, frame):
    raise Terminated(signum)


# Signals that stop a command as Ctrl-C does (SIGHUP: not on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def main(argv: list[str] | None = None) -> int:
    """Run one command; the library speaks as the command line while it runs (options, not parameters),
    and as before it once it has returned (a Python session that called it is still a Python session)."""
    was = on_cli()
    speak_as_cli()
    try:
        return _main(argv)
    finally:
        speak_as_cli(was)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)  # imports every command's module
    except SystemExit as exc:  # argparse printed its one line (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:  # before the command is known (its handler below is not set yet)
        print("medcne: interrupted", file=sys.stderr)
        return INTERRUPTED
    _expand_home(args)
    in_main_thread = threading.current_thread() is threading.main_thread()
    # A signal the caller ignores stays ignored: `nohup medcne fit ...` must outlive its terminal.
    previous = {s: signal.signal(s, _terminate) for s in STOP_SIGNALS
                if in_main_thread and signal.getsignal(s) != signal.SIG_IGN}
    try:
        check_args(args)  # size-like options against the machine, before anything starts
        check_out_is_not_an_input(args)
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe fails here, not in Python's flush at exit
        return status
    except KeyboardInterrupt as exc:
        end_progress_bars()
        terminated = isinstance(exc, Terminated)
        try:
            print(f"medcne {args.command}: {exc.word if terminated else 'interrupted'}", file=sys.stderr)
        except OSError:
            pass  # the terminal is gone (SIGHUP): the cleanup is done, there is no one to tell
        return exc.status if terminated else INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_STATUS
    except Exception as exc:
        if args.debug:
            raise
        end_progress_bars()
        message, status = (str(exc) if getattr(exc, "names_are_keys", False) else for_cli(str(exc)), 2) \
            if isinstance(exc, MedcneError) else describe(exc, getattr(args, "out", None), args)
        print(f"medcne {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return status
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# The options (argparse dests) of every command that name files or folders.
PATH_OPTIONS = frozenset({
    "annotations", "config", "data", "data_dir", "data_positional", "label_csv", "labels", "labels_map", "out",
    "placed", "report", "resume", "root", "run", "runs", "slides", "values", "weights",
})


def _expand_home(args: argparse.Namespace) -> None:
    """``~`` and ``~user`` at the start of a path option, as the shell would have done: it does not in
    ``--out=~/run``, and a folder named ``~`` made in the current one is one ``rm -rf ~`` from a lost
    home folder. Other values (a title, a column name) stay as written."""
    for name in PATH_OPTIONS & set(vars(args)):
        value = getattr(args, name)
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list):
            setattr(args, name, [os.path.expanduser(v) if isinstance(v, str) else v for v in value])


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # stdout without a file descriptor (captured in tests): nothing will be flushed to the pipe
