"""The run folder contract (DESIGN.md section 2) and atomic writes.

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
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MedcneError


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``, so no reader sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes 0600 files; give the result the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_npz(path, **arrays) -> Path:
    # np.savez appends .npz to names without it; write through a file handle instead.
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return atomic_write(path, write)


def write_embedding(run, embedding: np.ndarray, ids, labels=None, class_names=None) -> None:
    """Write ``embedding.npz`` and ``embedding.csv`` (x, y[, z...], label, id)."""
    save_embedding_file(Path(run) / "embedding.npz", embedding, ids, labels, class_names)
    save_embedding_file(Path(run) / "embedding.csv", embedding, ids, labels, class_names)


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
        from .datasets import load_dataset

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


def read_run(path) -> Run:
    """Read a run folder; fails with one clear line when it is not one."""
    path = Path(path)
    emb = path / "embedding.npz"
    if not path.is_dir():
        raise MedcneError(f"{path}: no such run folder; give a folder written by `medcne fit` or `medcne baseline`")
    if not emb.exists():
        raise MedcneError(f"{path}: not a finished run (no embedding.npz); run `medcne fit --resume {path}` or pick another folder")
    params_file = path / "params.json"
    params = json.loads(params_file.read_text()) if params_file.exists() else {}
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    with np.load(emb, allow_pickle=False) as z:
        labels = z["labels"] if "labels" in z.files else None
        names = [str(c) for c in z["class_names"]] if "class_names" in z.files else None
        return Run(path, params, z["embedding"], z["ids"].astype(str), labels, names, metrics)
