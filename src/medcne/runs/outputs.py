"""The one rule for what medcne writes: locks, inputs, and replacing only what medcne wrote.

Every command that writes takes an advisory lock on its output for as long as
it runs (:func:`lock`): a second writer to the same output stops at once with
one line naming the first one's process id. An output is never an input of
the command, nor inside one (:func:`refuse_inputs`). An existing output is
replaced only when medcne wrote it, and only when the user asked
(``--overwrite``):

* a single file (figure, CSV, report; :func:`claim_files`) counts as medcne's
  while the record ``.medcne-written.json`` of its folder holds its name with
  the same size and sha256: a file the user made, or edited since, is refused
  even with ``--overwrite``;
* a run folder is medcne's when it holds the marker ``.medcne-run`` (or,
  written before the marker existed, a ``params.json`` of a run); the marker
  lists the files medcne wrote there, and only those are ever replaced
  (:mod:`.staging`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import MedcneError
from ..io import folders_for, write_json
from ..runfiles import (
    PARAMS,
    RUN_FILES,
    RUN_MARKER,
    VIEWER_DIR,
    WRITTEN_FORMAT,
    WRITTEN_RECORD,
    lock_name,
    locked_name,
    staging_name,
)

# Locks this process holds (path -> count): a command that locks an output and then calls a writer
# that locks it again must not refuse itself.
_HELD: dict[str, list] = {}


def lock_path(out) -> Path:
    out = Path(os.path.abspath(out))  # `.` or `a/..` named: the lock lies beside that folder, not inside it
    return out.parent / lock_name(out.name or "out")


@contextmanager
def lock(out, shared: bool = False) -> Iterator[Path]:
    """Hold the advisory lock of the output ``out`` (a file ``.NAME.medcne-lock`` beside it).

    Raises :class:`MedcneError` naming the holder's pid when another process
    holds it. ``shared``: several commands may hold it together (those that
    write files into a run folder, e.g. ``qc.csv``), but not with an exclusive
    holder (one replacing the run). The lock file is opened without following
    a symbolic link, and removed by the last holder on release (:func:`_release`).
    """
    path = lock_path(out)
    _check_name_room(path.parent / locked_name(path.name))
    with folders_for(path, keep=False):  # removed again when they were made for the lock alone
        key = os.path.join(os.path.realpath(path.parent), path.name)
        if key in _HELD:
            _HELD[key][1] += 1
            try:
                yield path
            finally:
                _HELD[key][1] -= 1
            return
        fd = _acquire(path, shared)
        _HELD[key] = [fd, 1]
        try:
            yield path
        finally:
            del _HELD[key]
            _release(path, fd)


def _release(path: Path, fd: int) -> None:
    """Let go of the lock ``fd`` of ``path``, removing the file when no other process holds it.

    The last holder is the one that can take it exclusively (at once): it
    removes the file before unlocking. A process that opened the file just
    before finds, once it has the lock, that the name no longer leads to the
    file it locked, and takes the new one (see :func:`_acquire`).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _names(path, fd):
            path.unlink()
    except OSError:
        pass  # others hold it (they remove it), or it is gone already
    finally:
        os.close(fd)


