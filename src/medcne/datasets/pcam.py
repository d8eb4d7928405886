"""The PCam (PatchCamelyon) HDF5 reader: ``*_x.h5`` images with labels from the ``*_y.h5`` beside it.

The images are never loaded whole (all of PCam, its train, valid and test
files together, is 327,680 x 96 x 96 x 3 bytes; the training file alone
262,144 images): the reader returns a lazily read store, and a folder of the
three files reads as one dataset of all of them (:func:`read_pcam_folder`). Stores of float (or
non-uint8 integer) pixels are scanned block by block when opened, so NaN,
infinity or values outside [0, 1] (floats) / 0..255 (integers) are refused
before any map is made; every block read later is checked again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError, LabelMismatchError, MedcneError, UnknownFormatError, require
from .convert import (
    block_rows,
    check_channels,
    check_pixels,
    convert_channels,
    parse_size,
    resize_images,
    to_uint8,
)
from .imageset import ImageSet, LazyImages, int_labels
from .memory import check_memory

# What h5py raises on damaged files or unexpected objects.
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError)
# Blocks later read from the store (ImageSet.iter_chunks, the training store) hold up to this many images.
READ_BLOCK = 4096


def pcam_pair(path: Path) -> tuple[Path, Path | None]:
    """The x file of PCam and its y file beside it, if present."""
    name = path.name
    if not name.endswith("_x.h5"):
        raise UnknownFormatError(f"{path}: PCam images are read from the '*_x.h5' file; pass that one")
    y = path.with_name(name[: -len("_x.h5")] + "_y.h5")
    return path, y if y.exists() else None


def _explain(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dataset(h5py, f, key: str, path: Path, kind: str):
    if key not in f:
        raise UnknownFormatError(f"{path}: no dataset {key!r} in this HDF5 file; is it a PCam {kind} file?")
    ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{path}: {key!r} is an HDF5 {type(ds).__name__.lower()}, not an array; is it a PCam {kind} file?")
    return ds


def _check_stored(ds, path: Path, key: str) -> None:
    """Refuse a dataset whose declared shape is larger than what the file stores.

    A damaged header can declare 10^11 images over a few kB of chunks; HDF5 then
    reads the missing chunks as zeros, and every loop over the images runs for
    hours. Complete files store every chunk (or all bytes, when not chunked).
    """
    if ds.is_virtual or ds.external:
        _check_sources(ds, path, key)
        return
    shape = tuple(int(s) for s in ds.shape)
    if ds.chunks is None:
        declared, stored, unit = int(np.prod(shape, dtype=np.float64)) * ds.dtype.itemsize, ds.id.get_storage_size(), "bytes"
    else:
        declared = int(np.prod([-(-s // c) for s, c in zip(shape, ds.chunks, strict=True)], dtype=np.float64))
        stored, unit = ds.id.get_num_chunks(), "chunks"
    if stored < declared:
        raise DataError(
            f"{path}: {key!r} declares shape {shape} ({declared:,} {unit}) but the file stores {stored:,}; "
            "it is truncated or corrupt: write or download it again"
        )


def _inside(file_name: str, folder: Path, virtual: bool) -> bool:
    """Whether every file HDF5 may read for the source ``file_name`` lies in ``folder``. A virtual
    dataset's relative source is looked for under $HDF5_VDS_PREFIX, then beside the file, and only when
    it is not there in the working directory; an external file's in the file's folder or the working
    directory: each place it may be read from must stay in the dataset's folder."""
    if file_name in (".", ""):
        return True
    folder, name = Path(folder).resolve(), Path(file_name)
    if name.is_absolute():
        candidates = [name]
    elif virtual:
        prefix = os.environ.get("HDF5_VDS_PREFIX")
        candidates = [Path(prefix) / name] if prefix and (Path(prefix) / name).exists() else []
        beside = folder / name
        candidates += [beside] if beside.exists() else [beside, Path.cwd() / name]
    else:
        candidates = [folder / name, Path.cwd() / name]
    return all(folder in c.resolve().parents for c in candidates)


