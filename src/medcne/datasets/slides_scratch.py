"""Scratch folders of tiling with several workers: made beside the output, locked while used.

The scratch folder of the output NAME is ``.NAME.tiling-XXXXXXXX`` beside it
(XXXXXXXX: mkdtemp's 8 characters). It holds :data:`SCRATCH_MARKER`, locked
(flock) by the run using it for as long as it runs, so that a folder whose
marker nobody holds was left by a killed run: the next run into the same
output removes it, and never the folder of a run still going.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path

SCRATCH_INFIX = ".tiling-"
SCRATCH_MARKER = ".medcne-tiling"


def _scratch_parent(out: Path) -> Path:
    return out.resolve().parent


def _scratch_re(out: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(out.name)}{re.escape(SCRATCH_INFIX)}[a-z0-9_]{{8}}")


def _lock_marker(marker: Path, create: bool) -> int | None:
    """An open descriptor of ``marker`` holding its lock.

    ``create``: make the marker and wait for its lock (a new scratch folder);
    else None when the marker cannot be opened or another process holds its lock.
    """
    flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    try:
        fd = os.open(marker, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError:
        if create:
            raise
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if create else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_scratch(out: Path) -> tuple[Path, int]:
    """A new scratch folder for ``out`` and the descriptor that holds its marker's lock (close it to let go)."""
    parent = _scratch_parent(out)
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}{SCRATCH_INFIX}", dir=parent))
    try:
        fd = _lock_marker(scratch / SCRATCH_MARKER, create=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    try:
        os.write(fd, f"medcne tile: scratch of {out.name}, pid {os.getpid()}\n".encode())
    except OSError:
        pass  # a full disk: the lock is what counts, the text only tells a person whose folder this is
    return scratch, fd


def _is_scratch(folder: Path, pattern: re.Pattern) -> bool:
    """Named as a scratch folder of the output, a folder (not a link) holding the marker as a plain file."""
    marker = folder / SCRATCH_MARKER
    return (pattern.fullmatch(folder.name) is not None and not folder.is_symlink() and folder.is_dir()
            and not marker.is_symlink() and marker.is_file())


def remove_stale_scratch(out: Path) -> list[Path]:
    """Remove the scratch folders of ``out`` that killed runs left; returns them.

    A folder counts as one only when its name is ``.NAME.tiling-XXXXXXXX``, it
    is a folder (not a link) holding medcne's marker file, and no process holds
    the marker's lock: the folder of a run still going is never touched.
    """
    parent, pattern, removed = _scratch_parent(out), _scratch_re(out), []
    if not parent.is_dir():
        return removed
    for folder in sorted(parent.iterdir()):
        if not _is_scratch(folder, pattern):
            continue
        fd = _lock_marker(folder / SCRATCH_MARKER, create=False)
        if fd is None:  # a live run's (or not ours to open)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(folder)
    return removed
