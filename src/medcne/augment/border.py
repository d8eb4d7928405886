"""The fill colour of rotations: a dataset's mean border colour, and augmenters that use it."""

from __future__ import annotations

import numpy as np
import torch

from ..defaults import PRESET, chunk_rows
from ..errors import MedcneError
from .augmenter import Augmenter
from .geometry import needs_fill


def border_colour(images, chunk: int | None = None) -> tuple[float, ...]:
    """Mean over all images of each image's mean border-pixel colour.

    The border is the outermost ring of pixels (first and last row and column),
    each pixel counted once. Every image has the same number of border pixels,
    so this is also the mean of all border pixels of the dataset.

    Parameters
    ----------
    images : ndarray (N, H, W, C), a lazy store of that shape, or Tensor (N, C, H, W)
        uint8 (0..255) or float in [0, 1], C in {1, 3}. Read ``chunk`` images at a time,
        so lazily read stores (e.g. ``ImageSet.images`` of PCam) never load whole.
    chunk : int, optional
        Images per chunk (default: :data:`medcne.defaults.READ_CHUNK_MB` of uint8 images).

    Returns
    -------
    tuple of C floats in [0, 1]
    """
    channels_first = isinstance(images, torch.Tensor)
    shape = tuple(images.shape)
    c = shape[1] if channels_first else (shape[3] if len(shape) == 4 else None)
    if len(shape) != 4 or c not in (1, 3) or shape[0] == 0:
        layout = "N x C x H x W tensor" if channels_first else "N x H x W x C array"
        raise MedcneError(f"`images` must be a non-empty {layout} with C = 1 or 3; got shape {shape}")
    n = shape[0]
    h, w = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    chunk = chunk or chunk_rows(h * w * c)
    ring = np.zeros((h, w), dtype=bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    total = np.zeros(c, dtype=np.float64)
    scale = None
    for start in range(0, n, chunk):
        part = images[start:start + chunk]
        if channels_first:
            part = part.detach().cpu().permute(0, 2, 3, 1).numpy()
        part = np.asarray(part)
        if scale is None:
            scale = 1.0 / 255.0 if part.dtype == np.uint8 else 1.0
        # (n, ring pixels, C) summed in float64 so large datasets lose no precision.
        total += part[:, ring, :].sum(axis=(0, 1), dtype=np.float64)
    mean = total * scale / (n * int(ring.sum()))
    return tuple(float(v) for v in mean)


def augmenter_for(images, preset: str = PRESET, *, fill="border", **options) -> Augmenter:
    """An :class:`Augmenter` for a dataset: the fill colour is its border colour where needed.

    Parameters
    ----------
    images : ndarray (N, H, W, C) or a lazy store of that shape
        The dataset's images (read in chunks, only when a fill colour is needed).
    preset : str
        See :class:`Augmenter`.
    fill : 'border', None or tuple of floats
        ``'border'`` (default): :func:`border_colour` of ``images`` when the
        preset's rotations can uncover corners of images of this size
        (:func:`~.geometry.needs_fill`), else no fill; ``None``: black; a tuple:
        that colour.
    **options
        Other :class:`Augmenter` arguments (crop, jitter, grayscale, engine...).
    """
    if isinstance(fill, str) and fill == "border":
        rotation = Augmenter(preset, **options).config.rotation  # validates preset and options first
        h, w = images.shape[1:3]
        fill = border_colour(images) if needs_fill(rotation, h, w) else None
    return Augmenter(preset, fill=fill, **options)
