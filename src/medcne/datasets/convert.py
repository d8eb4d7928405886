"""Turning arrays of any common layout into uint8 N x H x W x C images.

Channel handling (the ``channels`` option of every reader):

- ``"keep"`` (default): one-channel images stay one-channel, RGB stays RGB,
  RGBA loses its alpha channel (noted in ``ImageSet.notes``).
- ``"rgb"``: one-channel images are repeated to three channels; RGBA loses alpha.
- ``"gray"``: everything becomes one channel with the ITU-R 601-2 luma
  weights (0.299, 0.587, 0.114), as PIL's ``convert("L")``.

Pixel values: uint8 as is; float arrays must be finite and lie in [0, 1]
(scaled by 255); integer arrays must lie in 0..255; 16-bit image files are
scaled by their bit depth (value / 257).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from ..defaults import chunk_rows
from ..errors import MedcneError, PixelRangeError
from .memory import check_memory

CHANNEL_MODES = ("keep", "rgb", "gray")


def check_channels(channels: str) -> str:
    if channels not in CHANNEL_MODES:
        raise MedcneError(
            f"`channels` must be one of {', '.join(repr(c) for c in CHANNEL_MODES)}; got {channels!r}"
        )
    return channels


def parse_size(size) -> tuple[int, int] | None:
    """``None``, an int, or (H, W) -> (H, W) or None."""
    if size is None:
        return None
    given = size  # for the message: the text as typed ('0x5'), not the tuple parsed from it
    if isinstance(size, str):
        parts = size.lower().replace("x", ",").split(",")
        try:
            size = tuple(int(p) for p in parts) if len(parts) > 1 else int(parts[0])
        except ValueError:
            raise MedcneError(f"`size` must be an integer such as 28 or HxW such as 96x96; got {size!r}") from None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    whole = isinstance(size, (tuple, list)) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    if not whole or len(size) != 2 or min(size) < 1:  # 16.5 was an internal TypeError, (16.5, 16) cut to 16
        raise MedcneError(f"`size` must be a positive integer or HxW such as 28x32 (in Python also a "
                          f"(height, width) pair); got {given!r}")
    return tuple(int(s) for s in size)


# Float and integer arrays are checked and converted in blocks of about this many
# bytes, so that a large array needs no float64 copy of itself.
_BLOCK_BYTES = 1 << 25


def check_pixels(block: np.ndarray, where: str, offset: int = 0, index: np.ndarray | None = None) -> None:
    """Raise PixelRangeError unless ``block`` (images along axis 0) holds valid pixels.

    Floats must be finite and lie in [0, 1]; integers in 0..255. ``offset`` is the
    index of ``block[0]`` in the whole dataset (or ``index[i]`` that of ``block[i]``),
    so the message names the image.
    """
    if block.dtype == np.uint8 or block.size == 0:
        return
    per_image = block.reshape(len(block), -1)
    name = (lambda i: int(index[i])) if index is not None else (lambda i: offset + i)
    if block.dtype.kind == "f":
        finite = np.isfinite(per_image).all(axis=1)
        if not finite.all():
            first = name(int(np.flatnonzero(~finite)[0]))
            raise PixelRangeError(
                f"{where}: float pixels of image {first} (counting from 0) are NaN or infinite; clean the data first"
            )
        low, high, kind, fix = 0.0, 1.0, "float pixels must lie in [0, 1]", "scale them to [0, 1] or store uint8"
    elif block.dtype.kind in "iub":
        low, high, kind, fix = 0, 255, "integer pixels must lie in 0..255", "rescale them to uint8"
    else:
        raise MedcneError(f"{where}: cannot use pixels of dtype {block.dtype}; store uint8, or float in [0, 1]")
    lo, hi = per_image.min(axis=1), per_image.max(axis=1)
    bad = np.flatnonzero((lo < low) | (hi > high))
    if len(bad):
        i = int(bad[0])
        raise PixelRangeError(
            f"{where}: {kind}; image {name(i)} (counting from 0) holds values in "
            f"[{lo[i]:.4g}, {hi[i]:.4g}]; {fix}"
        )


def block_rows(image_bytes: int, block_bytes: int = _BLOCK_BYTES) -> int:
    """How many images of ``image_bytes`` each make a block of about ``block_bytes``."""
    return chunk_rows(image_bytes, block_bytes)


def to_uint8(images: np.ndarray, where: str, offset: int = 0, index: np.ndarray | None = None) -> np.ndarray:
    """uint8 as is; floats in [0, 1] are scaled to 0..255; integers must lie in 0..255.

    Checked and converted block by block (images along axis 0), so NaN, infinity
    or a value out of range raises :class:`PixelRangeError` naming the image.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind not in "fiu" or images.ndim == 0:  # bool: masks, not images (0/1 would be near black)
        raise MedcneError(f"{where}: cannot use images of dtype {images.dtype}; pass uint8 or float in [0, 1]")
    out = np.empty(images.shape, dtype=np.uint8)
    step = block_rows(images[:1].nbytes * 8)  # room for float64 temporaries
    for start in range(0, len(images), step):
        block = images[start : start + step]
        check_pixels(block, where, offset + start, None if index is None else index[start : start + step])
        out[start : start + step] = np.round(block * 255.0) if block.dtype.kind == "f" else block
    return out


