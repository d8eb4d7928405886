"""Writing a run folder without ever losing the run it replaces, or anything medcne did not write.

Every command that writes a run uses :func:`writing`: it takes the lock of the
folder ``OUT`` (:func:`.outputs.lock`, held until the command ends; :func:`locked`
takes it earlier, before the command's first look at ``OUT``), checks
that ``OUT`` may be written (:func:`check`), and gives the folder to write
into. The folder rule:

* ``OUT`` missing or empty: the run is written straight into it;
* ``OUT`` a run folder medcne wrote (it holds the marker ``.medcne-run``, or
  a run's ``params.json`` when written before the marker existed): replaced
  only with ``--overwrite`` (``--force`` for baselines). The new run is
  written into the staging folder ``.OUT.medcne-new`` beside it, and only once
  it is finished are its files moved into ``OUT`` by :func:`commit`: until
  then ``OUT`` keeps the old run, whole. Only the files the marker lists
  (those medcne wrote) are replaced; the user's other files stay;
* anything else (a folder holding files medcne did not write, a file, a
  symbolic link at the staging name) is refused, even with ``--overwrite``,
  naming what is there.

:func:`commit` is idempotent: it first makes ``OUT`` unfinished (removes its
``params.json``), removes the old run files the new run does not have (and
the ``viewer/`` page of the old map, while it holds only what medcne built:
:func:`.pagemarks.retire_page`), moves the new files in and moves
``params.json`` last. If it is stopped half-way,
``OUT`` reads as unfinished and the next :func:`begin` or ``fit --resume OUT``
(:func:`pending`) runs it again to the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import MedcneError
from ..io import remove_stale_temps, stale_temps, write_json
from ..params import as_user, say
from ..runfiles import (
    LOCK_SUFFIX,
    RUN_MARKER,
    RUN_MARKER_FORMAT,
    RUN_OUTPUTS,
    TSIMCNE_FILES,
    VIEWER_DIR,
    WRITTEN_RECORD,
)
from ..train import distributed
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
from .outputs import is_run_record, lock, refuse_inputs, written_by_medcne
from .pagemarks import retire_page

MAX_NAMED = 5


def marked_files(folder: Path) -> list[str] | None:
    """The files the marker of ``folder`` says medcne wrote; None when ``folder`` has no valid marker."""
    try:
        import json

        obj = json.loads((Path(folder) / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(obj, dict) or obj.get("format") != RUN_MARKER_FORMAT or not isinstance(obj.get("files"), list):
        return None
    return [str(n) for n in obj["files"] if str(n) in RUN_FILES]


def mark(folder: Path, files: Iterable[str]) -> None:
    """Write the marker of a run folder: medcne wrote it, and these of its files."""
    write_json(Path(folder) / RUN_MARKER, {"format": RUN_MARKER_FORMAT, "files": sorted(set(files))})


def add_to_run(folder, name: str) -> None:
    """Record in the marker of the run ``folder`` that medcne wrote ``name`` there (qc.csv, propagated.csv)."""
    listed = marked_files(Path(folder))
    if listed is not None and name not in listed:
        mark(Path(folder), [*listed, name])


def owned_files(folder: Path) -> list[str]:
    """The run files of ``folder`` that medcne wrote: those its marker lists, or for a run written
    before the marker existed, the files of its method."""
    listed = marked_files(folder)
    if listed is not None:
        return listed
    params = read_json(folder / PARAMS) if (folder / PARAMS).is_file() else {}
    if is_run_record(params):
        return list(run_files(params))
    return []


def is_run_folder(folder: Path) -> bool:
    """Whether medcne wrote the folder ``folder`` as a run (its marker, or an older run's params.json)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return marked_files(folder) is not None or bool(owned_files(folder))


def foreign(folder: Path) -> list[str]:
    """What ``folder`` holds that medcne did not write (names, sorted).

    In a run folder medcne's are the files its marker lists, the marker, the
    record of single files, lock files and the temporary files a killed
    writer left (removed when the run is written).
    """
    if not is_run_folder(folder):
        return sorted(p.name for p in folder.iterdir())
    ours = {RUN_MARKER, WRITTEN_RECORD, *owned_files(folder)}
    ours |= {p.name for p in stale_temps(folder, (*RUN_FILES, RUN_MARKER, WRITTEN_RECORD))}
    return sorted(p.name for p in folder.iterdir()
                  if p.name not in ours and not (p.name.startswith(".") and p.name.endswith(LOCK_SUFFIX)))


def _named(names: list[str]) -> str:
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return ", ".join(names[:MAX_NAMED]) + more


def _check_staging(out: Path) -> Path:
    """The staging path of ``out``, refused when something medcne did not make sits there."""
    staged = staging_path(out)
    if staged.is_symlink() or (staged.exists() and not staged.is_dir()):
        raise MedcneError(f"{staged}: is a symbolic link or a file, not a staging folder of medcne; it is never "
                          f"followed or replaced: remove it, then run again")
    if staged.is_dir() and any(staged.iterdir()) and marked_files(staged) is None:
        raise MedcneError(f"{staged}: holds files medcne did not write ({_named(foreign(staged))}); it is never "
                          "replaced: move them away, then run again")
    return staged


def resume_command(out) -> str:
    """How this user continues the interrupted run ``out``: the command, or the Python call."""
    return as_user(f"`medcne fit --resume {out}`", f"`resume_run({str(out)!r})`")


def check(out, replace: bool, *, option: str, refuse_any: bool = True, inputs: Iterable = ()) -> None:
    """Refuse, with one line, a run folder ``out`` that may not be written (see the module's docstring).

    ``inputs``: paths the command reads (the dataset, and its folder for
    folder and CSV datasets); ``out`` may not be, or lie inside, one of them.
    ``refuse_any`` is kept for callers of an earlier version: every non-empty
    folder needs ``replace`` now. Writes nothing.
    """
    out = Path(out)
    refuse_inputs(out, inputs)
    if out.exists() and not out.is_dir():
        raise MedcneError(f"`out` {out} is a file; give a folder path")
    staged = _check_staging(out)
    complete = staged.is_dir() and read_json(staged / PARAMS).get(FINISHED) is True
    if staged.is_dir() and not complete and not replace:
        raise MedcneError(
            f"`out` {out}: an interrupted replacement of this run is in {staged}; continue it with "
            + resume_command(out) + f", or pass `{option}` to start again"
        )
    nonempty = out.is_dir() and any(out.iterdir())
    if nonempty and not is_run_folder(out):
        raise MedcneError(f"`out` {out} holds files medcne did not write ({_named(foreign(out))}), so medcne never "
                          f"writes a run there, even with `{option}`; choose another folder")
    if (complete or nonempty) and not replace:
        finished = complete or is_finished(out)
        what = "already holds a finished run" if finished else "holds an unfinished run"
        resumable = not finished and (out / CHECKPOINT).exists() and (out / PARAMS).is_file()  # both: resume_run
        hint = f", {resume_command(out)} to continue it" if resumable else ""
        raise MedcneError(f"`out` {out} {what}; pass `{option}` to replace its run files{hint}, or choose another folder")


def begin(out, replace: bool, *, option: str, refuse_any: bool = True, inputs: Iterable = ()) -> tuple[Path, bool]:
    """Make ready to write a run for ``out``; returns the folder to write into and whether ``out`` was created.

    Parameters
    ----------
    out : Path
        The run folder the user named.
    replace : bool
        The user allowed replacing the run ``out`` holds (``option``).
    option : str
        The parameter that allows it, for messages ('overwrite', 'force'; the
        command line names its flag).
    refuse_any, inputs
        As for :func:`check`.

    Returns
    -------
    (Path, bool)
        The staging folder when ``out`` holds a run to replace, else ``out``;
        and whether ``out`` did not exist before.
    """
    out = Path(out)
    check(out, replace, option=option, inputs=inputs)
    pending(out)
    staged = staging_path(out)
    discard(staged)  # an interrupted replacement that the user chose to start again
    created = not out.exists()
    if out.is_dir() and any(out.iterdir()):
        remove_stale_temps(out, (*RUN_FILES, RUN_MARKER))
        staged.mkdir()  # exclusive: fails on anything (a link, a folder) that appeared there since
        work = staged
    else:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out, (*RUN_FILES, RUN_MARKER))
        work = out
    try:
        # What this run may write (an in-place run began in an empty folder); commit() records what it did.
        mark(work, TSIMCNE_FILES)
    except BaseException:
        discard(work, out, created)
        raise
    return work, created


