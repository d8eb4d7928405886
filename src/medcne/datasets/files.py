"""Readers for images stored as files: a folder of class folders, or a CSV of paths."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import BadImageError, DataError, EmptyDatasetError, MissingColumnError, MixedSizeError
from .convert import check_channels, parse_size, pil_to_array, resize_one
from .imageset import ImageSet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_LISTED = 10


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def read_folder(root: Path, *, size=None, channels="keep", skip_bad=False) -> ImageSet:
    """One sub-folder per class, or a flat folder of images (unlabeled)."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    class_names: list[str] = []
    for d in class_dirs:
        found = sorted(p for p in d.rglob("*") if is_image_file(p))
        if not found:
            continue
        class_names.append(d.name)
        files += found
        labels += [len(class_names) - 1] * len(found)
    if not files:
        files = sorted(p for p in root.iterdir() if is_image_file(p))
        class_names = []
    if not files:
        raise EmptyDatasetError(
            f"{root}: no images found; expected one sub-folder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files"
        )
    ids = [p.relative_to(root).as_posix() for p in files]
    return decode_files(
        files, ids, labels if class_names else None, class_names or None,
        source=str(root), size=size, channels=channels, skip_bad=skip_bad,
    )


def read_csv(
    path: Path,
    *,
    path_column: str = "path",
    label_column: str | None = None,
    size=None,
    channels="keep",
    skip_bad=False,
) -> ImageSet:
    """A CSV with a column of image paths (relative to the CSV) and optional labels.

    ``label_column=None`` uses a column named ``label`` when there is one.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        rows = list(reader)
    if path_column not in columns:
        raise MissingColumnError(
            f"{path}: no column {path_column!r} (columns: {', '.join(columns) or 'none'}); "
            "name the path column with --path-column"
        )
    if label_column is not None and label_column not in columns:
        raise MissingColumnError(
            f"{path}: no column {label_column!r} (columns: {', '.join(columns)}); "
            "name the label column with --label-column"
        )
    if label_column is None and "label" in columns:
        label_column = "label"
    if not rows:
        raise EmptyDatasetError(f"{path}: the CSV has no rows; add one row per image")
    files = [(path.parent / r[path_column]).resolve() for r in rows]
    ids = [r[path_column] for r in rows]
    labels = class_names = None
    if label_column is not None:
        labels, class_names = encode_labels([r[label_column] for r in rows])
    return decode_files(
        files, ids, labels, class_names,
        source=str(path), size=size, channels=channels, skip_bad=skip_bad,
    )


def encode_labels(values: list[str]) -> tuple[list[int], list[str]]:
    """Strings -> (codes, class names); names sort numerically when all are integers."""
    names = sorted(set(values))
    if all(v.strip().lstrip("-").isdigit() for v in names):
        names = sorted(names, key=lambda v: int(v))
    code = {name: i for i, name in enumerate(names)}
    return [code[v] for v in values], names


def decode_files(files, ids, labels, class_names, *, source, size, channels, skip_bad) -> ImageSet:
    """Decode image files; report unreadable ones together, check sizes agree."""
    check_channels(channels)
    size = parse_size(size)
    images, bad, keep = [], [], []
    notes: list[str] = []
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img.load()
                arr = pil_to_array(img, channels)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            bad.append(f"{f} ({type(exc).__name__})")
            continue
        if size is not None:
            arr = resize_one(arr, size)
        images.append(arr)
        keep.append(i)
    if bad and not skip_bad:
        listed = "; ".join(bad[:MAX_LISTED]) + (f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else "")
        raise BadImageError(
            f"{source}: {len(bad)} unreadable image file(s): {listed}. "
            "Fix or remove them, or pass --skip-bad to leave them out",
            bad,
        )
    if bad:
        notes.append(f"skipped {len(bad)} unreadable image file(s)")
    if not images:
        raise DataError(f"{source}: none of the {len(files)} image files could be read")
    shapes = sorted({a.shape for a in images})
    if len({s[:2] for s in shapes}) > 1:
        listed = ", ".join(f"{s[0]}x{s[1]}" for s in shapes[:5])
        raise MixedSizeError(
            f"{source}: images have different sizes ({listed}{', ...' if len(shapes) > 5 else ''}); "
            "pass --size (e.g. --size 28) to resize them on load"
        )
    if len({s[2] for s in shapes}) > 1:
        # Mixed gray and colour files: promote all to RGB rather than fail.
        images = [np.repeat(a, 3, axis=-1) if a.shape[2] == 1 else a for a in images]
        notes.append("mixed one-channel and RGB files: all converted to RGB")
    keep = np.asarray(keep, dtype=np.int64)
    return ImageSet(
        images=np.stack(images),
        labels=None if labels is None else np.asarray(labels, dtype=np.int64)[keep],
        class_names=class_names,
        ids=np.asarray(ids)[keep],
        source=source,
        notes=notes,
    )
