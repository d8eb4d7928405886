"""Tissue detection on a low-resolution image of a slide, and the slide's thumbnail.

The slide is read once at low resolution (a pyramid level, reduced further by
block averaging, in strips so that memory stays bounded for slides without a
pyramid). Tissue is where the saturation (HSV) lies above Otsu's threshold, kept
between a floor (glass, white and grey, has almost none, so a slide with no
tissue gives no tiles rather than a threshold in the noise) and a ceiling (on
a slide mostly covered, Otsu would split pale from dark tissue); small holes
are closed. A tile keeps when its share of tissue reaches ``min_tissue``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .slides import SlideGeometry, level_for, reading, to_rgb

# Bounds on Otsu's threshold of saturation (0-255). Glass lies below about 10, so below 15 a
# threshold would cut into noise (a slide of bare glass must give no tissue). Above 30 it would
# only split stained tissue into pale and dark: on a slide mostly covered, Otsu's two classes
# are pale and dark tissue, not glass and tissue (measured on a BloodMNIST mosaic of 40 cells in
# 64: Otsu 84, and all but 2 cells lost; plasma lies at 34-54, its 5th-50th percentiles).
MIN_SATURATION = 15
MAX_SATURATION = 30
# Mask pixels per tile side wanted, and the bounds of the low-resolution image's longest side
# (at least MIN_LOWRES_SIDE for a thumbnail worth showing, at most MAX_LOWRES_SIDE for memory).
MASK_PER_TILE = 8
THUMBNAIL_SIDE = 1024
MIN_LOWRES_SIDE = 512
# About 16 bytes per pixel while planning (image, saturation, mask, closing, summed areas): 2048
# px a side bounds that near 70 MB (4096 gave 138 MB added on an 81,920-px slide).
MAX_LOWRES_SIDE = 2048
# Radius in mask pixels of the closing that fills small holes (nuclei-free gaps, fat).
CLOSE_RADIUS = 2
STRIP_BYTES = 8 << 20
ROWS = 256


def lowres_downsample(geometry: SlideGeometry, tile_side: float) -> float:
    """Level-0 pixels per pixel of the low-resolution image used for tissue and thumbnail."""
    longest = max(geometry.width, geometry.height)
    wanted = min(tile_side / MASK_PER_TILE, longest / MIN_LOWRES_SIDE)
    return max(1.0, wanted, longest / MAX_LOWRES_SIDE)


def read_lowres(slide, geometry: SlideGeometry, downsample: float,
                where: str = "slide") -> tuple[np.ndarray, float]:
    """The slide as RGB uint8 at ``downsample`` or up to twice coarser; returns it and its exact downsample.

    Read from the coarsest level not coarser than asked, in strips of whole
    rows, each reduced by an integer block mean (factor rounded up), so memory
    stays near the size of the result. A strip that cannot be decoded is a
    :class:`~medcne.datasets.slides.SlideError` naming the slide (``where``).
    """
    level = level_for(geometry, downsample)
    level_ds = geometry.downsamples[level]
    # Rounded up, so the image is never larger than asked (its side stays within MAX_LOWRES_SIDE).
    k = max(1, math.ceil(downsample / level_ds - 1e-6))
    width, height = geometry.dimensions[level]
    out_w, out_h = width // k, height // k
    rows = max(1, STRIP_BYTES // (4 * max(width, 1) * k)) * k
    out = np.empty((out_h, out_w, 3), np.uint8)
    for top in range(0, out_h * k, rows):
        n = min(rows, out_h * k - top)
        # read_region takes level-0 coordinates for the corner and level pixels for the size.
        with reading(where, f"the low-resolution image for tissue detection (level {level})"):
            region = slide.read_region((0, int(round(top * level_ds))), level, (out_w * k, n))
        # PIL's box reduction: 20 times faster here than numpy's block sums over a 5-D view.
        out[top // k: top // k + n // k] = to_rgb(region.reduce(k) if k > 1 else region)
    return out, level_ds * k


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of uint8 RGB, scaled to 0-255, as uint8.

    Computed in bands of rows so that the float temporaries stay small
    (the low-resolution image of a large slide has millions of pixels).
    """
    out = np.empty(rgb.shape[:2], np.uint8)
    for top in range(0, rgb.shape[0], ROWS):
        band = rgb[top: top + ROWS]
        # Channel by channel: numpy reduces a last axis of length 3 slowly.
        r, g, b = band[..., 0], band[..., 1], band[..., 2]
        hi = np.maximum(np.maximum(r, g), b).astype(np.float32)
        lo = np.minimum(np.minimum(r, g), b)
        out[top: top + ROWS] = ((hi - lo) * 255 / np.maximum(hi, 1) + 0.5).astype(np.uint8)
    return out


