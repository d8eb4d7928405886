"""Curation of a run folder: ``qc.csv`` (``medcne qc``) and propagated labels (``medcne propagate``).

Which space the detectors see (``space``):

- ``features`` (the default for t-SimCNE runs, which have ``model.pt``): the
  backbone features h of the run's model on its images, each row scaled to
  unit length. They are the richest view of an image the run has (512-D at
  width 64; the 2-D map squeezes them), trained on this very dataset with
  augmentations, so that an image and a shifted, rotated or re-compressed copy
  of it land close, and images of one kind of cell share neighbours.
  Unit length, because contrastive features are compared by angle.
- ``pixels``: the images as vectors in [0, 1] (PCA to 50 dimensions above
  2,500 values, as the pixel baselines do), Euclidean: the default for the
  pixel baselines (t-SNE / UMAP of pixels), whose map is a squeezed copy of
  these: on the planted problems of bench/qc.py the pixels found label errors
  and propagated labels better than their t-SNE map.
- ``map``: the run's 2-D (or 3-D) embedding, Euclidean: the default for the
  other baselines, which keep no model (t-SNE of ResNet or SimCLR features);
  it is also what the viewer shows.

The data are re-read from ``params.json`` (or ``data_path``) for features and
pixels (and by ``qc`` for its image checks in any space), and must be the
images the run was made from (same ids).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..curate.neighbours import auto_method
from ..curate.qc import INDEX_BYTES, NEIGHBOUR_BYTES, THUMB_BYTES
from ..datasets.imageset import known_labels
from ..datasets.memory import check_memory
from ..defaults import BASELINE_PARTS, KNN_K, UNLABELLED
from ..embedfile import prov_names, read_provenance
from ..errors import MedcneError
from ..io import csv_text, write_text
from .evaluate import as_class_names, read_label_csv, suggestions_note, unknown_ids_note
from .folder import EMBEDDING, MODEL, PROPAGATED, QC, Run, writing_into
from .outputs import claim_files, lock, remember, written_by_medcne
from .staging import add_to_run

QC_FILE = QC
PROPAGATED_FILE = PROPAGATED
QC_COLUMNS = (
    "id", "label", "label_issue_score", "suggested_label", "likely_label_error", "duplicate_id",
    "duplicate_distance", "likely_duplicate", "outlier_score", "likely_outlier",
)
PROPAGATED_COLUMNS = ("id", "label", "confidence", "annotated")
SPACES = ("auto", "features", "map", "pixels")
PIXEL_METHODS = tuple(m for m, (kind, _) in BASELINE_PARTS.items() if kind == "pixels")  # maps of the pixels themselves


def resolve_space(run: Run, space: str = "auto") -> str:
    """``auto`` -> ``features`` when the run has a model, ``pixels`` for a pixel baseline, else ``map``."""
    if space not in SPACES:
        raise MedcneError(f"`space` must be one of {', '.join(map(repr, SPACES))}; got {space!r}")
    has_model = (run.path / MODEL).exists()
    if space == "auto":
        return "features" if has_model else "pixels" if run.method in PIXEL_METHODS else "map"
    if space == "features" and not has_model:
        raise MedcneError(
            f"{run.path}: no {MODEL} (a {run.method} run keeps no model), so no features; use `space` map or pixels"
        )
    return space


def run_points(run: Run, space: str = "auto", data=None, data_path=None, device="auto") -> tuple[np.ndarray, str]:
    """The run's images as points of ``space`` (see the module's docstring), in embedding order.

    Returns
    -------
    X : ndarray (N, D) float32
    space : str
        The space resolved from ``auto``.
    """
    space = resolve_space(run, space)
    if space == "map":
        return np.asarray(run.embedding, dtype=np.float32), space
    data = run.check_images(data) if data is not None else run.load_images(data_path)
    if space == "pixels":
        from ..baselines.tsne import pixel_features

        return pixel_features(data)[0], space
    from ..estimator import TSimCNE

    H = np.asarray(TSimCNE.load(run.path / MODEL, device=device).features(data), dtype=np.float32)
    H /= np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)  # in place: one (N, D) array, not two
    return H, space


def qc_run(run: Run, space: str = "auto", k: int = KNN_K, data=None, data_path=None, device="auto"):
    """Score every image of a run and write ``qc.csv`` in the run folder (atomically).

    The detectors (:func:`medcne.curate.quality_control`) see the run's images
    as points of ``space`` and, in every space, the images' thumbnails and
    sharpness (:func:`medcne.curate.image_checks`), so the images are read
    for every space.

    Parameters
    ----------
    run : Run
    space : {'auto', 'features', 'map', 'pixels'}
    k : int
        Neighbours per image.
    data : ImageSet, optional
        The run's images when the caller holds them.
    data_path : str, optional
        The run's data when it moved since the run was made.
    device : str
        Where features and neighbours are computed.

    Returns
    -------
    path : Path
        The ``qc.csv`` written.
    result : QCResult
    space : str
        The space used.
    """
    from ..curate import image_checks, nearest_neighbours, quality_control
    from ..curate.qc import check_enough_images

    if int(k) < 1:
        raise MedcneError(f"`k` must be at least 1; got {k}")
    resolve_space(run, space)  # a wrong space fails before the images are read
    data = run.check_images(data) if data is not None else run.load_images(data_path)
    X, space = run_points(run, space, data, data_path, device)
    check_enough_images(len(X))
    check_qc_memory(X, min(int(k), len(X) - 1), str(run.path))
    # The search first, and the points let go before the thumbnails are made: at millions of images
    # the points, the search's index and the thumbnails are each about a gigabyte.
    nb = nearest_neighbours(X, min(int(k), len(X) - 1), device=device)
    del X
    n_classes = len(run.class_names) if run.class_names else None
    # Images of the class `unlabelled` have no label: none is checked, and none is suggested.
    labels = known_labels(run.labels, run.class_names)
    result = quality_control(None, labels, checks=image_checks(data.images), n_classes=n_classes, neighbours=nb)
    return write_qc(run, result), result, space


def check_qc_memory(X: np.ndarray, k: int, where: str) -> None:
    """Refuse, before the neighbour search, a quality control whose search and thumbnails cannot fit
    beside the points ``X`` (N, D) already held: the index's copy of the points and its graph, the
    neighbours, then the thumbnails (bench/RESULTS.md measured 1.31 KB per image at D = 128)."""
    n, d = X.shape
    need = n * (4 * d + INDEX_BYTES + NEIGHBOUR_BYTES * int(k) + THUMB_BYTES)
    check_memory(need, where, f"quality control of {n:,} images ({d}-D points: the search's index, "
                 f"{k} neighbours each, then thumbnails)", "give it more memory, or use `space` map (2-D points)")


def write_qc(run: Run, result) -> Path:
    """``qc.csv``: one row per image in embedding order, columns :data:`QC_COLUMNS`."""
    names = run.class_names or []
    labels = run.labels if run.labels is not None else np.full(len(run.ids), -1)

    def name(i) -> str:
        return names[int(i)] if 0 <= int(i) < len(names) else ""

    def row(i: int) -> list:
        score = result.label_issue_score[i]
        return [
            run.ids[i], name(labels[i]), "" if np.isnan(score) else f"{score:.6g}", name(result.suggested_label[i]),
            int(result.likely_label_error[i]), run.ids[result.duplicate_index[i]],
            f"{result.duplicate_distance[i]:.6g}", int(result.likely_duplicate[i]),
            f"{result.outlier_score[i]:.6g}", int(result.likely_outlier[i]),
        ]

    prov = run_provenance(run)
    rows = ([*row(i), *(c[i] for c in prov.values())] for i in range(len(run.ids)))
    return write_run_output(run, QC_FILE, csv_text([*QC_COLUMNS, *prov_names(prov, QC_COLUMNS)], rows, "\n"))


def annotation_codes(run: Run, labels_csv) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Class index per image from an annotation CSV (-1: not annotated), the class names, the
    annotated ids that are not images of the run, and the ids of the viewer's suggestions (both left out).

    Only labels a person gave are annotations: the viewer's export marks its own nearest-neighbour
    suggestions ``source=suggested``, and propagation makes its own, with confidences. Names the
    run already has keep their order; new names follow in order of appearance.
    """
    suggested: list[str] = []
    found = read_label_csv(labels_csv, skipped=suggested, option="labels_csv")  # the viewer's suggestions left out
    index = {i: n for n, i in enumerate(run.ids)}
    unknown = [i for i in found if i not in index]
    if len(unknown) == len(found):
        raise MedcneError(f"{labels_csv}: none of its ids belong to run {run.path} (e.g. {unknown[0]!r}); "
                          "give annotations exported from this run's map")
    # An annotation `unlabelled` says the image has no label (as evaluate reads it): it is no seed.
    known = {index[i]: name for i, name in as_class_names(found, run.class_names or []).items()
             if i in index and name != UNLABELLED}
    names = [c for c in (run.class_names or []) if c in set(known.values())]
    names += [c for c in dict.fromkeys(known.values()) if c not in names]
    codes = np.full(len(run.ids), -1, dtype=np.int64)
    for n, name in known.items():
        codes[n] = names.index(name)
    return codes, names, unknown, suggested