def _check_sources(ds, path: Path, key: str) -> None:
    """Refuse a virtual or externally stored dataset that reads outside the dataset's folder, or that
    maps less than it declares (the rest would read as blank images).

    No name or byte of another file goes into the message beyond the count.
    """
    folder = path.parent
    total = int(np.prod(ds.shape, dtype=np.float64))
    if ds.is_virtual:
        sources = ds.virtual_sources()
        names = [s.file_name for s in sources]
        mapped = sum(int(s.vspace.get_select_npoints()) for s in sources)
        unit, kind = "values", "a virtual dataset"
    else:
        names = [entry[0] for entry in ds.external]
        sizes = [int(entry[2]) for entry in ds.external]
        mapped = sum(sizes) // max(ds.dtype.itemsize, 1) if all(s < 2**63 - 1 for s in sizes) else total
        total, unit, kind = total, "values", "stored in external files"
    outside = [n for n in names if not _inside(n, folder, ds.is_virtual)]
    if outside:
        raise DataError(f"{path}: {key!r} is {kind} that reads {len(outside)} file(s) outside the dataset's folder "
                        f"{folder}; medcne reads only the dataset's own files: copy the data into one HDF5 file")
    if mapped < total:
        raise DataError(f"{path}: {key!r} is {kind} that declares {total:,} {unit} but maps only {mapped:,}; "
                        "the rest would read as blank images: write the data into one complete HDF5 file")


