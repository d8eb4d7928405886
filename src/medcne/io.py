"""Atomic writes of bytes, text, JSON and npz: the leaf every module may use.

A writer gets a temporary path next to the destination and the result is
renamed into place, so no reader (and no crash) ever sees half a file. Imports
nothing from medcne.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Below this many free bytes a failed write is taken for a full disk (torch.save
# reports ENOSPC as a RuntimeError of its zip writer, without an errno).
FULL_DISK_BYTES = 1 << 20


@contextmanager
def folders_for(path, keep: bool = True) -> Iterator[Path]:
    """Make the missing parent folders of ``path`` for the body.

    Those made are removed again, innermost first and only while empty, when
    the body fails; with ``keep=False`` also when it ends (a lock file's folder:
    it was made only to hold the lock of an output that was never written).
    """
    path = Path(path)
    made = [p for p in path.parents if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        _remove_empty(made)
        raise
    if not keep:
        _remove_empty(made)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break  # it holds something now (or is gone): it and the folders above it stay


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``, so no reader sees half a file.

    The temporary file is ``.NAME.XXXXXXXX.tmpSUFFIX`` beside ``path`` (see
    :func:`stale_temps`) and is removed when ``write`` fails. A writer that
    fails on a full disk without saying so (torch's zip writer raises a
    ``RuntimeError``) is reported as ``OSError(ENOSPC)`` naming ``path``, and
    so is an ``OSError`` that names no file. Folders made for ``path`` are removed
    again when it is not written (:func:`folders_for`).
    """
    with folders_for(path) as path:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            # mkstemp makes 0600 files; give the result the mode a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except Exception as exc:
            full = not isinstance(exc, OSError) and disk_full(path.parent)
            Path(tmp).unlink(missing_ok=True)
            if full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
                raise OSError(exc.errno, exc.strerror, str(path)) from exc  # numpy's writes name no file
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def disk_full(folder) -> bool:
    """Whether the file system of ``folder`` has (almost) no free space left."""
    try:
        return shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        return False


def stale_temps(folder, names) -> list[Path]:
    """Temporary files of :func:`atomic_write` for the files ``names`` in ``folder``.

    A killed writer leaves ``.NAME.XXXXXXXX.tmpSUFFIX`` behind (XXXXXXXX: the
    8 characters :func:`tempfile.mkstemp` draws); only names of exactly that
    form match, so no other file is ever taken for one.
    """
    folder = Path(folder)
    patterns = [
        re.compile(rf"\.{re.escape(n)}\.[a-z0-9_]{{8}}\.tmp{re.escape(Path(n).suffix)}") for n in names
    ]
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.is_symlink() and any(r.fullmatch(p.name) for r in patterns))


def remove_stale_temps(folder, names) -> list[Path]:
    """Delete what :func:`stale_temps` finds; returns the deleted paths."""
    found = stale_temps(folder, names)
    for p in found:
        p.unlink(missing_ok=True)
    return found


def write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=jsonable) + "\n")


def jsonable(obj):
    """``json.dumps`` default for numpy scalars and arrays, tuples and paths."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_npz(path, **arrays) -> Path:
    """``np.savez_compressed`` written atomically (and without appending ``.npz`` to the name)."""

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return atomic_write(path, write)


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


def csv_cell(value) -> str:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs as a formula.

    A text that starts with ``= + - @``, a tab or a carriage return and is not
    a number gets a leading ``'`` (OWASP's rule); so does one that starts with
    ``'`` and then one of those or another ``'``, so that :func:`csv_value`
    gives back exactly what was written. Other texts are unchanged. A numpy
    float (a value of an array, e.g. a provenance column with gaps) that is
    NaN is an empty cell, and a whole one is written without ``.0``.
    """
    if isinstance(value, np.floating):  # a number of an array: missing (NaN) is an empty cell, whole has no ".0"
        value = "" if np.isnan(value) else int(value) if value.is_integer() else value
    text = "" if value is None else str(value)
    if _escaped_form(text) or (text.startswith(FORMULA_STARTS) and not _is_number(text)):
        return ESCAPE + text
    return text


def csv_value(cell: str) -> str:
    """Undo :func:`csv_cell`: the text that was written (a cell no writer escaped comes back as it is)."""
    return cell[1:] if _escaped_form(cell) else cell


def _escaped_form(text: str) -> bool:
    return text.startswith(ESCAPE) and text[1:2] != "" and text[1] in (*FORMULA_STARTS, ESCAPE)


# A number a spreadsheet reads as a number: digits, an optional point and exponent (not Python's
# 'inf', 'nan' or '1_000', which a spreadsheet reads as a formula after a sign). The viewer's export
# (viewer/js/csv.js) uses the same pattern.
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _is_number(text: str) -> bool:
    return NUMBER.fullmatch(text) is not None


def csv_text(header, rows, lineterminator: str = "\r\n") -> str:
    """A CSV document of ``header`` and ``rows``, every cell through :func:`csv_cell`."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=lineterminator)
    writer.writerow([csv_cell(c) for c in header])
    for row in rows:
        writer.writerow([csv_cell(c) for c in row])
    return buf.getvalue()