def to_nhwc(images: np.ndarray, where: str) -> np.ndarray:
    """Accept N x H x W, N x H x W x C or N x C x H x W (C in 1, 3, 4)."""
    if images.ndim == 3:
        return images[..., None]
    if images.ndim != 4:
        raise MedcneError(
            f"{where}: images must be N x H x W or N x H x W x C; got shape {images.shape}"
        )
    if images.shape[-1] in (1, 3, 4):
        return images
    if images.shape[1] in (1, 3, 4):
        return np.moveaxis(images, 1, -1)
    raise MedcneError(f"{where}: cannot tell the channel axis of shape {images.shape}; use N x H x W x C")


def convert_channels(images: np.ndarray, channels: str, where: str, notes: list[str]) -> np.ndarray:
    """Apply the ``channels`` mode to uint8 N x H x W x C images."""
    check_channels(channels)
    c = images.shape[-1]
    if c == 4:
        notes.append("alpha channel dropped (RGBA -> RGB)")
        images, c = images[..., :3], 3
    if c == 2:
        raise MedcneError(f"{where}: two-channel images are not supported; give 1 or 3 channels")
    if channels == "rgb" and c == 1:
        return np.repeat(images, 3, axis=-1)
    if channels == "gray" and c == 3:
        out = np.empty(images.shape[:-1] + (1,), dtype=np.uint8)
        weights = np.array([0.299, 0.587, 0.114], np.float32)
        step = block_rows(images[:1].size * 4)  # a float32 copy per block, not of the whole set
        for i in range(0, len(images), step):
            luma = images[i : i + step].astype(np.float32) @ weights
            out[i : i + step, ..., 0] = np.round(luma).clip(0, 255)
        return out
    return np.ascontiguousarray(images)


