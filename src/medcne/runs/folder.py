"""The run folder (docs/design.md, "A run is a folder"): its files, and reading and writing them.

A run folder holds ``params.json``, ``embedding.npz`` / ``embedding.csv``,
``metrics.json``, ``map.png`` and, for trained runs, ``history.csv``,
``model.pt`` and ``checkpoint.pt``. Everything downstream (evaluate, plot,
viewer) reads these files and never retrains.

``params.json`` always has ``"method"`` (e.g. ``"tsimcne"``, ``"tsne-pixels"``)
and ``"data"``: the keyword arguments of :func:`medcne.datasets.load_dataset`
plus ``"path"`` (absolute), so the images of a run can be read again.

``embedding.npz`` / ``embedding.csv`` hold the points with their ids, labels
and provenance columns (:mod:`medcne.embedfile`).

A run is *finished* when ``params.json`` says ``"finished": true``: writers
put ``false`` there first and rewrite it with ``true`` after their last file,
so a run stopped half-way (killed, disk full) never looks finished. A run
written before medcne recorded this has no ``"finished"`` key; it counts as
finished when both embedding files are there (``embedding.csv`` was written
right after ``embedding.npz``). :func:`read_run` refuses anything else.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..datasets.npzfile import NpzArrays
from ..datasets.store import MARKER as STORE_MARKER
from ..embedfile import (  # noqa: F401  (re-exported: the run's embedding files, read and written there)
    PREFIX,
    REMEDY,
    prov_names,
    read_provenance,
    save_embedding_file,
    write_embedding,
)
from ..errors import DivergedError, MedcneError
from ..io import csv_text, write_text
from ..runfiles import (  # noqa: F401  (re-exported: the names every run reader used from here)
    BASELINE_FILES,
    CHECKPOINT,
    EMBEDDING,
    EMBEDDING_CSV,
    FINISHED,
    HISTORY,
    HISTORY_COLUMNS,
    IMAGES_FINGERPRINT,
    MAP,
    METRICS,
    MODEL,
    PARAMS,
    PROPAGATED,
    QC,
    RUN_FILES,
    STAGING_SUFFIX,
    TSIMCNE_FILES,
    finished_by,
    staging_name,
)
from .outputs import lock, writer_of


def run_files(params: dict) -> tuple[str, ...]:
    """The files a finished run of ``params['method']`` holds."""
    return TSIMCNE_FILES if params.get("method") == "tsimcne" else BASELINE_FILES


def staging_path(out) -> Path:
    """Where a run that replaces the run in ``out`` is written until it is complete."""
    out = Path(out)
    return out.parent / staging_name(out.name)


def staging_target(path) -> Path | None:
    """The run folder that the staging folder ``path`` replaces, or None if ``path`` is not one."""
    path = Path(path)
    name = path.name
    if name.startswith(".") and name.endswith(STAGING_SUFFIX) and len(name) > len(STAGING_SUFFIX) + 1:
        return path.parent / name[1:-len(STAGING_SUFFIX)]
    return None


def is_finished(path) -> bool:
    """Whether ``path`` holds a finished run (see the module's docstring)."""
    path = Path(path)
    if not (path / PARAMS).is_file() or not (path / EMBEDDING).is_file():
        return False
    return finished_by(read_json(path / PARAMS), path)


def write_history(run, rows: list[dict]) -> Path:
    """``history.csv``: one row per epoch (stage, epoch, loss, lr, views_per_s, knn; and dim,
    the output dimensions the loss saw at the epoch's end, for an annealed run; temperature
    and dof at the epoch's end, where they are learned)."""
    columns = (*HISTORY_COLUMNS, *(k for k in ("dim", "temperature", "dof") if any(k in r for r in rows)))
    cells = ([(f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) if k in r else "" for k in columns]
             for r in rows)
    return write_text(Path(run) / HISTORY, csv_text(columns, cells))


_CODED = re.compile(r"(^|/)[xs]-[0-9a-f]{12}(/|$)")  # a code of datasets.identity in an id


@dataclass
class Run:
    """What a run folder holds, read back."""

    path: Path
    params: dict
    embedding: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    metrics: dict
    # Which embedding.npz was read (inode, size, time): a file written into the run later is refused when
    # the run was replaced meanwhile (:meth:`check_unchanged`), not put beside a map it does not describe.
    stamp: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def method(self) -> str:
        return str(self.params.get("method", "unknown"))

    @property
    def name(self) -> str:
        return self.path.name

    def check_unchanged(self) -> None:
        """Refuse to go on when the folder no longer holds the run read (another command replaced it)."""
        if self.stamp is not None and _stamp(self.path / EMBEDDING) != self.stamp:
            raise MedcneError(f"{self.path}: the run was replaced while this command read it (by another "
                              "medcne command); nothing was written: run the command again on the new run")

    def load_images(self, data_path=None):
        """The images of this run, in embedding order (re-read from ``params['data']``)."""
        spec = dict(self.params.get("data") or {})
        path = data_path or spec.pop("path", None)
        spec.pop("path", None)
        if path is None:
            raise MedcneError(f"{self.path}: {PARAMS} names no data; pass the data path explicitly")
        data = read_as_recorded(path, spec, self.path, "give the dataset the run was made from (`data_path`)")
        return self.check_images(data, path)

    def check_images(self, data, path=None):
        """``data`` when they are the images of this run (its ids, and the fingerprint of their pixels
        that params.json keeps), else one line naming the run and ``path`` (where they were read)."""
        where = f"the images of {path}" if path is not None else "the images given"
        if len(data) != len(self.ids) or not np.array_equal(data.ids, self.ids):
            raise MedcneError(f"{self.path}: {where} do not match the run's ids; pass the data the run was made "
                              f"from{self._why_ids_differ()}")
        recorded = self.params.get(IMAGES_FINGERPRINT)  # none in a run of an older medcne: the ids only
        if recorded is not None and recorded != data.fingerprint(sampled=None, labels=False):
            raise MedcneError(
                f"{self.path}: {where} have the run's ids but other pixels (or size or channels) than "
                "the images the run was made from; pass the data the run was made from"
            )
        return data

    def _why_ids_differ(self) -> str:
        """What besides other data makes the same data give other ids: a subset drawn by label, or the
        key of the codes that stand in for patient identity (DICOM)."""
        why = []
        if (self.params.get("data") or {}).get("subset") is not None:
            why.append("a `subset` is drawn class by class, so corrected labels draw other images")
        data = self.params.get("data") or {}
        if "store_parts" not in data and (Path(str(data.get("path"))) / STORE_MARKER).is_file():
            why.append("parts appended to the store since the run was made are read with it (this medcne "
                       "records the parts a run read; an older one did not): make the run again")
        if any(_CODED.search(str(i)) for i in self.ids[:100]):
            why.append("the codes standing in for patient identity depend on the key (MEDCNE_IDENTITY_KEY or "
                       "~/.config/medcne/identity.key): use the one the run was made with")
        return f" ({'; '.join(why)})" if why else ""


def read_as_recorded(path, spec: dict, run_path, fix: str):
    """The dataset at ``path`` read with the options a run recorded (``spec``). A failure is said as the
    run's, with ``fix``: the reader's own advice (another `subset` or `size`) cannot be followed here,
    since those options are the run's."""
    from ..datasets import as_read_then, load_dataset

    try:
        return load_dataset(path, **as_read_then(spec))
    except MedcneError as exc:
        problem = str(exc).split("; ")[0]
        defaults = {k: v.default for k, v in inspect.signature(load_dataset).parameters.items()}
        given = ", ".join(f"{k} {v}" for k, v in spec.items() if v != defaults.get(k)) or "no options"
        raise MedcneError(f"{run_path}: its data cannot be read as the run read them ({given}) from {path}: "
                          f"{problem}; {fix}") from None


def read_json(path) -> dict:
    """A JSON object of a run, ``{}`` when the file does not exist; one clear line when it is damaged."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise MedcneError(f"{path}: damaged, not valid JSON ({exc}); {_remedy(path)}") from None
    if not isinstance(obj, dict):
        raise MedcneError(f"{path}: damaged, holds a JSON {type(obj).__name__} instead of an object; {_remedy(path)}")
    return obj


def _remedy(path: Path) -> str:
    if path.name == METRICS:
        return f"delete it and run `medcne evaluate {path.parent}` to write it again"
    return "make the run again (`medcne fit` or `medcne baseline`)"


def no_params_message(out: Path, work: Path | None = None) -> str:
    """Why the stopped run ``out`` (its files in ``work``, default ``out``) whose checkpoint is there but
    whose params.json is not cannot be resumed, and what to do: said alike by the readers of runs and by
    :func:`medcne.runs.resume_run`."""
    work = out if work is None else work
    return (f"{out}: not a finished run, and it cannot be resumed: {work / PARAMS} is missing (it records the "
            f"data and settings a resume needs; {CHECKPOINT} alone is not enough); make the run again with "
            f"`medcne fit DATA --out {out} --overwrite`")


def unfinished_message(path: Path) -> str:
    """Why ``path`` is not a finished run, and what to do, in one line."""
    if (pid := writer_of(path)) is not None:  # being written now: not a run that stopped
        return (f"{path}: another medcne command (pid {pid}) is writing this run; wait for it to end, "
                "then run this command again")
    staged = staging_path(path)
    if staged.is_dir():
        return (f"{path}: not a finished run: its replacement in {staged} was interrupted; "
                f"complete it with `medcne fit --resume {path}`, or run again with `overwrite`")
    if (path / CHECKPOINT).is_file():
        if not (path / PARAMS).is_file():
            return no_params_message(path)
        return f"{path}: not a finished run (training stopped); continue it with `medcne fit --resume {path}`"
    if not (path / EMBEDDING).exists() and not (path / PARAMS).exists():
        return (f"{path}: not a run folder (no {EMBEDDING}); give a folder written by `medcne fit` "
                "or `medcne baseline`")
    return (f"{path}: not a finished run (it stopped before its last file was written); "
            "run the command that made it again (`medcne fit --overwrite` or `medcne baseline --force`)")


def read_run(path, *, finished: bool = True) -> Run:
    """Read a run folder; fails with one clear line when it is not a finished, readable run.

    ``finished=False`` reads a run that its writer has not finished yet (the
    writers themselves, before their last file).
    """
    path = Path(path)
    if path.is_file():  # e.g. the points `medcne embed` placed: a table, not a run
        raise MedcneError(f"{path}: a file, not a run folder; give a folder written by `medcne fit` or "
                          "`medcne baseline`")
    if not path.is_dir():
        raise MedcneError(f"{path}: no such run folder; give a folder written by `medcne fit` or `medcne baseline`")
    if not (path / EMBEDDING).is_file() or (finished and not is_finished(path)):
        raise MedcneError(unfinished_message(path))
    params = read_json(path / PARAMS)
    metrics = read_json(path / METRICS)
    stamp = _stamp(path / EMBEDDING)  # before the file is read: a replacement after it is seen
    embedding, ids, labels, names = _read_embedding(path / EMBEDDING)
    bad = ~np.isfinite(embedding).all(axis=1)
    if bad.any():
        raise DivergedError(
            f"{path}: {int(bad.sum())} points of {EMBEDDING} are not finite (NaN or inf), e.g. id "
            f"{str(ids[bad][0])!r}: the run diverged; make it again (for t-SimCNE with a lower `lr`)"
        )
    return Run(path, params, embedding, ids, labels, names, metrics, stamp)


@contextmanager
def writing_into(run: Run) -> Iterator[Run]:
    """For a command that writes files into the finished run it read (metrics.json, qc.csv, the page):
    the run's shared lock for the body, so that a replacement of the run stops at once naming this
    command, and a check that the folder still holds the run read (one replaced before the lock is
    refused, not written about).

    Where no lock file can be made beside the run (a folder you may not write to), no replacement can be
    staged there either: the check alone guards the write. A staging folder (a run being made, whose
    writer holds the lock of its target) takes no lock of its own.
    """
    with ExitStack() as held:
        if staging_target(run.path) is None:
            try:
                held.enter_context(lock(run.path, shared=True))
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
        run.check_unchanged()
        yield run


def _stamp(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_embedding(path: Path):
    """The arrays of an ``embedding.npz`` (embedding, ids, labels, class names), checked against each other.

    A damaged file (read by :class:`~medcne.datasets.npzfile.NpzArrays`, with
    the run's remedy), or arrays that do not fit together, is refused with one
    line naming the file.
    """
    with NpzArrays(path, remedy=REMEDY) as npz:
        missing = [name for name in ("embedding", "ids") if name not in npz.keys]
        if missing:
            raise MedcneError(f"{path}: damaged (it has no array {missing[0]!r}); {REMEDY}")
        embedding = npz.load("embedding")
        ids = npz.load("ids")
        labels = npz.load("labels") if "labels" in npz.keys else None
        names = npz.load("class_names") if "class_names" in npz.keys else None
    n = len(embedding) if embedding.ndim else 0
    problem = None
    if embedding.ndim != 2 or embedding.dtype.kind not in "fiu":
        problem = f"embedding has shape {embedding.shape} and type {embedding.dtype}, not N x d numbers"
    elif ids.shape != (n,) or ids.dtype.kind not in "biuUS":
        problem = f"ids has shape {ids.shape} and type {ids.dtype}, not one id per point ({n})"
    elif names is not None and names.ndim != 1:
        problem = f"class_names has shape {names.shape}, not one name per class"
    elif labels is not None and (labels.shape != (n,) or labels.dtype.kind not in "iu" or names is None
                                 or (n and (labels.min() < 0 or labels.max() >= len(names)))):
        problem = "labels do not match the points or the class names"
    if problem:
        raise MedcneError(f"{path}: damaged ({problem}); {REMEDY}")
    return embedding, ids.astype(str), labels, None if names is None else [str(c) for c in names]
