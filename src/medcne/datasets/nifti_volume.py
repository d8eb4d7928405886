"""One NIfTI volume read with bounded memory: its stored values, scaled and windowed a slab at a time.

nibabel scales a whole volume at once (``np.asarray(img.dataobj, dtype=np.float32)``): the stored
values, their scaled copy (in float64: NIfTI-1 scale factors come as Python floats) when the file
states a scale factor, and a float32 copy of that, twice what an unscaled volume needs. Here the stored (unscaled) values are read once,
turned to the canonical orientation as views, and scaled by nibabel's own
``apply_read_scaling`` slab by slab (``READ_CHUNK_MB`` at a time), so that a scaled volume costs
what an unscaled one does and every value is the float32 value nibabel gives. The most a volume
holds at once is its stored values and one float32 copy (:data:`BYTES_BEYOND_STORED` a voxel), for
the automatic window's percentiles; a window given takes a byte a voxel beyond the stored values.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..defaults import chunk_rows
from ..errors import DataError, printable
from .memory import check_memory
from .window import Window, auto_window

# Bytes a voxel beyond its stored values while a volume is read: the float32 copy of its values that
# the automatic window's percentiles need (the window, the slices and the scaling take less).
BYTES_BEYOND_STORED = 4
IDENTITY = [[0, 1], [1, 1], [2, 1]]


@dataclass
class Volume:
    """A volume's stored values in the canonical orientation (3-D, views of the data read) and nibabel's
    scale factors for them."""

    stored: np.ndarray
    slope: np.ndarray
    inter: np.ndarray
    dropped: bool  # dimensions beyond the third were dropped (their first volume kept)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stored.shape

    def values(self, index=()) -> np.ndarray:
        """float32 values of ``stored[index]``: the file's scale factor applied as nibabel applies it."""
        from nibabel.volumeutils import apply_read_scaling

        scaled = apply_read_scaling(self.stored[index], self.slope, self.inter)
        return np.asarray(scaled, dtype=np.float32)

    def slabs(self, axis: int | None = None) -> Iterator[tuple]:
        """Indices of slabs along ``axis`` (default: the one with the largest stride, the slowest in
        memory), each of about ``READ_CHUNK_MB`` as float64, the most nibabel's scaling takes a voxel."""
        if axis is None:
            axis = int(np.argmax(np.abs(self.stored.strides)))
        n = self.shape[axis]
        step = chunk_rows(8 * int(np.prod(self.shape, dtype=np.int64)) // max(1, n))
        for start in range(0, n, step):
            yield (slice(None),) * axis + (slice(start, start + step),)


def load(path: Path, nib, what: str) -> Volume:
    """The volume of ``path`` (``what``: "volume" or "segmentation" in messages), its voxels read but not
    scaled; a damaged, unsupported or too large file raises :class:`DataError`."""
    from nibabel.orientations import apply_orientation, io_orientation

    with warnings.catch_warnings(), quiet(logging.getLogger("nibabel.global")), memory_named(path, what):
        warnings.simplefilter("ignore")  # nibabel warns and logs on odd header fields it can read around
        try:
            img = nib.load(str(path))
            check_size(img, path, what)
            proxy = img.dataobj
            slope, inter = np.asanyarray(proxy.slope), np.asanyarray(proxy.inter)
            ornt = io_orientation(img.affine)
            identity = np.array_equal(ornt, IDENTITY)
            if identity:  # nibabel casts the factors to the float32 asked for when it can (as_closest_canonical)
                slope, inter = (f.astype(np.float32) if np.can_cast(f, np.float32) else f for f in (slope, inter))
            stored = np.asanyarray(proxy.get_unscaled())
            stored = stored if identity else apply_orientation(stored, ornt)
        except (DataError, MemoryError):  # MemoryError: named by memory_named
            raise
        except Exception as exc:  # damaged headers and data make nibabel raise nearly anything
            raise DataError(f"{path}: not a readable NIfTI {what} ({type(exc).__name__}: "
                            f"{printable(' '.join(str(exc).split()), 100)}); replace it with a readable "
                            "copy, or pass `skip_bad` to leave it out") from None
        if stored.ndim < 2:
            raise DataError(f"{path}: the {what} has {stored.ndim} dimension(s); give 2-D or 3-D volumes")
        dropped = stored.ndim > 3 and any(n > 1 for n in stored.shape[3:])
        if stored.ndim > 3:  # its first 3-D volume, copied so that the others are let go
            stored = np.array(stored[(slice(None),) * 3 + (0,) * (stored.ndim - 3)])
        volume = Volume(stored[..., None] if stored.ndim == 2 else stored, slope, inter, dropped)
        check_finite(volume, path, what)
    return volume


def check_size(img, path: Path, what: str) -> None:
    """Refuse, before any voxel is read, a voxel type that is not a grey value (RGB, complex), a header
    that states more data than an uncompressed file holds (damaged), or more than the memory available
    holds (its stored values and their float32 copy, :data:`BYTES_BEYOND_STORED`)."""
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "biuf":
        kind = "colour" if dtype.fields is not None else "complex" if dtype.kind == "c" else "non-numeric"
        label = printable(str(img.header.get_value_label("datatype")), 20) if hasattr(img.header, "get_value_label") \
            else str(dtype)
        raise DataError(f"{path}: the {what} holds {kind} voxels (NIfTI datatype {label}), which medcne does not "
                        "read: it reads grey values (integer or floating-point voxels); convert it to a greyscale "
                        "volume or to a folder of PNG images, or pass `skip_bad` to leave it out")
    voxels, itemsize = int(np.prod(img.shape, dtype=object)), dtype.itemsize
    offset = getattr(img.dataobj, "offset", None)  # the header's vox_offset as nibabel reads the data
    if offset is not None and path.name.lower().endswith(".nii"):
        need, have = int(offset) + voxels * itemsize, path.stat().st_size
        if need > have:
            raise DataError(f"{path}: damaged or truncated: the header states {need:,} bytes, the file holds "
                            f"{have:,}; replace it, or pass `skip_bad` to leave it out")
    shape = "x".join(map(str, img.shape))
    check_memory(voxels * (itemsize + BYTES_BEYOND_STORED), str(path), f"the {what} of {shape} voxels",
                 "read it on a machine with more memory, or pass `skip_bad` to leave it out")


def check_finite(volume: Volume, path: Path, what: str) -> None:
    """Refuse NaN and infinite values, as float pixels are refused elsewhere: no window makes them a grey.
    Stored integers scaled by finite factors are finite, but a factor may overflow float32: every slab is checked."""
    stored = volume.stored.dtype
    if stored.kind in "iub":  # finite unless the factors take the type's extremes beyond float32
        extreme = float(max(abs(int(np.iinfo(stored).min)), int(np.iinfo(stored).max))) if stored.kind != "b" else 1.0
        with np.errstate(all="ignore"):
            bound = extreme * np.abs(volume.slope.astype(np.float64)) + np.abs(volume.inter.astype(np.float64))
        if np.all(bound < np.finfo(np.float32).max / 2):  # False for NaN; half: room for rounding
            return
    count = 0
    for index in volume.slabs():
        values = volume.values(index)
        if values.size and not (np.isfinite(values.min()) and np.isfinite(values.max())):
            count += values.size - int(np.count_nonzero(np.isfinite(values)))
    if count:
        raise DataError(f"{path}: the {what} holds {count:,} non-finite value(s) (NaN or infinity); replace them "
                        "with numbers (e.g. numpy.nan_to_num) or pass `skip_bad` to leave it out")


def windowed(volume: Volume, window, path: Path) -> np.ndarray:
    """The volume's values through ``window`` (a :class:`Window`, or automatic: the percentiles of the
    whole volume) as uint8 of its shape, scaled a slab at a time."""
    with memory_named(path, "volume"):
        if not isinstance(window, Window):
            values = np.empty(volume.stored.size, dtype=np.float32)  # the one float32 copy, reordered in place
            at = 0
            for index in volume.slabs():
                slab = volume.values(index).ravel(order="K")  # in any order: no copy
                values[at: at + slab.size] = slab
                at += slab.size
            window = auto_window(values, scratch=True)
            del values
        out = np.empty_like(volume.stored, dtype=np.uint8)  # in the stored order: slabs copy straight in
        for index in volume.slabs():
            out[index] = window.apply(volume.values(index))
    return out


@contextlib.contextmanager
def memory_named(path: Path, what: str):
    """A MemoryError as the one-line error that names the volume."""
    try:
        yield
    except MemoryError:
        raise DataError(f"{path}: the {what} is too large for the memory available; read it on a machine "
                        "with more memory, or pass `skip_bad` to leave it out") from None


@contextlib.contextmanager
def quiet(logger: logging.Logger):
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
