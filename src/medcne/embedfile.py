"""The embedding file: points with their ids, labels and provenance, as ``.npz`` and ``.csv``.

One format, written by every run (``embedding.npz`` / ``embedding.csv``) and
by ``medcne embed``; the run reader (:func:`medcne.runs.read_run`) checks its
arrays, curation and the viewer read its provenance columns:

- ``.npz``: ``embedding`` (float32, N x d), ``ids`` (str, N) and, when
  labeled, ``labels`` (int64, N) and ``class_names`` (str, C); each
  provenance column NAME (``ImageSet.provenance``: where each image came
  from, such as ``series`` and ``slice``) as the array ``prov_NAME`` (N).
- ``.csv``: the columns x, y[, z] (``dim0``... above three), label, id, then one
  per provenance column (``prov_NAME`` where NAME is already a column).

Every file is written whole or not at all (:mod:`medcne.io`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .datasets.npzfile import NpzArrays
from .errors import MedcneError
from .io import csv_text, csv_value, save_npz, write_text
from .runfiles import EMBEDDING, EMBEDDING_CSV

PREFIX = "prov_"  # provenance column NAME is the npz array prov_NAME


def write_embedding(run, embedding: np.ndarray, ids, labels=None, class_names=None, provenance=None) -> None:
    """Write a run's ``embedding.npz`` and ``embedding.csv``."""
    for name in (EMBEDDING, EMBEDDING_CSV):
        save_embedding_file(Path(run) / name, embedding, ids, labels, class_names, provenance)


def save_embedding_file(path, embedding, ids, labels=None, class_names=None, provenance=None,
                        placed_into=None) -> Path:
    """An embedding as ``.npz`` or ``.csv``, chosen by the file's extension. ``placed_into``: the run
    whose map the points were placed into (``medcne embed``), recorded in an ``.npz`` as the arrays
    ``placed_into`` (the run's folder) and ``map_digest`` (:func:`map_digest` of its map)."""
    path = Path(path)
    if path.suffix not in (".npz", ".csv"):
        raise MedcneError(f"{path}: output must end in .csv or .npz")
    embedding = np.asarray(embedding, dtype=np.float32)
    ids = np.asarray(ids).astype(str)
    provenance = {str(k): np.asarray(v) for k, v in (provenance or {}).items()}
    if path.suffix == ".csv":
        text = _csv(embedding, ids, labels, class_names, provenance)
        return write_text(path, text)
    arrays = {"embedding": embedding, "ids": ids}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
        arrays["class_names"] = np.asarray(class_names).astype(str)
    arrays.update({f"{PREFIX}{k}": (v.astype(str) if v.dtype.kind in "OU" else v) for k, v in provenance.items()})
    if placed_into is not None:
        arrays.update(placed_into=np.array(str(Path(placed_into.path).resolve())),
                      map_digest=np.array(map_digest(placed_into.embedding)))
    return save_npz(path, **arrays)


def map_digest(embedding) -> str:
    """A digest of a run's map (its points as float32): a file placed into that map records it, and
    one placed into another map, or into this run before it was made again, does not match."""
    points = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32))
    return hashlib.sha256(points.tobytes() + str(points.shape).encode()).hexdigest()[:16]


def _csv(embedding: np.ndarray, ids: np.ndarray, labels, class_names, provenance: dict) -> str:
    axes = ["x", "y", "z"][: embedding.shape[1]] if embedding.shape[1] <= 3 else [
        f"dim{i}" for i in range(embedding.shape[1])
    ]
    header = [*axes, "label", "id"]
    header += prov_names(provenance, header)
    columns = list(provenance.values())
    rows = ([*(f"{v:.6g}" for v in row), "" if labels is None else class_names[int(labels[i])], ids[i],
             *(c[i] for c in columns)] for i, row in enumerate(embedding))
    return csv_text(header, rows)


def prov_names(prov: dict, taken) -> list[str]:
    """CSV names of provenance columns written beside the ``taken`` columns (``prov_x`` where ``x`` is taken)."""
    return [f"{PREFIX}{k}" if k in taken else k for k in prov]


CORE = ("embedding", "ids", "labels", "class_names")  # the arrays every embedding.npz may hold

# The fix for a damaged embedding.npz: medcne wrote it, so it is made again, not saved or stored otherwise.
REMEDY = "make the run again"