def commit(work: Path, out: Path) -> None:
    """Move the finished run in the staging folder ``work`` into ``out`` (only mark it when they are one)."""
    work, out = Path(work), Path(out)
    if work == out:
        if (out / PARAMS).is_file():
            mark(out, [n for n in run_files(read_json(out / PARAMS)) if (out / n).exists()])
        return
    if not (work / PARAMS).is_file():  # moved already: only the empty folder is left
        discard(work)
        return
    keep = list(run_files(read_json(work / PARAMS)))
    old = owned_files(out) if out.is_dir() else []
    out.mkdir(parents=True, exist_ok=True)
    if PARAMS in old:
        (out / PARAMS).unlink(missing_ok=True)  # from here on `out` reads as unfinished
    for name in old:
        # qc.csv or propagated.csv edited since medcne wrote it is the user's now: it stays (unmarked)
        derived_and_edited = name in RUN_OUTPUTS and (out / name).exists() and not written_by_medcne(out / name)
        if name not in keep and not derived_and_edited:
            (out / name).unlink(missing_ok=True)
    if note := retire_page(out / VIEWER_DIR):  # it shows the replaced run's map (kept when it holds a file of the user's)
        say(note)
    for name in keep:
        if name != PARAMS and (work / name).exists():
            os.replace(work / name, out / name)
    mark(out, [n for n in keep if n == PARAMS or (out / n).exists()])  # before params.json: a commit stopped after this is completed by the next one
    os.replace(work / PARAMS, out / PARAMS)
    discard(work)


