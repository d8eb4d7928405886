"""The run folder (docs/design.md, "A run is a folder"): its files, and reading and writing them.

A run folder holds ``params.json``, ``embedding.npz`` / ``embedding.csv``,
``metrics.json``, ``map.png`` and, for trained runs, ``history.csv``,
``model.pt`` and ``checkpoint.pt``. Everything downstream (evaluate, plot,
viewer) reads these files and never retrains.

``params.json`` always has ``"method"`` (e.g. ``"tsimcne"``, ``"tsne-pixels"``)
and ``"data"``: the keyword arguments of :func:`medcne.datasets.load_dataset`
plus ``"path"`` (absolute), so the images of a run can be read again.

``embedding.npz`` holds ``embedding`` (float32, N x d), ``ids`` (str, N) and,
when labeled, ``labels`` (int64, N) and ``class_names`` (str, C).

A run is *finished* when ``params.json`` says ``"finished": true``: writers
put ``false`` there first and rewrite it with ``true`` after their last file,
so a run stopped half-way (killed, disk full) never looks finished. A run
written before medcne recorded this has no ``"finished"`` key; it counts as
finished when both embedding files are there (``embedding.csv`` was written
right after ``embedding.npz``). :func:`read_run` refuses anything else.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DivergedError, MedcneError
from ..io import save_npz, write_text

PARAMS = "params.json"
HISTORY = "history.csv"
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
EMBEDDING = "embedding.npz"
EMBEDDING_CSV = "embedding.csv"
METRICS = "metrics.json"
MAP = "map.png"
# Written later from the run (medcne qc, medcne propagate): they describe this run's images and map,
# so a replacement of the run removes them with the other run files.
QC = "qc.csv"
PROPAGATED = "propagated.csv"
# Every file a run may hold: what `fit --overwrite` replaces and nothing else.
TSIMCNE_FILES = (PARAMS, HISTORY, MODEL, CHECKPOINT, EMBEDDING, EMBEDDING_CSV, METRICS, MAP)
RUN_FILES = (*TSIMCNE_FILES, QC, PROPAGATED)
HISTORY_COLUMNS = ("stage", "epoch", "loss", "lr", "views_per_s", "knn")
# The files of a finished baseline run (a t-SimCNE run adds history, model and checkpoint);
# qc.csv and propagated.csv come later, and a replacement of the run drops them.
BASELINE_FILES = (PARAMS, EMBEDDING, EMBEDDING_CSV, METRICS, MAP)
FINISHED = "finished"  # the key of params.json that a writer sets last
# A replacement run is written into ".NAME.medcne-new" beside the run folder NAME.
STAGING_SUFFIX = ".medcne-new"


def run_files(params: dict) -> tuple[str, ...]:
    """The files a finished run of ``params['method']`` holds."""
    return TSIMCNE_FILES if params.get("method") == "tsimcne" else BASELINE_FILES


def staging_path(out) -> Path:
    """Where a run that replaces the run in ``out`` is written until it is complete."""
    out = Path(out)
    return out.parent / f".{out.name}{STAGING_SUFFIX}"


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
    flag = read_json(path / PARAMS).get(FINISHED)
    if flag is None:  # written before medcne recorded it
        return (path / EMBEDDING_CSV).is_file()
    return flag is True


def write_embedding(run, embedding: np.ndarray, ids, labels=None, class_names=None) -> None:
    """Write ``embedding.npz`` and ``embedding.csv`` (x, y[, z...], label, id)."""
    save_embedding_file(Path(run) / EMBEDDING, embedding, ids, labels, class_names)
    save_embedding_file(Path(run) / EMBEDDING_CSV, embedding, ids, labels, class_names)


def save_embedding_file(path, embedding, ids, labels=None, class_names=None) -> Path:
    """An embedding as ``.npz`` or ``.csv``, chosen by the file's extension."""
    path = Path(path)
    embedding = np.asarray(embedding, dtype=np.float32)
    ids = np.asarray(ids).astype(str)
    if path.suffix == ".npz":
        arrays = {"embedding": embedding, "ids": ids}
        if labels is not None:
            arrays["labels"] = np.asarray(labels, dtype=np.int64)
            arrays["class_names"] = np.asarray(class_names).astype(str)
        return save_npz(path, **arrays)
    if path.suffix != ".csv":
        raise MedcneError(f"{path}: output must end in .csv or .npz")
    axes = ["x", "y", "z"][: embedding.shape[1]] if embedding.shape[1] <= 3 else [
        f"dim{i}" for i in range(embedding.shape[1])
    ]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*axes, "label", "id"])
    for i, row in enumerate(embedding):
        label = "" if labels is None else class_names[int(labels[i])]
        writer.writerow([*(f"{v:.6g}" for v in row), label, ids[i]])
    return write_text(path, buf.getvalue())


