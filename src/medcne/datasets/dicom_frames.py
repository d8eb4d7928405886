"""A DICOM file's frames, decoded and turned into 8-bit images a block of frames at a time.

A multi-frame file is never decoded whole: pydicom's ``pixel_array`` of a
400-frame CT (200 MB) and its rescaled float64 copy held five times the file.
Its frames are decoded one by one (``pydicom.pixels.iter_pixels``, from the
file itself when the pixel data is larger than ``READ_CHUNK_MB``, which
:func:`read_dataset` then leaves unread) and converted ``READ_CHUNK_MB`` of float64 values
at a time, giving the same pixels as the whole array did. A one-frame file is
decoded by ``pixel_array`` as it always was. The exceptions say why a file is not used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..defaults import chunk_rows, read_chunk_bytes
from ..errors import printable
from .dicom_identity import Identity, phi_values
from .files import shortened
from .window import FILE, Window, auto_window, file_window, first_number, unusable_window

UNDEFINED_LENGTH = 0xFFFFFFFF
# Elements that hold an image other than Pixel Data (float pixels, spectra): their files have Rows and Columns.
OTHER_DATA = ("FloatPixelData", "DoubleFloatPixelData", "SpectroscopyData")


class Unused(Exception):
    """A file that is not used; the message is the reason shown to the user. ``identity``: what its
    header gave (see :mod:`.dicom_identity`), ``uids_unknown``: whether that lacks any of its UIDs."""

    identity: Identity = (frozenset(), frozenset())
    uids_unknown = True


class Skip(Unused):
    """A DICOM file that holds no image (a note, not an error)."""


class Bad(Unused):
    """A file that cannot be used."""


class CutOff(Bad):
    """A file that ends before its pixel data: its last header value (a UID, say) may be cut too, so the
    names about it are coded as for a file whose UIDs are unknown."""


class Codec(Bad):
    """Pixel data in a compressed transfer syntax that no installed plugin decodes."""


class NoWindow(Exception):
    """``--window file`` and a grey file that states no usable window: an error for the whole command.
    Its args: the file's identity (phi values, UIDs) and what it states instead (None: nothing)."""


def read_dataset(path: Path, pydicom):
    """The dataset of ``path`` with pixel data larger than ``READ_CHUNK_MB`` left in the file (deferred),
    except in a deflated file, whose offsets are not the file's: that is read whole."""
    ds = pydicom.dcmread(path, force=True, defer_size=read_chunk_bytes())
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    return pydicom.dcmread(path, force=True) if getattr(syntax, "is_deflated", False) else ds


def frame_count(ds) -> int:
    """The frames the file states (NumberOfFrames; 1 when it states none)."""
    return int(first_number(ds.get("NumberOfFrames")) or 1)


def declared_image(ds) -> str | None:
    """What in a header without pixel data declares an image (an image SOP class, Rows and Columns),
    None when nothing does: such a file ends before its pixel data (cut off), it is not a report."""
    if any(name in ds for name in OTHER_DATA):
        return None
    sop = getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    name = getattr(sop, "name", "")
    if "Image Storage" in name:
        return printable(name, 60)
    rows, columns = first_number(ds.get("Rows")), first_number(ds.get("Columns"))
    return f"{rows:.0f} x {columns:.0f} pixels" if rows and columns else None


def _cut_off(ds, path: Path) -> str | None:
    """Why the pixel data of ``ds`` is incomplete (its file ends before the length it states), or None."""
    from pydicom.dataelem import RawDataElement

    raw = ds.get_item("PixelData", keep_deferred=True)
    if not isinstance(raw, RawDataElement) or raw.length in (0, UNDEFINED_LENGTH):
        return None
    have = len(raw.value) if raw.value is not None else path.stat().st_size - raw.value_tell
    if have >= raw.length:
        return None
    return f"cut off in its pixel data: the file holds {max(have, 0):,} of its {raw.length:,} bytes"


def blocks(ds, path: Path, pydicom) -> Iterator[np.ndarray]:
    """The frames of ``ds`` (read from ``path`` by :func:`read_dataset`), decoded: (n, H, W) or (n, H, W, 3)
    blocks of about ``READ_CHUNK_MB`` as float64, one block for a one-frame file."""
    if why := _cut_off(ds, path):
        raise Bad(why)
    if frame_count(ds) == 1:
        yield _whole(ds, pydicom)
        return
    frames = _frames(ds, path, pydicom)
    if (first := _next(frames, ds, pydicom)) is None:
        raise Bad("pixel data cannot be decoded (no frames)")
    per = chunk_rows(8 * first.size)
    block = [first]
    while (frame := _next(frames, ds, pydicom)) is not None:
        if len(block) == per:
            yield np.stack(block)
            block = []
        block.append(frame)
    yield np.stack(block)