def resize_images(images: np.ndarray, size: tuple[int, int] | None, where: str = "images") -> np.ndarray:
    """Resize uint8 N x H x W x C to ``size`` (H, W) with antialiased bilinear filtering.

    The memory the result needs (N x H x W x C bytes) is checked first.
    """
    if size is None or images.shape[1:3] == size:
        return images
    h, w = size
    shape = (len(images), h, w, images.shape[-1])
    check_memory(
        int(np.prod(shape, dtype=np.float64)), where,
        f"resizing {len(images):,} images to {h}x{w}x{shape[-1]}", "choose a smaller `size` (or a `subset`)",
    )
    out = np.empty(shape, dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = resize_one(img, size)
    return out


def resize_one(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one uint8 H x W x C image to (H, W)."""
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    arr = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
    return arr[..., None] if arr.ndim == 2 else arr


def prepare_array(images, where: str, size, channels: str, notes: list[str]) -> np.ndarray:
    """Any accepted array -> uint8 N x H x W x C, resized and channel-converted."""
    images = to_uint8(to_nhwc(np.asarray(images), where), where)
    return resize_images(convert_channels(images, channels, where, notes), parse_size(size), where)


# PIL's modes of more than 8 bits per pixel (one channel): 16-bit PNG and TIFF
# open as "I;16*" (older Pillow: "I"), 32-bit float TIFF as "F".
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


@dataclass
class DecodeLog:
    """What :func:`pil_to_array` did to the files it converted, turned into notes."""

    high_depth: int = 0
    high_depth_max: int = 0
    alpha: int = 0
    turned: int = 0
    warned: int = 0
    warning: str = ""

    def notes(self) -> list[str]:
        out = []
        if self.turned:
            out.append(f"{self.turned} image file(s) turned as their EXIF orientation tag says, as image viewers "
                       "show them (cameras store a photo as taken, and tag how to turn it upright)")
        if self.warned:
            out.append(f"{self.warned} image file(s) decoded with warnings from PIL (first: {self.warning})")
        if self.high_depth:
            note = (
                f"{self.high_depth} 16-bit image file(s) scaled to 8 bits by their bit depth "
                "(value / 257, so 65535 -> 255)"
            )
            if self.high_depth_max < 4096:
                note += (
                    f"; their largest value is {self.high_depth_max} (12 bits or fewer), so they look dark: "
                    "stretch them to the full 16-bit range first if contrast matters"
                )
            out.append(note)
        if self.alpha:
            out.append(f"alpha channel dropped from {self.alpha} image file(s)")
        return out


def high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """A one-channel image of more than 8 bits -> uint8 H x W, scaled by the bit depth.

    16-bit values become round(v / 257) (0 -> 0, 65535 -> 255): one fixed scale
    for every file, so intensities stay comparable across the dataset (a per-image
    stretch would not). Mode "I" is taken as 16-bit (older Pillow opens 16-bit PNG
    so); float ("F") pixels must lie in [0, 1]. Raises PixelRangeError otherwise.
    """
    a = np.asarray(img)
    if img.mode == "F":
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise PixelRangeError("32-bit float pixels outside [0, 1] or not finite; save as 8- or 16-bit")
        return np.round(a * 255.0).astype(np.uint8)
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() > 65535:
        raise PixelRangeError(f"32-bit integer pixels in {a.min()}..{a.max()} do not fit 16 bits; save as 8- or 16-bit")
    return ((a + 128) // 257).astype(np.uint8)


def output_channels(mode: str, channels: str) -> int:
    """The channels :func:`pil_to_array` gives an image of PIL ``mode`` (known from a file's header)."""
    if channels != "keep":
        return 3 if channels == "rgb" else 1
    return 1 if mode in HIGH_DEPTH_MODES or mode in ("L", "1", "LA", "La") else 3


EXIF_ORIENTATION = 274  # the tag's number (PIL.ExifTags.Base.Orientation in Pillow 9.4 and later)


def upright(img: Image.Image, log: DecodeLog) -> Image.Image:
    """A decoded image file turned as its EXIF orientation tag says, as image viewers show it."""
    if img.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9):
        log.turned += 1
        return ImageOps.exif_transpose(img)
    return img


def pil_to_array(img: Image.Image, channels: str, log: DecodeLog | None = None) -> np.ndarray:
    """A decoded PIL image -> uint8 H x W x C following the ``channels`` mode.

    16-bit images are scaled by their bit depth (see :func:`high_depth_to_uint8`)
    instead of being clipped at 255 by PIL; ``log`` counts what was done.
    """
    log = log if log is not None else DecodeLog()
    mode = img.mode
    if mode in HIGH_DEPTH_MODES:
        arr = high_depth_to_uint8(img)[..., None]
        if mode != "F":
            log.high_depth += 1
            log.high_depth_max = max(log.high_depth_max, int(np.asarray(img).max()))
        return np.repeat(arr, 3, axis=-1) if channels == "rgb" else arr
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        log.alpha += 1
    if channels == "gray":
        img = img.convert("L")
    elif channels == "rgb" or mode not in ("L", "RGB"):
        # Palette, CMYK, RGBA ... become RGB; bilevel and gray+alpha stay one channel unless rgb was asked.
        img = img.convert("L" if mode in ("1", "LA", "La") and channels == "keep" else "RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr
