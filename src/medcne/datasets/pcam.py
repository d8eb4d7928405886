"""The PCam (PatchCamelyon) HDF5 reader: ``*_x.h5`` images with labels from the ``*_y.h5`` beside it.

The images are never loaded whole (327,680 x 96 x 96 x 3 bytes for the
training split): the reader returns a lazily read store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, LabelMismatchError, UnknownFormatError, require
from .convert import check_channels, convert_channels, parse_size, resize_images
from .imageset import ImageSet, LazyImages


def pcam_pair(path: Path) -> tuple[Path, Path | None]:
    """The x file of PCam and its y file beside it, if present."""
    name = path.name
    if not name.endswith("_x.h5"):
        raise UnknownFormatError(f"{path}: PCam images are read from the '*_x.h5' file; pass that one")
    y = path.with_name(name[: -len("_x.h5")] + "_y.h5")
    return path, y if y.exists() else None


def read_pcam(path: Path, *, size=None, channels="keep") -> ImageSet:
    """PCam HDF5 (``x``: N x 96 x 96 x 3 uint8, ``y``: N x 1 x 1 x 1), read lazily."""
    h5py = require("h5py", "pcam")
    check_channels(channels)
    size = parse_size(size)
    x_path, y_path = pcam_pair(path)
    try:
        with h5py.File(x_path, "r") as f:
            if "x" not in f:
                raise UnknownFormatError(f"{x_path}: no dataset 'x' in this HDF5 file; is it a PCam *_x.h5 file?")
            n, h, w, c = f["x"].shape
    except OSError as exc:
        raise DataError(f"{x_path}: cannot open as HDF5 ({exc}); is the file complete?") from None
    labels = None
    if y_path is not None:
        with h5py.File(y_path, "r") as f:
            labels = np.asarray(f["y"]).reshape(-1).astype(np.int64)
        if len(labels) != n:
            raise LabelMismatchError(f"{y_path}: {len(labels)} labels for {n} images in {x_path.name}")
    notes: list[str] = []
    out_c = {"keep": c if c != 4 else 3, "rgb": 3, "gray": 1}[channels]
    out_hw = size or (h, w)

    def read(indices: np.ndarray) -> np.ndarray:
        # Opened per read so the store can be used from several processes.
        with h5py.File(x_path, "r") as f:
            block = f["x"][indices]
        return resize_images(convert_channels(block, channels, str(x_path), []), size)

    store = LazyImages(read, n, (*out_hw, out_c))
    names = ["normal", "tumor"] if labels is not None else None
    return ImageSet(store, labels, names, np.array([str(i) for i in range(n)]), source=str(x_path), notes=notes)
