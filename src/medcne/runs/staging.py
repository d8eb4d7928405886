"""Writing a run folder without ever losing the run it replaces.

A new run is written straight into its folder ``OUT`` when ``OUT`` holds no run
files. To replace a run (``fit --overwrite``, ``baseline --force``) the new run
is written into the staging folder ``.OUT.medcne-new`` beside ``OUT``, and only
once it is finished (its ``params.json`` says so) are its files moved into
``OUT`` by :func:`commit`: until then ``OUT`` keeps the old run, whole. Files
in ``OUT`` that medcne did not write are never touched.

:func:`commit` is idempotent: it first makes ``OUT`` unfinished (removes its
``params.json``), removes the old run files the new run does not have, moves
the new files in and moves ``params.json`` last. If it is stopped half-way,
``OUT`` reads as unfinished and the next :func:`begin` or ``fit --resume OUT``
(:func:`pending`) runs it again to the end.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MedcneError
from ..io import remove_stale_temps
from .folder import (
    CHECKPOINT,
    FINISHED,
    PARAMS,
    RUN_FILES,
    is_finished,
    read_json,
    run_files,
    staging_path,
)


def holds_run_files(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


def check(out, replace: bool, *, flag: str, refuse_any: bool) -> None:
    """Refuse, with one line, a run folder ``out`` that may not be written (see :func:`begin`); writes nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MedcneError(f"--out {out} is a file; give a folder path")
    staged = staging_path(out)
    complete = staged.is_dir() and read_json(staged / PARAMS).get(FINISHED) is True
    if staged.exists() and not complete and not replace:
        raise MedcneError(
            f"--out {out}: an interrupted replacement of this run is in {staged}; continue it with "
            f"`medcne fit --resume {out}`, or pass {flag} to start again"
        )
    busy = complete or (out.is_dir() and (any(out.iterdir()) if refuse_any else holds_run_files(out)))
    if busy and not replace:
        finished = complete or is_finished(out)
        what = "already holds a finished run" if finished else "exists and is not empty"
        resumable = not finished and (out / CHECKPOINT).exists()
        hint = f", `medcne fit --resume {out}` to continue it" if resumable else ""
        raise MedcneError(f"--out {out} {what}; pass {flag} to replace its run files{hint}, or choose another folder")


def begin(out, replace: bool, *, flag: str, refuse_any: bool) -> tuple[Path, bool]:
    """Make ready to write a run for ``out``; returns the folder to write into and whether ``out`` was created.

    Parameters
    ----------
    out : Path
        The run folder the user named.
    replace : bool
        The user allowed replacing what ``out`` holds (``flag``).
    flag : str
        The option that allows it, for messages ('--overwrite', '--force').
    refuse_any : bool
        Refuse any non-empty ``out`` without ``replace`` (``fit``); else only
        one that holds run files (``baseline``).

    Returns
    -------
    (Path, bool)
        The staging folder when ``out`` holds something to replace, else
        ``out``; and whether ``out`` did not exist before.
    """
    out = Path(out)
    check(out, replace, flag=flag, refuse_any=refuse_any)
    pending(out)
    staged = staging_path(out)
    discard(staged)  # an interrupted replacement that the user chose to start again
    created = not out.exists()
    if out.is_dir() and (any(out.iterdir()) if refuse_any else holds_run_files(out)):
        remove_stale_temps(out, RUN_FILES)
        staged.mkdir(parents=True)
        return staged, created
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, RUN_FILES)
    return out, created


def commit(work: Path, out: Path) -> None:
    """Move the finished run in the staging folder ``work`` into ``out`` (nothing to do when they are one)."""
    work, out = Path(work), Path(out)
    if work == out:
        return
    if not (work / PARAMS).is_file():  # moved already: only the empty folder is left
        discard(work)
        return
    keep = run_files(read_json(work / PARAMS))
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS).unlink(missing_ok=True)  # from here on `out` reads as unfinished
    for name in RUN_FILES:
        if name not in keep:
            (out / name).unlink(missing_ok=True)
    for name in keep:
        if name != PARAMS and (work / name).exists():
            os.replace(work / name, out / name)
    os.replace(work / PARAMS, out / PARAMS)
    discard(work)


def pending(out) -> bool:
    """Finish a replacement of ``out`` stopped after its new run was complete; True if there was one."""
    staged = staging_path(out)
    # The flag, not is_finished: half-way through commit() the embedding has moved already.
    if staged.is_dir() and (not (staged / PARAMS).exists() or read_json(staged / PARAMS).get(FINISHED) is True):
        commit(staged, Path(out))
        return True
    return False


def discard(work: Path, out: Path | None = None, created: bool = False) -> None:
    """Remove the run files medcne wrote into ``work`` (and the folder when it is medcne's own).

    ``work`` is a staging folder, or ``out`` itself for a run written in
    place; then ``out`` is removed only when this run ``created`` it and it is
    empty. A staging folder that holds other files is left as it is.
    """
    work = Path(work)
    if not work.is_dir():
        return
    for name in RUN_FILES:
        (work / name).unlink(missing_ok=True)
    remove_stale_temps(work, RUN_FILES)
    if work != out or created:
        try:
            work.rmdir()
        except OSError:
            pass  # not empty: someone else's files are in it