def propagate_run(run: Run, labels_csv, out=None, *, space: str = "auto", method: str = "spreading",
                  k: int = KNN_K, data_path=None, device="auto", overwrite: bool = False) -> tuple[Path, dict]:
    """Labels for every image of a run from the annotated ones; writes a CSV ``id,label,confidence,annotated``.

    Parameters
    ----------
    run : Run
    labels_csv : str or Path
        Annotations: columns ``id`` and ``label`` or ``new_label`` (the viewer's export).
    out : str or Path, optional
        Output CSV (default ``propagated.csv`` in the run folder); an existing
        file needs ``overwrite``, and the annotations are never overwritten.
    space, method, k, data_path, device
        As for :func:`qc_run` and :func:`medcne.curate.propagate_labels`.

    Returns
    -------
    path : Path
    summary : dict
        ``annotated``, ``classes``, ``images``, ``mean_confidence``, ``space``,
        ``unknown_ids`` (annotated ids not in the run), ``suggested_ids`` (the viewer's
        suggestions, not hand labels: both left out), ``notes`` (one line on each, as
        ``evaluate`` words them), and ``agreement`` (% of the other labeled images whose run label the
        propagation gives) when the run has labels.
    """
    out = Path(out) if out is not None else run.path / PROPAGATED_FILE
    if Path(labels_csv).exists() and out.resolve() == Path(labels_csv).resolve():
        raise MedcneError(f"`out` {out} is the annotations file itself; choose another output path")
    # Writing into the run folder: also hold the run's lock, so that no replacement of the run runs meanwhile.
    in_run = out.parent.resolve() == run.path.resolve()
    with writing_into(run) if in_run else nullcontext(), \
            claim_files(out, overwrite, inputs=[labels_csv, data_path], runs=[run.path], derived=PROPAGATED_FILE):
        if out.suffix.lower() != ".csv":  # after the rule's checks: an input named is said as such
            raise MedcneError(f"`out` {out} must end in .csv: propagate writes a CSV table (id, label, confidence...)")
        path, summary = _propagate(run, labels_csv, out, space, method, k, data_path, device)
    summary["notes"] = []  # what the annotations gave that was left out, in evaluate's words
    if summary["suggested_ids"]:
        summary["notes"].append(suggestions_note(summary["suggested_ids"]))
    if summary["unknown_ids"]:
        summary["notes"].append(unknown_ids_note(summary["unknown_ids"]))
    if path.parent.resolve() == run.path.resolve():
        add_to_run(run.path, path.name)
    return path, summary


