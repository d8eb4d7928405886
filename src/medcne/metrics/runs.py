"""Metrics of a run folder: what ``medcne evaluate`` computes and writes to ``metrics.json``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import MedcneError, MissingColumnError
from ..runfolder import Run
from .knn import knn_accuracy, knn_accuracy_splits, neighbour_preservation
from .silhouette import silhouette

# Pixels above this many float32 bytes are not loaded for neighbourhood
# preservation (PCam: 327,680 x 27,648 values would be 36 GB).
MAX_PIXEL_BYTES = 4 << 30


def read_label_csv(path) -> dict[str, str]:
    """Labels by image id from a CSV with columns ``id`` and ``label`` or ``new_label``.

    The viewer's annotation export (``id, x, y, old_label, new_label``) works
    as is: rows with an empty ``new_label`` (points only selected) are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise MedcneError(f"--labels {path}: no such file; give a CSV with columns id,label")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        column = "label" if "label" in columns else "new_label" if "new_label" in columns else None
        if "id" not in columns or column is None:
            raise MissingColumnError(
                f"{path}: needs columns 'id' and 'label' (or 'new_label'); found {', '.join(columns) or 'none'}"
            )
        return {row["id"]: row[column].strip() for row in reader if (row[column] or "").strip()}


def run_labels(run: Run, overrides: dict[str, str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Class names per point (``""`` for none): the run's labels, replaced where ``overrides`` name the id."""
    names = np.full(len(run.ids), "", dtype=object)
    if run.labels is not None:
        names[:] = np.asarray(run.class_names, dtype=object)[run.labels]
    notes = []
    if overrides:
        index = {i: n for n, i in enumerate(run.ids)}
        unknown = [i for i in overrides if i not in index]
        if len(unknown) == len(overrides):
            raise MedcneError(
                f"{run.path}: none of the ids of the labels CSV belong to this run (e.g. {unknown[0]!r}); "
                "give the CSV exported from this run's map"
            )
        for i, label in overrides.items():
            if i in index:
                names[index[i]] = label
        changed = sum(1 for i in overrides if i in index)
        notes.append(f"{changed} labels from the CSV" + (f", {len(unknown)} unknown ids ignored" if unknown else ""))
    return names.astype(str), notes


def evaluate_run(
    run: Run,
    overrides: dict[str, str] | None = None,
    k: int = 15,
    n_splits: int = 5,
    preservation: bool = True,
    n_queries: int | None = 5000,
    data_path=None,
) -> dict:
    """kNN accuracy (one split and the mean of ``n_splits``), silhouette and neighbourhood preservation.

    Parameters
    ----------
    run : Run
        A run folder read by :func:`medcne.runfolder.read_run`.
    overrides : dict, optional
        Labels by id replacing the run's (see :func:`read_label_csv`).
    k : int
        Neighbours of the kNN classifier and of neighbourhood preservation.
    n_splits : int
        Splits averaged for ``knn_accuracy_mean``.
    preservation : bool
        Compute neighbourhood preservation against the run's pixels.
    n_queries : int, optional
        Points scored for neighbourhood preservation (``None``: all).
    data_path : str, optional
        The run's data when it moved since the run was made.

    Returns
    -------
    dict
        JSON-ready metrics; ``notes`` lists what was skipped and why.
    """
    Z = np.asarray(run.embedding, dtype=np.float64)
    names, notes = run_labels(run, overrides)
    keep = names != ""
    out: dict = {"n_points": int(len(Z)), "k": int(k)}
    if keep.sum() < len(Z):
        notes.append(f"{int((~keep).sum())} unlabeled points left out of kNN accuracy and silhouette")
    if len(np.unique(names[keep])) >= 2:
        accs = knn_accuracy_splits(Z[keep], names[keep], k=k, n_splits=n_splits)
        out.update(
            knn_accuracy=float(knn_accuracy(Z[keep], names[keep], k=k)),
            knn_accuracy_mean=float(accs.mean()),
            knn_accuracy_std=float(accs.std()),
            knn_splits=int(n_splits),
            silhouette=silhouette(Z[keep], names[keep]),
            n_labeled=int(keep.sum()),
        )
    else:
        notes.append("kNN accuracy and silhouette skipped: fewer than two classes are labeled")
    if preservation:
        try:
            data = run.load_images(data_path)
            n, shape = len(data), data.image_shape
            if n * int(np.prod(shape)) * 4 > MAX_PIXEL_BYTES:
                raise MedcneError(f"{n:,} images of {shape} do not fit the {MAX_PIXEL_BYTES >> 30} GB budget")
            pixels = data.to_numpy().reshape(n, -1).astype(np.float32) / 255.0
            out["neighbour_preservation"] = neighbour_preservation(pixels, Z, k=k, n_queries=n_queries)
            out["neighbour_preservation_space"] = "pixels"
            out["neighbour_preservation_queries"] = int(min(n_queries or n, n))
        except (MedcneError, FileNotFoundError) as exc:
            notes.append(f"neighbourhood preservation skipped: {exc}")
    out["notes"] = notes
    return out