def pending(out) -> bool:
    """Finish a replacement of ``out`` stopped after its new run was complete; True if there was one."""
    staged = _check_staging(Path(out))
    # The flag, not is_finished: half-way through commit() the embedding has moved already.
    if staged.is_dir() and (not (staged / PARAMS).exists() or read_json(staged / PARAMS).get(FINISHED) is True):
        commit(staged, Path(out))
        return True
    return False


def discard(work: Path, out: Path | None = None, created: bool = False) -> None:
    """Remove the run files medcne wrote into ``work`` (and the folder when it is medcne's own).

    ``work`` is a staging folder, or ``out`` itself for a run written in
    place; then ``out`` is removed only when this run ``created`` it and it is
    empty. A symbolic link is never followed; a folder that holds other files
    is left with them.
    """
    work = Path(work)
    if work.is_symlink() or not work.is_dir():
        return
    if work != out and marked_files(work) is None and any(work.iterdir()):
        return  # not a folder medcne marked: nothing in it is removed
    # A run written in place began in an empty folder, so every run file in it is this run's.
    for name in RUN_FILES:
        (work / name).unlink(missing_ok=True)
    remove_stale_temps(work, RUN_FILES)
    (work / RUN_MARKER).unlink(missing_ok=True)
    if work != out or created:
        try:
            work.rmdir()
        except OSError:
            pass  # not empty: someone else's files are in it


@contextmanager
def locked(out) -> Iterator[None]:
    """Hold the lock of the run folder ``out`` (:func:`.outputs.lock`) for the body.

    A command writing a run takes it before it looks at ``out`` at all, so that
    a second writer is told at once who holds it, not to replace or resume the
    run being written. With several processes rank 0 takes it, and a refusal
    stops every rank. :func:`writing` takes it again (held already: at no cost).
    """
    with ExitStack() as held:
        distributed.on_main(lambda: held.enter_context(lock(out)))
        yield


@contextmanager
def writing(out, replace: bool = False, *, option: str = "overwrite", inputs: Iterable = (),
            keep: Callable[[Path], bool] | None = None, resume: bool = False) -> Iterator[Path]:
    """Write a run for ``out`` under the rule: lock, check, begin, yield the folder, commit or discard.

    Parameters
    ----------
    out : Path
        The run folder.
    replace : bool
        The user allowed replacing the run ``out`` holds (``option``).
    option : str
        'overwrite' or 'force': the parameter named in messages.
    inputs : iterable of Path
        What the command reads (see :func:`check`).
    keep : callable, optional
        Called with the work folder when the body fails: True keeps it (a
        resumable checkpoint) instead of discarding it.
    resume : bool
        Continue the unfinished run of ``out`` (in its staging folder when
        it was replacing one) instead of starting one.

    Yields
    ------
    Path
        The folder to write into. With several processes only rank 0 locks,
        checks and moves files; the others get the same folder.
    """
    out = Path(out)
    main = distributed.world().is_main
    state: dict = {}

    def enter() -> None:
        if resume:
            _check_staging(out)
            staged = staging_path(out)
            state["work"], state["created"] = (staged if staged.is_dir() else out), False
        else:
            state["work"], state["created"] = begin(out, replace, option=option, inputs=inputs)

    with locked(out):
        distributed.on_main(enter)
        # Only rank 0 writes; the others name the same folder (a resumed replacement's staging folder).
        work = state.get("work") or (staging_path(out) if resume and staging_path(out).is_dir() else out)
        try:
            yield work
        except BaseException:
            if main and not (keep is not None and keep(work)):
                discard(work, out, state.get("created", False))
            raise
        if main:
            commit(work, out)