def write_history(run, rows: list[dict]) -> Path:
    """``history.csv``: one row per epoch (stage, epoch, loss, lr, views_per_s, knn)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return write_text(Path(run) / HISTORY, buf.getvalue())


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

    @property
    def method(self) -> str:
        return str(self.params.get("method", "unknown"))

    @property
    def name(self) -> str:
        return self.path.name

    def load_images(self, data_path=None):
        """The images of this run, in embedding order (re-read from ``params['data']``)."""
        from ..datasets import load_dataset

        spec = dict(self.params.get("data") or {})
        path = data_path or spec.pop("path", None)
        spec.pop("path", None)
        if path is None:
            raise MedcneError(f"{self.path}: params.json names no data; pass the data path explicitly")
        data = load_dataset(path, **spec)
        if len(data) != len(self.ids) or not np.array_equal(data.ids, self.ids):
            raise MedcneError(
                f"{self.path}: the images of {path} do not match the run's ids; pass the data the run was made from"
            )
        return data


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


def unfinished_message(path: Path) -> str:
    """Why ``path`` is not a finished run, and what to do, in one line."""
    staged = staging_path(path)
    if staged.is_dir():
        return (f"{path}: not a finished run: its replacement in {staged} was interrupted; "
                f"complete it with `medcne fit --resume {path}`, or run again with --overwrite")
    if (path / CHECKPOINT).is_file():
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
    if not path.is_dir():
        raise MedcneError(f"{path}: no such run folder; give a folder written by `medcne fit` or `medcne baseline`")
    if not (path / EMBEDDING).is_file() or (finished and not is_finished(path)):
        raise MedcneError(unfinished_message(path))
    params = read_json(path / PARAMS)
    metrics = read_json(path / METRICS)
    embedding, ids, labels, names = _read_embedding(path / EMBEDDING)
    bad = ~np.isfinite(embedding).all(axis=1)
    if bad.any():
        raise DivergedError(
            f"{path}: {int(bad.sum())} points of {EMBEDDING} are not finite (NaN or inf), e.g. id "
            f"{str(ids[bad][0])!r}: the run diverged; make it again (for t-SimCNE with a lower --lr)"
        )
    return Run(path, params, embedding, ids, labels, names, metrics)


def _read_embedding(path: Path):
    """The arrays of an ``embedding.npz``, checked against each other."""
    try:
        with np.load(path, allow_pickle=False) as z:
            embedding = np.asarray(z["embedding"])
            ids = z["ids"].astype(str)
            labels = z["labels"] if "labels" in z.files else None
            names = [str(c) for c in z["class_names"]] if "class_names" in z.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise MedcneError(
            f"{path}: damaged, cannot be read ({type(exc).__name__}: {exc}); make the run again"
        ) from None
    n = len(embedding) if embedding.ndim else 0
    problem = None
    if embedding.ndim != 2 or embedding.dtype.kind not in "fiu":
        problem = f"embedding has shape {embedding.shape} and type {embedding.dtype}, not N x d numbers"
    elif ids.shape != (n,):
        problem = f"{len(ids)} ids for {n} points"
    elif labels is not None and (labels.shape != (n,) or labels.dtype.kind not in "iu" or names is None
                                 or (n and (labels.min() < 0 or labels.max() >= len(names)))):
        problem = "labels do not match the points or the class names"
    if problem:
        raise MedcneError(f"{path}: damaged ({problem}); make the run again")
    return embedding, ids, labels, names