def _x_layout(h5py, x_path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of ``x``, refusing what is not N x H x W (x C) pixels."""
    try:
        with h5py.File(x_path, "r") as f:
            ds = _dataset(h5py, f, "x", x_path, "*_x.h5")
            shape, dtype = tuple(int(s) for s in ds.shape), ds.dtype
            _check_stored(ds, x_path, "x")
    except MedcneError:
        raise
    except H5_ERRORS as exc:
        raise DataError(f"{x_path}: cannot open as HDF5 ({_explain(exc)}); is the file complete?") from None
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)) or min(shape[1:3], default=0) < 1:
        raise DataError(
            f"{x_path}: 'x' has shape {shape}; PCam images must be N x H x W x C with C = 1 or 3 (or N x H x W)"
        )
    if dtype.kind not in "fiub":
        raise DataError(f"{x_path}: 'x' holds {dtype} values; pixels must be uint8, or float in [0, 1]")
    return shape, dtype


def _scan_pixels(h5py, x_path: Path, shape, dtype) -> None:
    """Check every pixel of a non-uint8 store, one block at a time (never the whole store)."""
    step = block_rows(int(np.prod(shape[1:])) * max(dtype.itemsize, 8))
    try:
        with h5py.File(x_path, "r") as f:
            ds = f["x"]
            for start in range(0, shape[0], step):
                check_pixels(ds[start : start + step], str(x_path), start)
    except MedcneError:
        raise
    except H5_ERRORS as exc:
        raise DataError(f"{x_path}: cannot read the images ({_explain(exc)}); is the file complete?") from None


def _read_labels(h5py, y_path: Path, n: int, x_name: str) -> np.ndarray:
    try:
        with h5py.File(y_path, "r") as f:
            ds = _dataset(h5py, f, "y", y_path, "*_y.h5")
            _check_stored(ds, y_path, "y")
            check_memory(ds.size * max(ds.dtype.itemsize, 8), str(y_path), f"{ds.size:,} labels", "check the file")
            labels = np.asarray(ds[()]).reshape(-1)
    except MedcneError:
        raise
    except H5_ERRORS as exc:
        raise DataError(f"{y_path}: cannot read the labels ({_explain(exc)}); is the file complete?") from None
    labels = int_labels(labels, str(y_path), "the labels in 'y'")
    if len(labels) != n:
        raise LabelMismatchError(f"{y_path}: {len(labels)} labels for {n} images in {x_name}")
    return labels


def read_pcam(path: Path, *, size=None, channels="keep") -> ImageSet:
    """PCam HDF5 (``x``: N x 96 x 96 x 3 uint8, ``y``: N x 1 x 1 x 1), read lazily."""
    h5py = require("h5py", "pcam")
    check_channels(channels)
    size = parse_size(size)
    x_path, y_path = pcam_pair(path)
    shape, dtype = _x_layout(h5py, x_path)
    n, h, w = shape[:3]
    c = shape[3] if len(shape) == 4 else 1
    out_c = {"keep": c if c != 4 else 3, "rgb": 3, "gray": 1}[channels]
    out_hw = size or (h, w)
    block = min(n, READ_BLOCK)
    check_memory(
        block * max(h * w * c * dtype.itemsize, out_hw[0] * out_hw[1] * out_c), str(x_path),
        f"reading blocks of {block:,} images of {out_hw[0]}x{out_hw[1]}x{out_c}", "choose a smaller `size`",
    )
    if dtype != np.uint8:
        _scan_pixels(h5py, x_path, shape, dtype)
    labels = _read_labels(h5py, y_path, n, x_path.name) if y_path is not None else None
    where = str(x_path)

    def read(indices: np.ndarray) -> np.ndarray:
        # Opened per read so the store can be used from several processes.
        try:
            with h5py.File(x_path, "r") as f:
                block = f["x"][indices]
        except H5_ERRORS as exc:
            raise DataError(f"{x_path}: cannot read images ({_explain(exc)}); is the file complete?") from None
        block = to_uint8(block if block.ndim == 4 else block[..., None], where, index=indices)
        return resize_images(convert_channels(block, channels, where, []), size, where)

    store = LazyImages(read, n, (*out_hw, out_c))
    names = ["normal", "tumor"] if labels is not None else None
    notes = [] if c != 4 else ["alpha channel dropped (RGBA -> RGB)"]
    return ImageSet(store, labels, names, np.array([str(i) for i in range(n)]), source=where, notes=notes)


# The split names of the loaders (``--split``) and the word PCam's file names use for each.
PCAM_SPLITS = {"train": "train", "val": "valid", "test": "test"}


def read_pcam_folder(folder: Path, *, split: str | None = None, size=None, channels="keep") -> ImageSet:
    """All ``*_x.h5`` files of a PCam folder as one lazily read set (train, valid, test: 327,680
    images in all, as the paper used), or only the file of ``split`` ('train', 'val', 'test').
    Image ids are ``<file split>/<row>``."""
    xs = sorted(Path(folder).glob("*_x.h5"))
    if not xs:
        raise UnknownFormatError(f"{folder}: no PCam '*_x.h5' file in this folder; pass the *_x.h5 file")
    if split is not None:
        word = PCAM_SPLITS.get(split)
        xs = [p for p in xs if word is not None and split_word(str(p)) == word]
        if len(xs) != 1:
            raise DataError(f"{folder}: `split` {split} needs exactly one '*{PCAM_SPLITS.get(split, split)}_x.h5' "
                            f"file in the folder; found {len(xs)}")
    parts = [read_pcam(p, size=size, channels=channels) for p in xs]
    return parts[0] if len(parts) == 1 else _join(parts, folder)


def _join(parts: list[ImageSet], folder: Path) -> ImageSet:
    shapes = {p.image_shape for p in parts}
    if len(shapes) > 1 or len({p.labels is None for p in parts}) > 1:
        raise DataError(f"{folder}: the PCam files differ in image size or in having labels ({sorted(shapes)}); "
                        "pass one *_x.h5 file, or `split`")
    starts = np.cumsum([0] + [len(p) for p in parts])

    def read(indices: np.ndarray) -> np.ndarray:  # increasing, unique: each file's share is too
        which = np.searchsorted(starts, indices, side="right") - 1
        return np.concatenate([parts[k].images[indices[which == k] - starts[k]] for k in np.unique(which)])

    store = LazyImages(read, int(starts[-1]), parts[0].image_shape)
    labels = None if parts[0].labels is None else np.concatenate([p.labels for p in parts])
    ids = np.concatenate([[f"{split_word(p.source)}/{i}" for i in p.ids] for p in parts])
    notes = sorted({n for p in parts for n in p.notes})
    return ImageSet(store, labels, parts[0].class_names, ids, source=str(folder), notes=notes)


def split_word(source: str) -> str:
    stem = Path(source).name[: -len("_x.h5")]
    return next((w for w in PCAM_SPLITS.values() if stem.endswith(w)), stem)