def _acquire(path: Path, shared: bool = False) -> int:
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise MedcneError(f"{path}: is a symbolic link, not medcne's lock file; remove it") from None
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise  # read-only, no permission, full: said by the command line's handler of such errors
            # A folder that cannot hold files (/proc): name the output, not medcne's lock file beside it.
            out = path.parent / locked_name(path.name)
            raise MedcneError(f"{out}: cannot be written there ({exc.strerror}: medcne writes a lock file "
                              f"{path.name} beside it first); choose a folder you can write to") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            if not _names(path, fd):  # the last holder was removing it: take the new one
                os.close(fd)
                continue
            holder = _read_pid(fd)
            os.close(fd)
            out = path.parent / locked_name(path.name)
            fix = "then run this command again" if shared else "or choose another output"  # shared: a run read
            raise MedcneError(f"{out}: another medcne command (pid {holder}) is writing it; wait for it to end, "
                              f"{fix}") from None
        if _names(path, fd):
            try:
                if shared:  # several holders: each adds its pid (read back, only the living ones count)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), os.fstat(fd).st_size)
                else:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # a full disk: the lock holds all the same, only the pid is not there to name
            return fd
        os.close(fd)  # the holder removed the file as we opened it: take the new one
    raise MedcneError(f"{path}: could not take the lock; try again")


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or of its nearest existing folder) takes."""
    for existing in (folder, *folder.parents):
        try:
            return os.pathconf(existing, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def _check_name_room(out: Path) -> None:
    """Refuse an output whose name leaves no room for the names medcne gives files beside it: its lock,
    the folder a replacement is staged in, and the temporary file it is written to
    (``.NAME.XXXXXXXX.tmpSUFFIX``, see :func:`medcne.io.atomic_write`)."""
    name = len(os.fsencode(out.name))
    overhead = max(len(lock_name("")), len(staging_name("")), len(f"..XXXXXXXX.tmp{out.suffix}".encode()))
    limit = _name_max(out.parent)
    if name + overhead > limit:
        raise MedcneError(f"{out}: the name is too long: medcne keeps files named after it beside it "
                          f"({lock_name('NAME')}, {staging_name('NAME')}, .NAME.XXXXXXXX.tmp{out.suffix}), so it "
                          f"may have at most {limit - overhead} bytes there; choose a shorter name")


def writer_of(out) -> str | None:
    """The pid(s) of the medcne command writing ``out`` now (holding its lock alone), or None.

    For readers that found ``out`` unfinished: a run being written is not a run that stopped. A lock
    file is never made or changed here; it is locked (shared) for an instant, so a writer starting in
    that instant is refused as if a reader held it.
    """
    try:
        fd = os.open(lock_path(out), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd)
    except OSError:
        return None
    finally:
        os.close(fd)  # closing lets go of the shared lock just taken
    return None


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still leads to the open lock file ``fd`` (its last holder removes it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _read_pid(fd: int) -> str:
    """The pids written in a lock file whose processes are alive, e.g. '4211' or '4211, 4230'."""
    try:
        text = os.pread(fd, 4096, 0).decode("ascii", "replace")
    except OSError:
        return "unknown"
    alive = []
    for word in text.split():
        if word.isdigit() and word not in alive and word != str(os.getpid()):  # not ours: we are refused
            try:
                os.kill(int(word), 0)
            except ProcessLookupError:
                continue
            except OSError:
                pass  # alive, but another user's
            alive.append(word)
    return ", ".join(alive) or "unknown"


def _resolved(path) -> Path:
    return Path(os.path.realpath(path))


def _inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def refuse_inputs(out, inputs: Iterable, *, runs: Iterable = (), derived: str | None = None) -> None:
    """Refuse an output ``out`` that is, or lies inside, one of ``inputs`` (paths read by the command).

    ``runs`` are run folders the command reads: ``out`` may be the file this
    command derives from a run in its folder (``derived``: ``propagated.csv``,
    ``viewer``), never anything else in it. A file named as a run's own
    (``qc.csv``, ``embedding.npz``...) is refused in any run folder but as
    ``derived``: readers of that run take it for theirs. The dataset each run
    was made from counts as an input too: a file written into it would be read
    as one of its images (or break its format) the next time.
    """
    target = _resolved(out)
    runs = list(runs)
    own = target.name == derived and any(target.parent == _resolved(run) for run in runs)
    for run in runs:
        if not own and _inside(target, _resolved(run)):
            raise MedcneError(f"`out` {out} is inside the run folder {run} that this command reads; "
                              "choose an `out` outside it")
    if target.name in (*RUN_FILES, VIEWER_DIR) and not own and _is_run_folder(target.parent):
        raise MedcneError(f"`out` {out} bears the name of a run's own file in the run folder {target.parent} "
                          "(its readers would take it for the run's); choose another name or folder")
    for given in [*inputs, *(p for run in runs for p in run_dataset(run))]:
        if given is None:
            continue
        source = _resolved(given)
        if _inside(target, source):
            what = "is" if target == source else "is inside"
            raise MedcneError(f"`out` {out} {what} {given}, an input of this command; choose another `out`")


def is_run_record(params) -> bool:
    """Whether ``params`` (a params.json read) is a run's record as medcne writes it: naming the
    method and the data (what tells a run written before the run marker existed)."""
    return isinstance(params, dict) and "method" in params and "data" in params


def _is_run_folder(folder: Path) -> bool:
    """Whether medcne wrote ``folder`` as a run (its marker, or a params.json naming a method)."""
    if (folder / RUN_MARKER).is_file():
        return True
    try:
        params = json.loads((folder / PARAMS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return is_run_record(params)  # a run written before the marker


def dataset_inputs(data_path) -> list[Path]:
    """What a command reading the dataset ``data_path`` may not write into: the dataset, and the
    folder of a CSV list (its images are read from there)."""
    if data_path is None:
        return []
    path = Path(data_path)
    return [path, path.parent] if path.suffix.lower() in (".csv", ".tsv") else [path]


def run_dataset(run_dir) -> list[Path]:
    """The dataset the run in ``run_dir`` was made from, as its ``params.json`` records it (and a CSV
    list's folder); none when the folder holds no readable record."""
    try:
        params = json.loads((Path(run_dir) / PARAMS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    data = params.get("data") if isinstance(params, dict) else None
    path = data.get("path") if isinstance(data, dict) else None
    return dataset_inputs(path) if isinstance(path, str) else []


def file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def _record(folder: Path) -> dict:
    try:
        obj = json.loads((folder / WRITTEN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(obj, dict) or obj.get("format") != WRITTEN_FORMAT or not isinstance(obj.get("files"), dict):
        return {}
    return obj["files"]


def written_by_medcne(path) -> bool:
    """Whether the file ``path`` is still exactly what medcne wrote there (see the module's docstring)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    entry = _record(path.parent).get(path.name)
    if not isinstance(entry, dict) or entry.get("size") != path.stat().st_size:
        return False
    return entry == file_digest(path)


def remember(paths: Iterable) -> None:
    """Add the files ``paths`` (just written) to their folders' records of what medcne wrote."""
    by_folder: dict[Path, list[Path]] = {}
    for p in paths:
        p = Path(p)
        if p.is_file():
            by_folder.setdefault(p.parent, []).append(p)
    for folder, files in by_folder.items():
        with lock(folder / WRITTEN_RECORD):
            record = _record(folder)
            record = {k: v for k, v in record.items() if (folder / k).is_file()}  # forget removed files
            for p in files:
                record[p.name] = file_digest(p)
            try:
                write_json(folder / WRITTEN_RECORD, {"format": WRITTEN_FORMAT, "files": record})
            except OSError:
                pass  # the outputs are written; unrecorded, they are only never replaced (the safe side)


def check_file(out, overwrite: bool, option: str = "overwrite") -> None:
    """Refuse to write the single file ``out`` when it exists and may not be replaced (one line)."""
    out = Path(out)
    if out.is_symlink():
        raise MedcneError(f"`out` {out} is a symbolic link; medcne never writes through one: choose another name")
    if not out.exists():
        return
    if out.is_dir():
        raise MedcneError(f"`out` {out} is a folder; give a file name")
    if not written_by_medcne(out):
        raise MedcneError(f"`out` {out} exists and was not written by medcne (or was changed since), so it is "
                          "never replaced; choose another name, or move it away yourself")
    if not overwrite:
        raise MedcneError(f"`out` {out} exists; pass `{option}` to replace it or choose another name")


@contextmanager
def claim_files(outs, overwrite: bool, *, inputs: Iterable = (), runs: Iterable = (), derived: str | None = None,
                option: str = "overwrite") -> Iterator[list[Path]]:
    """Write single files ``outs`` under the rule: lock each, check each, then record them as medcne's.

    The body writes the files (atomically); on success each written file is
    recorded (:func:`remember`), so that a later ``--overwrite`` may replace it.
    """
    outs = [Path(o) for o in ([outs] if isinstance(outs, (str, os.PathLike)) else outs)]
    inputs, runs = list(inputs), list(runs)
    with ExitStack() as stack:
        for out in outs:
            stack.enter_context(lock(out))
        for out in outs:
            refuse_inputs(out, inputs, runs=runs, derived=derived)
            check_file(out, overwrite, option)
        yield outs
        remember(outs)
