"""Label recipes: rename or join classes by a CSV map, merge the rarest classes into one.

The paper's recipes: DermaMNIST as two classes (melanocytic nevi against all the
others: a map ``melanocytic nevi -> melanocytic nevi``, ``* -> other``) and
Leukemia with its 9 rarest classes merged into one (``merge_rare(data, 100)``:
every class with fewer than 100 images, leaving 7 classes).

A map file is a CSV with two columns, old class name and new class name; an
optional first row ``old,new`` is a header. The old name ``*`` stands for every
class the file does not name. Classes the file does not name keep their names.
Names in the file that are not classes of the data are left unused (noted), so
that one map serves data sets that lack some classes; a map none of whose
names is a class of the data is refused (it was meant for other data).
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import MedcneError, printable
from .csvfile import refuse_semicolons
from .files import MAX_LISTED
from .imageset import ImageSet

MERGED = "other (merged)"
WILDCARD = "*"


def class_name_reader(names):
    """A function that reads a label (as a CSV or a file wrote it) as a class name of ``names``: a label
    that is one of them as written stays; any other is read without the spaces around it, which may name
    a class whose own name has spaces around it (a folder named `` basophil``), when only one class does
    (several: a one-line error); else it is a new class, that text."""
    names = list(names)
    spaced: dict[str, list[str]] = {}
    for name in names:
        if name.strip() != name:
            spaced.setdefault(name.strip(), []).append(name)

    def named(label: str) -> str:
        if label in names:
            return label
        text = label.strip()
        if text in names or text not in spaced:
            return text
        if len(spaced[text]) > 1:
            raise MedcneError(f"the label {text!r} could be any of the classes "
                              f"{', '.join(map(repr, spaced[text]))}; write the class's name exactly")
        return spaced[text][0]

    return named


def read_labels_map(path) -> dict[str, str]:
    """The ``old -> new`` class names of a two-column CSV (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MedcneError(f"`labels_map` {path}: no such file; give a CSV with two columns: old,new class name")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [[c.strip() for c in row] for row in csv.reader(fh) if any(c.strip() for c in row)]
    if rows and len(rows[0]) == 1:
        refuse_semicolons(path, rows[0][0])
    if rows and [c.lower() for c in rows[0]] == ["old", "new"]:
        rows = rows[1:]
    mapping: dict[str, str] = {}
    for line, row in enumerate(rows, start=1):
        if len(row) != 2 or not row[0] or not row[1]:
            raise MedcneError(f"{path}: row {line} must be two non-empty names (old,new); got {','.join(row)!r}")
        if mapping.get(row[0], row[1]) != row[1]:
            raise MedcneError(f"{path}: class {row[0]!r} is mapped twice ({mapping[row[0]]!r} and {row[1]!r})")
        mapping[row[0]] = row[1]
    if not mapping:
        raise MedcneError(f"{path}: no rows; give one old,new class name pair per row")
    return mapping


def unknown_classes(mapping: dict[str, str], class_names: list[str]) -> list[str]:
    """The old names of ``mapping`` (``*`` aside) that are not among ``class_names``."""
    return [old for old in mapping if old != WILDCARD and old not in class_names]


def names_none(mapping: dict[str, str], class_names: list[str]) -> bool:
    """Whether the old names of ``mapping`` (``*`` aside) are all missing from ``class_names``: a map meant
    for other data (refused by :func:`map_labels`; left unapplied to the images ``embed`` places)."""
    unknown = unknown_classes(mapping, class_names)
    return bool(unknown) and len(unknown) == len(mapping) - (WILDCARD in mapping)


def unused_note(mapping: dict[str, str], class_names: list[str], by: str = "", of: str = "this data") -> str | None:
    """A note naming the old names of ``mapping`` that are not classes (of ``of``), left unused; None if none."""
    unknown = unknown_classes(mapping, class_names)
    if not unknown:
        return None
    listed = ", ".join(repr(printable(n, 40)) for n in unknown[:MAX_LISTED])
    return (f"labels map{by}: {len(unknown)} name(s) are not classes of {of}, left unused: {listed}"
            f"{', ...' if len(unknown) > MAX_LISTED else ''}")


def map_labels(labels: np.ndarray, class_names: list[str], mapping: dict[str, str]):
    """Relabel integer ``labels`` (N,) by ``old -> new`` class names.

    Old names that are not classes of the data are left unused (one map can
    serve data sets that lack some classes), unless none of the names the map
    gives is a class: then the map is refused as one meant for other data.

    Returns
    -------
    labels : ndarray (N,) int64
        Indices into the new names.
    names : list of str
        The new classes, in the order of the first old class mapped to each;
        a class without images is left out.
    """
    if names_none(mapping, class_names):
        unknown = unknown_classes(mapping, class_names)
        others = " (nor is any other name it maps)" if len(unknown) > 1 else ""
        raise MedcneError(
            f"labels map: {unknown[0]!r} is not a class of the data{others}; "
            f"classes are {', '.join(map(repr, class_names))}"
        )
    present = set(np.unique(labels).tolist())
    new_of = [mapping.get(name, mapping.get(WILDCARD, name)) for name in class_names]
    names = list(dict.fromkeys(new_of[i] for i in range(len(class_names)) if i in present))
    lookup = np.array([names.index(n) if n in names else -1 for n in new_of], dtype=np.int64)
    return lookup[np.asarray(labels, dtype=np.int64)], names


def labels_map(data: ImageSet, mapping) -> ImageSet:
    """``data`` with its classes renamed or joined by ``mapping`` (a dict, or a CSV path)."""
    source = None if isinstance(mapping, dict) else Path(mapping)
    if source is not None:
        mapping = read_labels_map(source)
    labels, names = _labeled(data, "labels_map")
    new_labels, new_names = map_labels(labels, names, mapping)
    by = f" by {source.name}" if source else ""
    notes = [f"labels mapped{by}: {len(names)} classes -> {len(new_names)}"]
    if unused := unused_note(mapping, names, by, "this data"):
        notes.append(unused)
    return replace(data, labels=new_labels, class_names=new_names, notes=[*data.notes, *notes])


def merge_rare(data: ImageSet, n: int) -> ImageSet:
    """``data`` with every class of fewer than ``n`` images merged into one class, ``'other (merged)'``.

    The merged class comes last; the other classes keep their order. Nothing
    changes when no class is that rare.
    """
    labels, names = _labeled(data, "merge_rare")
    new_labels, new_names, rare = merge_rare_labels(labels, names, n)
    if not rare:
        return data
    note = f"merged {len(rare)} classes with fewer than {n} images into {MERGED!r}: {', '.join(rare)}"
    return replace(data, labels=new_labels, class_names=new_names, notes=[*data.notes, note])


def check_merge_rare(n) -> None:
    """``merge_rare`` is a class size in images, a positive integer."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise MedcneError(f"`merge_rare` must be a positive integer (a class size in images); got {n!r}")


def merge_rare_labels(labels: np.ndarray, names: list[str], n: int) -> tuple[np.ndarray, list[str], list[str]]:
    """:func:`merge_rare` on integer ``labels`` (N,) and class ``names``: new labels, new names,
    and the names merged (none: the inputs back)."""
    check_merge_rare(n)
    counts = np.bincount(labels, minlength=len(names))
    rare = [name for name, c in zip(names, counts, strict=True) if 0 < c < n]
    if not rare:
        return labels, list(names), []
    new_labels, new_names = map_labels(labels, names, {name: MERGED for name in rare})
    # The merged class last, whatever the position of the first rare class was.
    order = [i for i, name in enumerate(new_names) if name != MERGED] + [new_names.index(MERGED)]
    rank = np.argsort(order)
    return rank[new_labels], [new_names[i] for i in order], rare


def _labeled(data: ImageSet, option: str) -> tuple[np.ndarray, list[str]]:
    if data.labels is None:
        raise MedcneError(f"{option}: {data.source} has no labels; it needs labelled data")
    return data.labels, list(data.class_names)