def read_columns(npz_path, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The per-point arrays of ``embedding.npz`` beside its core ones, in one read: the provenance
    columns (``prov_<column>`` as ``{column: array}``) and the other numeric arrays of one number per
    point (``{name: float array}``, e.g. a score stored beside the map).

    A provenance array of another length or shape is refused with one line
    naming the file: it cannot be matched to the points. Another array that
    is not one number per point is left out. A damaged file (an object array,
    a corrupt member) is refused as :class:`~medcne.datasets.npzfile.NpzArrays`
    says, with :data:`REMEDY` as the fix.
    """
    prov, numeric = {}, {}
    with NpzArrays(npz_path, remedy=REMEDY) as npz:
        for name in npz.names:
            if name in CORE:
                continue
            a = npz.load(name)
            if name.startswith(PREFIX):
                if a.shape != (n,):
                    raise MedcneError(f"{npz_path}: {name} has shape {a.shape}, not one value per point ({n}); "
                                      f"{REMEDY}")
                prov[name[len(PREFIX):]] = a
            elif a.shape == (n,) and a.dtype.kind in "iuf":
                numeric[name] = a.astype(float)
    return prov, numeric


def read_provenance(npz_path, n: int) -> dict[str, np.ndarray]:
    """The provenance columns of ``embedding.npz`` (see :func:`read_columns`)."""
    return read_columns(npz_path, n)[0]


def read_placed(path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """The points of an embedding file (as ``medcne embed`` writes it, ``.csv`` or ``.npz``), the
    class name of each (None when it has no labels; ``''`` for a point without one) and the map they
    were placed into (``{'placed_into': folder, 'map_digest': ...}``; empty for a CSV or an older file)."""
    path = Path(path)
    if path.suffix not in (".npz", ".csv"):
        raise MedcneError(f"{path}: an embedding file ends in .csv or .npz (as `medcne embed` writes it)")
    if not path.is_file():
        raise MedcneError(f"{path}: no such file; give the .csv or .npz that `medcne embed` wrote")
    if path.suffix == ".npz":
        with NpzArrays(path, remedy="place the images again") as npz:
            if "embedding" not in npz.keys:
                raise MedcneError(f"{path}: holds no array named embedding; is it the output of `medcne embed`?")
            Z = np.asarray(npz.load("embedding"), dtype=float)
            names = None
            if "labels" in npz.keys and "class_names" in npz.keys:
                classes = np.append(npz.load("class_names").astype(str), "")
                codes = npz.load("labels").astype(np.int64)
                names = classes[np.where((codes >= 0) & (codes < len(classes) - 1), codes, -1)]
            record = {k: str(npz.load(k)) for k in ("placed_into", "map_digest") if k in npz.keys}
        return _checked_points(path, Z), names, record
    return (*_csv_points(path), {})


def _csv_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from .datasets.csvfile import read_table

    header, body = read_table(path)  # strict: UTF-8, one value per column, blank lines skipped
    header = [csv_value(c) for c in header]
    # The coordinates come before `label`, as embed writes them (a provenance column may be named z).
    first = header[: header.index("label")] if "label" in header else header
    axes = [c for c in ("x", "y", "z") if c in first] or [c for c in first if c.startswith("dim")]
    if len(axes) < 2:
        raise MedcneError(f"{path}: needs the columns x and y (as `medcne embed` writes them); found "
                          f"{', '.join(header) or 'none'}")
    cols = [header.index(c) for c in axes]
    Z = np.empty((len(body), len(axes)), dtype=float)
    for row, (line, cells) in enumerate(body):
        try:
            Z[row] = [float(cells[c]) for c in cols]
        except ValueError:
            raise MedcneError(f"{path}: line {line}: {', '.join(axes)} must be numbers; fix or remove the line") from None
    names = None
    if "label" in header:
        names = np.array([csv_value(cells[header.index("label")]) for _, cells in body], dtype=object)
    return _checked_points(path, Z), names if names is not None and any(names) else None


def _checked_points(path: Path, Z: np.ndarray) -> np.ndarray:
    if Z.ndim != 2:
        raise MedcneError(f"{path}: its array embedding has shape {Z.shape}, not one row of coordinates per image; "
                          "place the images again")
    if len(Z) == 0:
        raise MedcneError(f"{path}: holds no points; place some images with `medcne embed`")
    if not np.isfinite(Z).all():
        raise MedcneError(f"{path}: {int((~np.isfinite(Z).all(axis=1)).sum())} points are not finite; "
                          "place the images again")
    return Z
