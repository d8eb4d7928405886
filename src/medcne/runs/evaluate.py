"""Evaluation of a run folder: the only writer of ``metrics.json``.

One schema for every run (t-SimCNE or baseline): ``n_points``, ``k``,
``knn_accuracy`` (one stratified 9:1 split, seed 0), ``knn_accuracy_mean`` /
``knn_accuracy_std`` over ``knn_splits`` splits, ``silhouette``, ``n_labeled``,
``neighbour_preservation`` (with its space and number of queries) and
``notes``; plus ``seconds`` (time to make the map) where the writer knew it.

Labels are the run's integer class indices everywhere (labels from a CSV are
mapped onto them, new names appended), so that the stratified kNN split of a
run is the same whichever command computes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets.imageset import class_count, known_labels, label_problem
from ..datasets.labels import (
    class_name_reader,
    map_labels,
    merge_rare_labels,
    read_labels_map,
    unused_note,
)
from ..datasets.memory import check_memory
from ..defaults import (
    KNN_K,
    KNN_SPLITS,
    PRESERVATION_QUERIES,
    SILHOUETTE_EXACT_MAX,
    chunk_rows,
)
from ..errors import MedcneError, MissingColumnError
from ..io import write_json
from ..metrics import knn_accuracy, knn_accuracy_splits, silhouette
from ..metrics.knn import (
    check_k,
    preservation_queries,
    preserved_share,
    too_few_for_knn,
    without_query,
)
from .folder import METRICS, Run, read_json, writing_into
from .table import read_table

# Pixels read at a time for neighbourhood preservation, in MB of float32 (the images are never held whole).
PRESERVATION_BLOCK_MB = 64
METRIC_KEYS = (
    "n_points", "k", "knn_accuracy", "knn_accuracy_mean", "knn_accuracy_std", "knn_splits", "silhouette",
    "n_labeled", "silhouette_sample", "neighbour_preservation", "neighbour_preservation_space", "neighbour_preservation_queries",
    "notes", "labels",
)


# Labels medcne guessed, not a person: the viewer's suggestions (its export's ``source``), and the rows of
# propagate's output that were not annotated (``annotated`` 0, read as the source "propagated").
GUESSED = ("suggested", "propagated")


def read_label_csv(path, skip_sources: tuple[str, ...] = GUESSED, skipped: list | None = None,
                   option: str = "labels") -> dict[str, str]:
    """Labels by image id from a CSV with columns ``id`` and ``label`` or ``new_label``.

    The viewer's annotation export (``id, x, y, old_label, new_label, source``)
    works as is: rows with an empty ``new_label`` (points only selected) are
    ignored. Two columns say who gave a label, and a row counts only when each
    of them present says a person did: ``source`` ``manual`` (the viewer's
    export) and ``annotated`` ``1`` (:func:`~medcne.runs.curate.propagate_run`'s
    output). Rows whose ``source`` is ``suggested`` (the viewer's suggestions,
    accepted or not: votes of the nearest labelled points on the map) or whose
    ``annotated`` is ``0`` (propagated along the same neighbourhoods) are left
    out, and their ids are added to ``skipped``: scoring a map against them
    scores it against itself, and propagation makes its own. Any other value
    in those columns (empty, ``other``, ``yes``, ``2``...) is refused, naming
    the file, line and column, rather than guessed. A file with neither column
    keeps every row. An id given two different labels is refused, naming both
    and their lines, and so is a file with no label left. ``skip_sources``:
    the ``source`` values left out. ``option``: the parameter that named the
    file, for messages. Labels are given as written (:func:`as_class_names`
    reads them as a run's class names); two labels of one id that differ only
    in the spaces around them are the same.
    """
    columns, rows = read_table(path, option)
    column = "label" if "label" in columns else "new_label" if "new_label" in columns else None
    if "id" not in columns or column is None:
        raise MissingColumnError(
            f"{path}: needs columns 'id' and 'label' (or 'new_label'); found {', '.join(columns) or 'none'}"
        )
    found: dict[str, str] = {}
    row_of: dict[str, int] = {}
    left_out: list[str] = []
    for n, row in enumerate(rows):
        i, label = row["id"], row[column]
        if not label.strip():
            continue
        if _guessed(path, row, n, skip_sources):
            left_out.append(i)
            continue
        if found.setdefault(i, label).strip() != label.strip():
            _conflict(path, i, (found[i], row_of[i]), (label, n))
        row_of.setdefault(i, n)
    if not found:
        raise MedcneError(f"{path}: " + (
            f"no hand-labelled rows ({len(left_out)} labels medcne guessed, which are not annotations; "
            "label some images in the viewer)" if left_out else "no annotated rows (every label is empty)"))
    if skipped is not None:
        skipped += left_out
    return found


# Who gave a row's label, by the column that says so and its value: the viewer's export writes ``source``,
# propagate's output ``annotated`` (0: the label was spread from the annotated rows).
MARKERS = {"source": {"manual": "manual", "suggested": "suggested"},
           "annotated": {"1": "manual", "0": "propagated"}}
MARKER_MEANING = {"source": "'manual' (a label you gave) or 'suggested' (the viewer's suggestion)",
                  "annotated": "1 (a label you gave) or 0 (a label propagate spread)"}


def on_other_labels(metrics: dict) -> bool:
    """Whether ``metrics`` (a metrics.json) were scored on other labels than the run's own (``evaluate``
    with ``labels``, ``labels_map`` or ``merge_rare`` records them): not comparable with runs scored on
    their own."""
    return isinstance(metrics.get("labels"), dict)


def as_class_names(labels: dict[str, str], names) -> dict[str, str]:
    """``labels`` (by id, as a CSV wrote them) as class names of ``names`` (:func:`class_name_reader`)."""
    named = class_name_reader(names)
    return {i: named(label) for i, label in labels.items()}


def _guessed(path, row: dict, n: int, skip_sources: tuple[str, ...]) -> bool:
    """Whether row ``n`` holds a label medcne guessed: its ``source`` is one of ``skip_sources``, or its
    ``annotated`` is 0 (read as the source "propagated"). A value of those columns that does not say who
    gave the label is refused, naming the line and column."""
    givers = []
    for column, known in MARKERS.items():
        if column not in row:
            continue
        value = (row[column] or "").strip()
        giver = value if column == "source" and value in skip_sources else known.get(value)
        if giver is None:
            shown = f"{value!r}" if value else "empty"
            raise MedcneError(
                f"{path}: line {_line(path, n)}: {column} is {shown}, which does not say who gave the label; "
                f"write {MARKER_MEANING[column]}, or leave the row's label empty to skip it (a column of "
                f"another meaning: rename it)"
            )
        givers.append(giver)
    return any(g in skip_sources for g in givers)


def _line(path, n: int) -> int:
    """The line number of row ``n`` (0: the first after the header) of the CSV file ``path``."""
    from ..datasets.csvfile import read_table as read_cells

    return [line for line, _ in read_cells(Path(path))[1]][n]  # read again, for line numbers: an error path


def suggestions_note(skipped) -> str:
    """The note on the guessed labels that :func:`read_label_csv` left out (``skipped``: their ids)."""
    return (f"{len(skipped)} labels medcne guessed (the viewer's suggestions, or propagated rows with "
            "annotated 0) were left out: only labels a person gave count; to keep some, select those images "
            "in the viewer and label them")


def unknown_ids_note(unknown) -> str:
    """The note on labelled ids that are not images of the run (``unknown``: those ids, at least one)."""
    return f"{len(unknown)} unknown ids ignored (not images of this run, e.g. {unknown[0]!r})"


def _conflict(path, id_: str, first: tuple[str, int], second: tuple[str, int]):
    """Refuse an id labelled twice differently, naming both labels and their lines (``first``/``second``:
    (label, row index))."""
    raise MedcneError(
        f"{path}: id {id_!r} has two labels, {first[0]!r} (line {_line(path, first[1])}) and "
        f"{second[0]!r} (line {_line(path, second[1])}); keep one of them"
    )


def run_labels(run: Run, overrides: dict[str, str] | None = None, labels_map=None,
               merge_rare: int | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """Class index per point (-1: none, as for the class ``unlabelled``), the class names, and notes.

    The run's own labels, replaced where ``overrides`` (labels by id) name the
    point; a name that is not one of the run's classes becomes a new class
    after them. Then the label recipes of ``load_dataset``: ``labels_map`` (a
    dict or a CSV of old,new class names) and ``merge_rare`` (classes of fewer
    images merged into one).
    """
    codes, names, notes = _override_labels(run, overrides)
    keep = codes >= 0
    if labels_map is not None:
        mapping = labels_map if isinstance(labels_map, dict) else read_labels_map(labels_map)
        codes[keep], new_names = map_labels(codes[keep], names, mapping)
        notes.append(f"labels mapped: {class_count(names)} classes -> {class_count(new_names)}")
        if unused := unused_note(mapping, names, of="this run"):
            notes.append(unused)
        names = new_names
    codes = known_labels(codes, names)  # the class `unlabelled`, the run's, given or mapped to: no label
    keep = codes >= 0
    if merge_rare is not None:
        codes[keep], names, rare = merge_rare_labels(codes[keep], names, merge_rare)
        if rare:
            notes.append(f"merged {len(rare)} classes with fewer than {merge_rare} images into {names[-1]!r}")
    return codes, names, notes


def _override_labels(run: Run, overrides: dict[str, str] | None) -> tuple[np.ndarray, list[str], list[str]]:
    codes = np.full(len(run.ids), -1, dtype=np.int64) if run.labels is None else run.labels.astype(np.int64, copy=True)
    names = list(run.class_names or [])
    notes: list[str] = []
    if overrides:
        overrides = as_class_names(overrides, names)
        index = {i: n for n, i in enumerate(run.ids)}
        unknown = [i for i in overrides if i not in index]
        if len(unknown) == len(overrides):
            raise MedcneError(
                f"{run.path}: none of the ids of the labels CSV belong to this run (e.g. {unknown[0]!r}); "
                "give the CSV exported from this run's map"
            )
        codes = codes.copy()
        for i, label in overrides.items():
            if i in index:
                if label not in names:
                    names.append(label)
                codes[index[i]] = names.index(label)
        changed = len(overrides) - len(unknown)
        notes.append(f"{changed} labels from the CSV" + (f", {unknown_ids_note(unknown)}" if unknown else ""))
    return codes, names, notes


def evaluate_run(
    run: Run,
    overrides: dict[str, str] | None = None,
    k: int = KNN_K,
    n_splits: int = KNN_SPLITS,
    preservation: bool = True,
    n_queries: int | None = PRESERVATION_QUERIES,
    data=None,
    data_path=None,
    labels_map=None,
    merge_rare: int | None = None,
) -> dict:
    """kNN accuracy (one split and the mean of ``n_splits``), silhouette and neighbourhood preservation.

    Parameters
    ----------
    run : Run
        A run folder read by :func:`medcne.runs.read_run`.
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
    data : ImageSet, optional
        The run's images when the caller holds them (else they are re-read).
    data_path : str, optional
        The run's data when it moved since the run was made.
    labels_map, merge_rare : optional
        Label recipes applied to the run's labels (see :func:`run_labels`).

    Returns
    -------
    dict
        JSON-ready metrics; ``notes`` lists what was skipped and why.
    """
    if n_queries is not None and (isinstance(n_queries, bool) or not isinstance(n_queries, (int, np.integer))
                                  or n_queries < 1):  # -1 was an internal error, 1.5 was taken
        raise MedcneError(f"`n_queries` must be a positive integer, or None for every image in Python "
                          f"(0 for every image on the command line); got {n_queries!r}")
    Z = np.asarray(run.embedding, dtype=np.float64)
    codes, names, notes = run_labels(run, overrides, labels_map, merge_rare)
    keep = codes >= 0
    out: dict = {"n_points": int(len(Z)), "k": int(k)}
    if overrides or labels_map is not None or merge_rare is not None:
        # Scored on other labels than the run's own: said in metrics.json, so that compare can tell.
        out["labels"] = {"classes": class_count(names), "changed": list(notes)}
    if keep.sum() < len(Z):
        notes.append(f"{int((~keep).sum())} unlabeled points left out of kNN accuracy and silhouette")
    problem = label_problem(codes[keep])
    if problem is None:
        if few := too_few_for_knn(codes[keep], k):
            notes.append(f"kNN accuracy skipped: k={few}")
        else:
            accs = knn_accuracy_splits(Z[keep], codes[keep], k=k, n_splits=n_splits)
            out.update(knn_accuracy=float(knn_accuracy(Z[keep], codes[keep], k=k)),
                       knn_accuracy_mean=float(accs.mean()), knn_accuracy_std=float(accs.std()),
                       knn_splits=int(n_splits))
        out.update(silhouette=_silhouette(Z[keep], codes[keep], out, notes), n_labeled=int(keep.sum()))
    else:
        notes.append(f"kNN accuracy and silhouette skipped: {problem}")
    if preservation and len(Z) <= k:  # said plainly: the check's own words name `k`, an option baseline lacks
        notes.append(f"neighbourhood preservation skipped: it needs more than k={k} images; got {len(Z)}")
    elif preservation:
        try:
            data = run.check_images(data) if data is not None else run.load_images(data_path)
        except (MedcneError, FileNotFoundError) as exc:
            if data_path is not None:
                raise  # the data given on purpose are not the run's: said, and nothing is written
            kept = _kept_preservation(run, k, out) if data is None else None  # the run's own data, moved
            notes.append(kept or f"neighbourhood preservation skipped: {exc}")
        else:
            try:
                out["neighbour_preservation"] = pixel_preservation(data, Z, k, n_queries)
                out["neighbour_preservation_space"] = "pixels"
                out["neighbour_preservation_queries"] = len(preservation_queries(len(Z), n_queries))
            except (MedcneError, FileNotFoundError) as exc:
                notes.append(f"neighbourhood preservation skipped: {exc}")
    out["notes"] = notes
    return out


def _kept_preservation(run: Run, k: int, out: dict) -> str | None:
    """When the run's images cannot be read now, the score of its last evaluation at the same ``k``
    (of the same map and images) is kept in ``out``; the note that says so, or None."""
    earlier = run.metrics
    if "neighbour_preservation" not in earlier or earlier.get("k") != k:
        return None
    out.update({key: earlier[key] for key in METRIC_KEYS if key.startswith("neighbour_preservation") and key in earlier})
    return ("neighbourhood preservation kept from the last evaluation: the run's images cannot be read now "
            "(give the data where they moved to score it again)")


def pixel_preservation(data, Z: np.ndarray, k: int = KNN_K, n_queries: int | None = PRESERVATION_QUERIES,
                       block_mb: float = PRESERVATION_BLOCK_MB) -> float:
    """Neighbourhood preservation of the map ``Z`` against the images' pixels (in [0, 1]), exact for
    each scored point, reading the images block by block: the memory of one block, at any N.

    The same score as :func:`medcne.metrics.neighbour_preservation` of the flattened pixels.
    """
    from ..baselines.pca import pixel_rows
    from ..curate.neighbours import blocks_search_bytes, nearest_among_blocks

    if len(data) != len(Z):
        raise MedcneError(f"the run has {len(Z)} points but its data {len(data)} images; give the run's own data")
    check_k(k, len(Z))  # before the images are read
    queries, dim = preservation_queries(len(Z), n_queries), int(np.prod(data.image_shape))
    rows = chunk_rows(4 * dim, block_mb * 2**20)  # float32 pixels of block_mb
    check_memory(blocks_search_bytes(len(queries), dim, 4 * dim * min(rows, len(data))), str(data.source),
                 f"neighbourhood preservation of {len(queries):,} images (their pixels as float32, the search's "
                 "centred copy and blocks of the others)", "score fewer images (`n_queries`)")
    blocks = ((start, pixel_rows(images)) for start, images in data.iter_chunks(rows))
    high = nearest_among_blocks(pixel_rows(np.asarray(data.images[queries])), blocks, int(k) + 1).indices
    return preserved_share(without_query(high, queries, int(k)), Z, queries, int(k))


def _silhouette(Z: np.ndarray, codes: np.ndarray, out: dict, notes: list[str]) -> float:
    """Exact silhouette up to SILHOUETTE_EXACT_MAX points; above, that of a seeded random sample of
    that many (recorded as ``silhouette_sample`` and in the notes)."""
    if len(Z) <= SILHOUETTE_EXACT_MAX:
        return silhouette(Z, codes)
    pick = np.sort(np.random.default_rng(0).choice(len(Z), SILHOUETTE_EXACT_MAX, replace=False))
    out["silhouette_sample"] = SILHOUETTE_EXACT_MAX
    notes.append(f"silhouette of a random sample of {SILHOUETTE_EXACT_MAX:,} of the {len(Z):,} points (seed 0): "
                 "exact silhouette costs N^2 distances")
    return silhouette(Z[pick], codes[pick])


def write_metrics(run: Run, metrics: dict) -> Path:
    """Write ``metrics.json``: ``metrics`` over what the file held, old evaluation keys dropped.

    Keys that evaluation does not compute (e.g. ``seconds``) survive a
    re-evaluation; evaluation keys do not, so a metric skipped now does not
    linger from an earlier run.
    """
    with writing_into(run):
        kept = {key: v for key, v in read_json(run.path / METRICS).items() if key not in METRIC_KEYS}
        merged = {**kept, **metrics}
        write_json(run.path / METRICS, merged)
    run.metrics = merged
    return run.path / METRICS


def evaluate_and_write(run: Run, extra: dict | None = None, **options) -> dict:
    """:func:`evaluate_run` (``options``) then :func:`write_metrics` with ``extra`` keys
    (e.g. ``seconds``) beside the metrics; returns what was written."""
    metrics = evaluate_run(run, **options)
    write_metrics(run, {**(extra or {}), **metrics})
    return run.metrics


def format_metrics(name: str, m: dict) -> str:
    """One line per run for the terminal (and its notes)."""
    parts = []
    if "knn_accuracy" in m:
        parts.append(f"kNN accuracy {m['knn_accuracy']:.1f}% (mean of {m['knn_splits']} splits "
                     f"{m['knn_accuracy_mean']:.1f} ± {m['knn_accuracy_std']:.1f})")
        parts.append(f"silhouette {m['silhouette']:.3f}")
    if "neighbour_preservation" in m:
        parts.append(f"neighbourhood preservation {m['neighbour_preservation']:.3f} (k={m['k']}, pixels)")
    line = f"{name}: " + ", ".join(parts or ["no metrics"])
    return "\n".join([line, *(f"  note: {n}" for n in m.get("notes", []))])