def run_provenance(run: Run) -> dict[str, np.ndarray]:
    """Where each image of ``run`` came from (slide, x, y / series, slice...), as in its embedding.npz."""
    path = run.path / EMBEDDING
    return read_provenance(path, len(run.ids)) if path.is_file() else {}


def write_run_output(run: Run, name: str, text: str) -> Path:
    """Write ``name`` (``qc.csv``) into the run folder, recorded as medcne's; it replaces a file of
    that name only while that file is exactly what medcne wrote (a file the user made or edited is
    never replaced)."""
    path = run.path / name
    with writing_into(run), lock(path):
        if (path.exists() or path.is_symlink()) and not written_by_medcne(path):
            raise MedcneError(f"{path}: exists and was not written by medcne (or was changed since), so it is "
                              "never replaced; move it away, then run again")
        write_text(path, text)
        remember([path])
    add_to_run(run.path, name)
    return path


def _propagate(run: Run, labels_csv, out: Path, space, method, k, data_path, device) -> tuple[Path, dict]:
    from ..curate import propagate_labels

    codes, names, unknown, suggested = annotation_codes(run, labels_csv)
    X, space = run_points(run, space, None, data_path, device)
    pred, conf = propagate_labels(X, codes, method=method, k=k, device=device)
    prov = run_provenance(run)
    rows = ([run.ids[i], names[pred[i]], f"{conf[i]:.4f}", int(codes[i] >= 0), *(c[i] for c in prov.values())]
            for i in range(len(run.ids)))
    # A provenance column named `source` is written prov_source: read back, `source` says who gave a label.
    taken = (*PROPAGATED_COLUMNS, "source")
    path = write_text(out, csv_text([*PROPAGATED_COLUMNS, *prov_names(prov, taken)], rows, "\n"))
    summary = {"annotated": int((codes >= 0).sum()), "classes": len(set(codes[codes >= 0].tolist())),
               "images": len(run.ids), "mean_confidence": float(conf[codes < 0].mean()) if (codes < 0).any() else 1.0,
               "space": space,
               "neighbours": auto_method(len(X) if method == "spreading" else int((codes >= 0).sum()), device),
               "unknown_ids": unknown, "suggested_ids": suggested}
    truth = known_labels(run.labels, run.class_names) if run.class_names else None
    check = (codes < 0) & (truth >= 0) if truth is not None else None
    if check is not None and check.any():
        truth = np.asarray(run.class_names, dtype=object)[truth[check]]
        summary["agreement"] = 100.0 * float(np.mean(np.asarray(names, dtype=object)[pred[check]] == truth))
        summary["agreement_of"] = int(check.sum())  # the images not annotated that the run labels
    return path, summary
