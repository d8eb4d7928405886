"""One line for each failure that is not a :class:`~medcne.errors.MedcneError`.

The system around a command fails in a few families: the file system (full,
read-only, no permission, a path of the wrong kind), damaged files (zip, zlib,
JSON, CSV, text encodings), memory. :func:`describe` turns each into one line
that names the path where one is known and says what to do, with exit status 2.
Anything else is a bug in medcne: one line that says so, exit status 1 (the
traceback is one ``--debug`` away).
"""

from __future__ import annotations

import csv
import errno
import re
import zipfile
import zlib
from pathlib import Path

# Temporary names stand for their destination NAME: `.NAME.XXXXXXXX.tmpSUFFIX`
# (io.atomic_write's files) and `.NAME.XXXXXXXX` (folders built with mkdtemp).
_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(\.tmp.*)?")

# Options that ask for memory (argparse names), named after running out of it when the command has them.
MEMORY_OPTIONS = ("subset", "size", "batch_size", "width", "grid", "np_queries")
# How torch says its CPU allocator found no memory (a RuntimeError, not a MemoryError).
CPU_ALLOCATOR_FAILED = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")

_OS_FIXES = {
    errno.ENOSPC: "no space left on the device; free some space (or write elsewhere) and run again",
    errno.EDQUOT: "disk quota exceeded; free some space (or write elsewhere) and run again",
    errno.EROFS: "the file system is read-only; write to another folder",
    errno.EACCES: "permission denied; use a path you may read and write, or change its permissions",
    errno.EPERM: "operation not permitted; use a path you may read and write, or change its permissions",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EISDIR: "is a folder, not a file; give a file name",
    errno.EEXIST: "exists and is not a folder; choose another path",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and run again",
    errno.EIO: "input/output error; check the disk",
}


def user_path(name) -> str:
    """The path a user gave for ``name``: a temporary file of an atomic write stands for its destination."""
    parts = [(m["name"] if (m := _TEMP.fullmatch(part)) else part) for part in Path(str(name)).parts]
    return str(Path(*parts)) if parts else str(name)


def describe_os_error(exc: OSError, where=None) -> str:
    # os.replace(tmp, dest) names both; the destination is what the user chose.
    name = getattr(exc, "filename2", None) or exc.filename or where
    fix = _OS_FIXES.get(exc.errno, exc.strerror or type(exc).__name__)
    return f"{user_path(name)}: {fix}" if name is not None else fix


def _memory_fix(args, gpu: bool = False) -> str:
    """What to lower after running out of memory: the size options the command has, when known; first
    the process's own limit on memory when one is set (`ulimit -v`/`-d`, a job's request)."""
    flags = [f"--{name.replace('_', '-')}" for name in MEMORY_OPTIONS if hasattr(args, name)]
    if not flags:
        less = "ask for less: fewer or smaller images, or smaller values of the command's options (see its --help)"
    else:
        listed = f"{', '.join(flags[:-1])} or {flags[-1]}" if len(flags) > 1 else flags[0]
        less = f"ask for less: lower {listed}"
    limits = [] if gpu else [f"ulimit {flag} {soft // 1024:,} kB" for flag, soft in memory_limits()]
    if limits:
        return f"the process runs under {' and '.join(limits)} (a job's memory request sets it): raise it, or {less}"
    return less


def memory_limits() -> list[tuple[str, int]]:
    """The limits on this process's memory that are set: ('-v', bytes) for its address space, ('-d', bytes)
    for its data."""
    from ..datasets.memory import process_limits

    return [(flag, soft) for flag, soft, _ in process_limits()]


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out: a MemoryError, torch's CPU allocator or a GPU's, a map or an
    allocation the system refused (ENOMEM), a shared library it could not map (an import under a limit)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in CPU_ALLOCATOR_FAILED):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    return isinstance(exc, (ImportError, OSError)) and "failed to map segment from shared object" in str(exc)


def describe(exc: BaseException, where=None, args=None) -> tuple[str, int]:
    """One line (without the ``medcne COMMAND: error:`` prefix) and the exit status for ``exc``.

    ``where`` (the command's ``--out``) stands for the path of a file-system
    error that names none; ``args`` (the parsed command line) lets a memory
    error name the command's own size options.
    """
    kind = type(exc).__name__
    if _out_of_memory(exc):  # kind OutOfMemoryError: torch.cuda's
        gpu = kind == "OutOfMemoryError"
        return f"out of memory ({'the GPU' if gpu else 'memory'}); {_memory_fix(args, gpu)}", 2
    if isinstance(exc, OSError):
        return describe_os_error(exc, where), 2
    if isinstance(exc, UnicodeError):
        return f"a text file is not UTF-8 ({exc}); save it as UTF-8", 2
    if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
        return f"a file is damaged or truncated ({kind}: {exc}); use an intact copy", 2
    if isinstance(exc, csv.Error):
        return f"a CSV file is malformed ({exc}); check its quoting and separators", 2
    if kind == "JSONDecodeError":
        return f"a JSON file is damaged ({exc})", 2
    if kind == "DecompressionBombError":  # PIL's limit on image size
        return f"an image is too large to decode safely ({exc})", 2
    return (f"internal error ({kind}: {exc}); this is a bug in medcne: please report it with the "
            "traceback that `medcne --debug ...` prints"), 1
