"""The run folder (DESIGN.md section 2): its files, and reading and writing them.

A run folder holds ``params.json``, ``embedding.npz`` / ``embedding.csv``,
``metrics.json``, ``map.png`` and, for trained runs, ``history.csv``,
``model.pt`` and ``checkpoint.pt``. Everything downstream (evaluate, plot,
viewer) reads these files and never retrains.

``params.json`` always has ``"method"`` (e.g. ``"tsimcne"``, ``"tsne-pixels"``)
and ``"data"``: the keyword arguments of :func:`medcne.datasets.load_dataset`
plus ``"path"`` (absolute), so the images of a run can be read again.

``embedding.npz`` holds ``embedding`` (float32, N x d), ``ids`` (str, N) and,
when labeled, ``labels`` (int64, N) and ``class_names`` (str, C).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedcneError
from ..io import save_npz, write_text

PARAMS = "params.json"
HISTORY = "history.csv"
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
EMBEDDING = "embedding.npz"
EMBEDDING_CSV = "embedding.csv"
METRICS = "metrics.json"
MAP = "map.png"
# Every file a run may hold: what `fit --overwrite` replaces and nothing else.
RUN_FILES = (PARAMS, HISTORY, MODEL, CHECKPOINT, EMBEDDING, EMBEDDING_CSV, METRICS, MAP)
HISTORY_COLUMNS = ("stage", "epoch", "loss", "lr", "views_per_s", "knn")


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
    """A JSON file of a run, or ``{}`` when it does not exist."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def read_run(path) -> Run:
    """Read a run folder; fails with one clear line when it is not one."""
    path = Path(path)
    emb = path / EMBEDDING
    if not path.is_dir():
        raise MedcneError(f"{path}: no such run folder; give a folder written by `medcne fit` or `medcne baseline`")
    if not emb.exists():
        raise MedcneError(f"{path}: not a finished run (no {EMBEDDING}); run `medcne fit --resume {path}` or pick another folder")
    params = read_json(path / PARAMS)
    metrics = read_json(path / METRICS)
    with np.load(emb, allow_pickle=False) as z:
        labels = z["labels"] if "labels" in z.files else None
        names = [str(c) for c in z["class_names"]] if "class_names" in z.files else None
        return Run(path, params, z["embedding"], z["ids"].astype(str), labels, names, metrics)