def _whole(ds, pydicom) -> np.ndarray:
    """All frames of ``ds`` from ``pixel_array``: (F, H, W) or (F, H, W, 3)."""
    try:
        arr = ds.pixel_array
    except Exception as exc:  # decoders raise RuntimeError, ValueError, NotImplementedError...
        raise _decoding_error(exc, ds, pydicom) from None
    colour = int(ds.get("SamplesPerPixel", 1) or 1) == 3
    if frame_count(ds) == 1 or arr.ndim == (3 if colour else 2):
        arr = arr[None]
    return arr


def _frames(ds, path: Path, pydicom) -> Iterator[np.ndarray]:
    """The frames of ``ds`` one by one, from the file itself when its pixel data was left there."""
    from pydicom.dataelem import RawDataElement

    raw = ds.get_item("PixelData", keep_deferred=True)
    if not (isinstance(raw, RawDataElement) and raw.value is None):
        yield from pydicom.pixels.iter_pixels(ds)
        return
    meta = getattr(ds, "file_meta", None)
    with open(path, "rb") as fh:
        yield from pydicom.pixels.iter_pixels(fh, transfer_syntax_uid=meta and meta.get("TransferSyntaxUID"))


def _next(frames: Iterator[np.ndarray], ds, pydicom) -> np.ndarray | None:
    """The next decoded frame (None after the last), decoding errors as :class:`Bad`."""
    try:
        return next(frames, None)
    except Exception as exc:  # as for pixel_array
        raise _decoding_error(exc, ds, pydicom) from None


def _decoding_error(exc: Exception, ds, pydicom) -> Bad:
    ts = getattr(ds, "file_meta", None) and ds.file_meta.get("TransferSyntaxUID")
    if ts is not None and ts.is_compressed:
        decoder_ok = _decoder_available(pydicom, ts)
        last_line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        reason = f"compressed as {ts.name!r}, " + (
            "which no installed decoder reads" if not decoder_ok else f"not decoded ({shortened(last_line, 80)})")
        return Codec(reason)
    return Bad(f"pixel data cannot be decoded ({type(exc).__name__})")


def _decoder_available(pydicom, ts) -> bool:
    try:
        return bool(pydicom.pixels.get_decoder(ts).is_available)
    except Exception:  # no decoder at all for this syntax
        return False


def _check_rescale(ds) -> None:
    """Refuse a rescale slope or intercept that is not a finite number (NaN would make the image black)."""
    if "ModalityLUTSequence" in ds:  # the LUT is used instead
        return
    for attr in ("RescaleSlope", "RescaleIntercept"):
        value = ds.get(attr)
        if value not in (None, "") and first_number(value) is None:
            raise Bad(f"{attr} {printable(str(value))[:30]!r} is not a finite number")


def to_uint8(ds, arr: np.ndarray, window, pydicom) -> tuple[list[np.ndarray], bool]:
    """Frames of raw pixels (a block) -> uint8 H x W x C frames, and whether they are colour."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        arr = pydicom.pixels.apply_color_lut(arr, ds)
    if arr.ndim == 4:  # colour: scaled by the bit depth, never windowed
        bits = 8 if arr.dtype == np.uint8 else int(ds.get("BitsStored") or arr.dtype.itemsize * 8)
        if photometric == "PALETTE COLOR" and arr.dtype != np.uint8:
            bits = 16
        scale = 255.0 / (2 ** min(bits, 32) - 1)
        out = arr if arr.dtype == np.uint8 else np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return [f for f in out], True
    _check_rescale(ds)
    values = pydicom.pixels.apply_modality_lut(arr, ds)
    own = file_window(ds)
    if window == FILE and own is None:
        raise NoWindow(phi_values(ds), unusable_window(ds))
    frames = []
    for v in values:
        w = window if isinstance(window, Window) else own or auto_window(v)
        img = w.apply(v)
        frames.append((255 - img if photometric == "MONOCHROME1" else img)[..., None])
    return frames, False
