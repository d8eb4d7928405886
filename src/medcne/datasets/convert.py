"""Turning arrays of any common layout into uint8 N x H x W x C images.

Channel handling (the ``channels`` option of every reader):

- ``"keep"`` (default): one-channel images stay one-channel, RGB stays RGB,
  RGBA loses its alpha channel (noted in ``ImageSet.notes``).
- ``"rgb"``: one-channel images are repeated to three channels; RGBA loses alpha.
- ``"gray"``: everything becomes one channel with the ITU-R 601-2 luma
  weights (0.299, 0.587, 0.114), as PIL's ``convert("L")``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import MedcneError, PixelRangeError

CHANNEL_MODES = ("keep", "rgb", "gray")


def check_channels(channels: str) -> str:
    if channels not in CHANNEL_MODES:
        raise MedcneError(
            f"channels must be one of {', '.join(repr(c) for c in CHANNEL_MODES)}; got {channels!r}"
        )
    return channels


def parse_size(size) -> tuple[int, int] | None:
    """``None``, an int, or (H, W) -> (H, W) or None."""
    if size is None:
        return None
    if isinstance(size, str):
        parts = size.lower().replace("x", ",").split(",")
        try:
            size = tuple(int(p) for p in parts) if len(parts) > 1 else int(parts[0])
        except ValueError:
            raise MedcneError(f"size must be an integer such as 28 or HxW such as 96x96; got {size!r}") from None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise MedcneError(f"size must be a positive integer or (height, width); got {size!r}")
    return size


def to_uint8(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 as is; floats must lie in [0, 1] and are scaled to 0..255."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            raise PixelRangeError(f"{where}: float images contain NaN or infinite values; clean them first")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise PixelRangeError(
                f"{where}: float images must lie in [0, 1]; found values in [{lo:.3g}, {hi:.3g}]. "
                "Scale them to [0, 1] or pass uint8 images"
            )
        return np.round(images * 255.0).astype(np.uint8)
    if images.dtype.kind in "iub":
        lo, hi = int(images.min()), int(images.max())
        if lo < 0 or hi > 255:
            raise PixelRangeError(
                f"{where}: integer images must lie in 0..255; found {lo}..{hi}. Rescale them to uint8"
            )
        return images.astype(np.uint8)
    raise MedcneError(f"{where}: cannot use images of dtype {images.dtype}; pass uint8 or float in [0, 1]")


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
        luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.round(luma).clip(0, 255).astype(np.uint8)[..., None]
    return np.ascontiguousarray(images)


def resize_images(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize uint8 N x H x W x C to ``size`` (H, W) with antialiased bilinear filtering."""
    if size is None or images.shape[1:3] == size:
        return images
    h, w = size
    out = np.empty((len(images), h, w, images.shape[-1]), dtype=np.uint8)
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
    images = to_nhwc(to_uint8(np.asarray(images), where), where)
    return resize_images(convert_channels(images, channels, where, notes), parse_size(size))


def pil_to_array(img: Image.Image, channels: str) -> np.ndarray:
    """A decoded PIL image -> uint8 H x W x C following the ``channels`` mode."""
    mode = img.mode
    if channels == "gray":
        img = img.convert("L")
    elif channels == "rgb" or mode not in ("L", "RGB"):
        # Palette, CMYK, RGBA, 16-bit ... become RGB unless one channel was kept.
        img = img.convert("L" if mode in ("I;16", "I", "F", "1") and channels == "keep" else "RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr
