"""What the DICOM and NIfTI readers share: labels from a CSV keyed by a scan attribute, the memory
a ``size`` needs (checked from the files' headers before any pixel is read), and stacking 2-D
images of possibly different sizes into one array.

A label CSV has one key column and one label column (``label`` unless named).
The key column is named after what it holds: for DICOM a DICOM attribute
(``SOPInstanceUID``, ``SeriesInstanceUID``, ``StudyInstanceUID``,
``PatientID``) or ``path`` (the file's path relative to the data folder); for
NIfTI ``volume`` (the volume's path relative to the data folder), optionally
with a ``slice`` column to label single slices. Images that no row names get
the class ``unlabelled`` (noted).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..defaults import UNLABELLED
from ..errors import DataError, MissingColumnError, MixedSizeError, printable
from .convert import convert_channels, resize_one
from .csvfile import read_table
from .memory import check_memory
from .window import first_number

# The fix for scans that do not fit: `subset` would not help, it is drawn after every scan is read.
SMALLER = "choose a smaller `size`, or read a folder with fewer scans"


def read_label_csv(path, keys: tuple[str, ...], key: str | None, label_column: str | None):
    """(key column name, {key value: label}, {(key, slice): label}) of a label CSV.

    ``keys`` are the key columns this reader understands; ``key=None`` takes the
    one the CSV has. A ``slice`` column (NIfTI) labels single slices: rows with
    an empty slice label the whole volume.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"`label_csv` {path}: no such file; give a CSV with a key column and a label column")
    columns, rows = read_table(path)
    label_column = label_column or "label"
    if label_column not in columns:
        raise MissingColumnError(
            f"{path}: no column '{printable(label_column)}' (columns: {printable(', '.join(columns)) or 'none'}); "
            "name the label column with `label_column`"
        )
    found = [k for k in keys if k in columns]
    if key is not None and key not in keys:
        raise DataError(f"`label_key` must be one of the key columns {', '.join(keys)}; got {key!r}")
    if key is None and len(found) != 1:
        what = f"several key columns ({', '.join(found)})" if found else "no key column"
        raise MissingColumnError(
            f"{path}: {what}; give exactly one of {', '.join(keys)} (or choose one with `label_key`)"
        )
    key = key or found[0]
    if key not in columns:
        raise MissingColumnError(f"{path}: no column {key!r} (columns: {printable(', '.join(columns))}); add it")
    k, lab = columns.index(key), columns.index(label_column)
    s = columns.index("slice") if "slice" in columns else None
    whole: dict[str, str] = {}
    single: dict[tuple[str, int], str] = {}
    for line, cells in rows:
        value, label = cells[k].strip(), cells[lab].strip()
        if not value or not label:
            raise DataError(f"{path}: line {line}: empty {key if not value else label_column!r}; fill it or remove the row")
        if s is None or not cells[s].strip():
            _put(whole, value, label, path, line)
            continue
        try:
            index = int(cells[s])
        except ValueError:
            raise DataError(f"{path}: line {line}: slice {printable(cells[s])!r} is not a whole number") from None
        if index < 0:
            raise DataError(f"{path}: line {line}: slice {index} is negative; slices count from 0 "
                            "(leave it empty to label the whole volume)")
        _put(single, (value, index), label, path, line)
    return key, whole, single


def _put(table: dict, key, label: str, path: Path, line: int) -> None:
    if table.get(key, label) != label:
        raise DataError(f"{path}: line {line}: a second, different label for the same key; keep one")
    table[key] = label


def encode_with_missing(values: list[str | None], notes: list[str], where: str) -> tuple[np.ndarray, list[str]]:
    """Class codes of ``values``; ``None`` becomes the class ``unlabelled`` (noted)."""
    missing = sum(v is None for v in values)
    if missing:
        notes.append(f"{missing} image(s) have no label in {where}: class {UNLABELLED!r}")
    values = [UNLABELLED if v is None else v for v in values]
    # Label values of a segmentation ("1", "2", "10") in numeric order, then names such as "background".
    names = sorted(set(values), key=lambda n: (0, int(n), "") if _is_int(n) else (1, 0, n))
    code = {name: i for i, name in enumerate(names)}
    return np.asarray([code[v] for v in values], dtype=np.int64), names


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def check_unused(table: dict, used: set, notes: list[str], where: str) -> None:
    """A note on rows of the label CSV that matched no image (without their keys: they may be patient IDs)."""
    unused = len(set(table) - used)
    if unused:
        notes.append(f"{unused} row(s) of {where} match no image")


def check_resized(count: int, size, colour: bool, channels: str, source: str, what: str) -> None:
    """Refuse ``count`` images (``what``, e.g. ``"1,200 slices"``) resized to ``size`` when they will not
    fit in memory, before the first is resized (readers count them from the files' headers). Colour
    images and ``channels='rgb'`` take 3 bytes a pixel, grey ones 1.

    They are held twice at the end, resized and then stacked into one array (as the folder reader
    counts its images): without this, a large ``size`` ran out of memory while resizing, and the
    check of :func:`stack_images` came too late.
    """
    if size is None or count <= 0:
        return
    (h, w), c = size, 3 if colour or channels == "rgb" else 1
    check_memory(2 * count * h * w * c, source, f"{what} of {h}x{w}x{c} (resized, then stacked into one array)",
                 SMALLER)


def stated_frames(paths: list[Path], pydicom) -> tuple[int, bool]:
    """(frames, whether any is colour) that the headers of DICOM files ``paths`` state, read without
    their pixels: what a `size` needs is known before the first frame is decoded (see
    :func:`check_resized`). A file that cannot be read counts nothing here (the reader names it),
    and none counts more frames than it has bytes for (8 a frame at least), so that a lying
    header does not refuse the whole folder."""
    frames, colour = 0, False
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
            if "Rows" not in ds:  # no image: a report, a plan, a DICOMDIR
                continue
            frames += max(1, min(int(first_number(ds.get("NumberOfFrames")) or 1), path.stat().st_size // 8))
            colour = colour or int(ds.get("SamplesPerPixel", 1) or 1) == 3 or \
                str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR"
        except Exception:  # damaged files raise nearly anything
            continue
    return frames, colour


def sized(img: np.ndarray, size) -> np.ndarray:
    """One uint8 H x W x C image resized to ``size`` (H, W); as it is when ``size`` is None or already met.

    Readers of scans resize each slice as they read it, so that a folder of
    large slices is never held at full resolution when a ``size`` is asked for.
    """
    return resize_one(img, size) if size is not None and img.shape[:2] != tuple(size) else img


def stack_images(images: list[np.ndarray], owners: list[str], *, size, channels: str, source: str,
                 notes: list[str]) -> np.ndarray:
    """uint8 H x W x C images -> one N x H x W x C array, resized to ``size`` when given.

    Without ``size``, images of different sizes are refused, naming a file of each
    size. One-channel and RGB images mixed are all made RGB (noted).
    """
    if size is None:
        first: dict[tuple[int, int], str] = {}
        for img, owner in zip(images, owners, strict=True):
            first.setdefault(img.shape[:2], owner)
        if len(first) > 1:
            listed = ", ".join(f"{h}x{w} ({printable(o, 80)})" for (h, w), o in sorted(first.items())[:4])
            raise MixedSizeError(
                f"{source}: images have different sizes: {listed}{', ...' if len(first) > 4 else ''}; "
                "pass `size` (e.g. `size` 64) to resize them on load"
            )
    h, w = size or images[0].shape[:2]
    c = max(img.shape[2] for img in images)
    check_memory(len(images) * h * w * c, source, f"{len(images):,} images of {h}x{w}x{c}", SMALLER)
    out = np.empty((len(images), h, w, c), dtype=np.uint8)
    for i, img in enumerate(images):
        img = sized(img, size)
        out[i] = np.repeat(img, 3, axis=-1) if img.shape[2] < c else img
    if c == 3 and any(img.shape[2] == 1 for img in images):
        notes.append("mixed one-channel and RGB images: all converted to RGB")
    return convert_channels(out, channels, source, notes)