def histogram(values: np.ndarray) -> np.ndarray:
    """Counts of each value 0-255 of a uint8 array (in bands: bincount copies its input to int64)."""
    flat = values.reshape(-1)
    step = ROWS * 4096
    return sum(np.bincount(flat[i: i + step], minlength=256) for i in range(0, max(len(flat), 1), step))


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of uint8 values (0-255): maximises the between-class variance."""
    values = np.asarray(values)
    if values.dtype != np.uint8:
        values = np.clip(values, 0, 255).astype(np.uint8)
    hist = histogram(values).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 255.0
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 / total - m0) ** 2 / (w0 * w1) * total
    between[~np.isfinite(between)] = -1
    return float(np.argmax(between))


def _shift_any(mask: np.ndarray, radius: int, axis: int, combine) -> np.ndarray:
    """Max (``np.logical_or``) or min (``np.logical_and``) over a window of 2r+1 along ``axis``."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    # Edges pad with the neutral value, so closing neither grows nor eats the border.
    padded = np.pad(mask, pad, constant_values=combine is np.logical_and)
    out = mask.copy()
    n = mask.shape[axis]
    for s in range(2 * radius + 1):
        out = combine(out, np.take(padded, range(s, s + n), axis=axis))
    return out


def close_holes(mask: np.ndarray, radius: int = CLOSE_RADIUS) -> np.ndarray:
    """Binary closing with a square of side 2*radius+1: holes and gaps narrower than that fill."""
    if radius < 1:
        return mask
    grown = _shift_any(_shift_any(mask, radius, 0, np.logical_or), radius, 1, np.logical_or)
    return _shift_any(_shift_any(grown, radius, 0, np.logical_and), radius, 1, np.logical_and)


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of a low-resolution RGB image (Otsu on saturation within bounds, holes closed)."""
    sat = saturation(rgb)
    threshold = min(max(otsu_threshold(sat), MIN_SATURATION), MAX_SATURATION)
    return close_holes(sat > threshold)


def tissue_share(mask: np.ndarray, mask_downsample: float, x: np.ndarray, y: np.ndarray,
                 side: float) -> np.ndarray:
    """Share of tissue (0-1) in each tile: corners (x, y) and ``side`` in level-0 pixels.

    Summed-area table over the mask; tile bounds rounded to whole mask pixels
    (at least one), parts beyond the mask count as glass.
    """
    h, w = mask.shape
    table = np.zeros((h + 1, w + 1), np.int32)  # at most 2048 x 2048 mask pixels: int32 holds the sums
    inner = table[1:, 1:]
    np.cumsum(mask, axis=0, dtype=np.int32, out=inner)  # in place: no full-size temporaries
    np.cumsum(inner, axis=1, out=inner)
    x0 = np.clip(np.round(x / mask_downsample).astype(np.int64), 0, w)
    y0 = np.clip(np.round(y / mask_downsample).astype(np.int64), 0, h)
    cells = max(1, round(side / mask_downsample))
    x1, y1 = np.minimum(x0 + cells, w), np.minimum(y0 + cells, h)
    inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    return inside / float(cells * cells)


def thumbnail(rgb: np.ndarray, max_side: int = THUMBNAIL_SIDE) -> tuple[Image.Image, float]:
    """The low-resolution image shrunk to at most ``max_side``; returns it and the shrink factor."""
    h, w = rgb.shape[:2]
    factor = max(1.0, max(h, w) / max_side)
    image = Image.fromarray(rgb)
    if factor > 1:
        image = image.resize((max(1, math.floor(w / factor)), max(1, math.floor(h / factor))),
                             Image.Resampling.BOX)
    return image, factor

