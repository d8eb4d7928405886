"""Whole-slide images read with OpenSlide: resolution, the pyramid level to read, tiles at one scale.

A tile of ``tile_size`` output pixels at ``mpp`` microns per pixel covers
``tile_size * downsample`` level-0 pixels, where ``downsample = mpp / slide mpp``.
It is read from the pyramid level closest above that resolution (the coarsest
level not coarser than asked) and resized down with area averaging, so that a
slide scanned at 40x and one scanned at 20x give tiles of the same scale.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError, MedcneError, require
from .files import shortened

# Microns per pixel that scanners and QuPath take for a 1x objective: 10x is about 1 um/px.
MPP_AT_1X = 10.0
# Slack when comparing a level's downsample with the one asked (scanners store 3.99998 for 4).
LEVEL_SLACK = 1e-3
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")


class SlideError(DataError):
    """A slide could not be opened or read, or states no resolution."""


def openslide_module():
    """The ``openslide`` module, or one line naming the extra to install."""
    return require("openslide", "slides")


@dataclass(frozen=True)
class SlideGeometry:
    """Sizes and resolution of a slide's pyramid.

    Attributes
    ----------
    dimensions : tuple of (width, height)
        Per level, in that level's pixels; level 0 is the full resolution.
    downsamples : tuple of float
        Level-0 pixels per pixel of each level.
    mpp : float or None
        Microns per level-0 pixel (the mean of x and y), None when not stated.
    objective : float or None
        Objective power of level 0 (e.g. 40), None when not stated.
    """

    dimensions: tuple[tuple[int, int], ...]
    downsamples: tuple[float, ...]
    mpp: float | None
    objective: float | None

    @property
    def width(self) -> int:
        return self.dimensions[0][0]

    @property
    def height(self) -> int:
        return self.dimensions[0][1]


@dataclass(frozen=True)
class Scale:
    """How tiles are read: level, level pixels per output pixel, the resulting resolution.

    Attributes
    ----------
    downsample : float
        Level-0 pixels per output pixel (>= 1 is not required: it may be below 1
        only when upsampling was asked, which :func:`choose_scale` refuses).
    level : int
        The pyramid level read.
    level_factor : float
        Pixels of ``level`` per output pixel (>= 1; 1 means no resize).
    mpp : float
        Microns per output pixel; NaN when the slide states no mpp.
    """

    downsample: float
    level: int
    level_factor: float
    mpp: float


def _float_property(props, key: str) -> float | None:
    try:
        value = float(props[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def geometry_of(slide, where: str = "slide") -> SlideGeometry:
    """The :class:`SlideGeometry` of an open ``openslide.OpenSlide`` (``where``: the slide, for messages)."""
    with reading(where, "its properties and level sizes"):
        props = dict(slide.properties)
        dimensions = tuple((int(w), int(h)) for w, h in slide.level_dimensions)
        downsamples = tuple(float(d) for d in slide.level_downsamples)
    mx, my = _float_property(props, "openslide.mpp-x"), _float_property(props, "openslide.mpp-y")
    mpp = (mx + my) / 2 if mx and my else (mx or my)
    return SlideGeometry(
        dimensions=dimensions,
        downsamples=downsamples,
        mpp=mpp,
        objective=_float_property(props, "openslide.objective-power"),
    )


def level_for(geometry: SlideGeometry, downsample: float) -> int:
    """The coarsest level whose downsample does not exceed ``downsample`` (level 0 at least)."""
    ok = [i for i, d in enumerate(geometry.downsamples) if d <= downsample * (1 + LEVEL_SLACK)]
    return max(ok, key=lambda i: geometry.downsamples[i]) if ok else 0


def choose_scale(geometry: SlideGeometry, *, mpp: float | None = None, magnification: float | None = None,
                 where: str = "slide") -> Scale:
    """The level to read and the resize factor for tiles at ``mpp`` (or ``magnification``).

    Parameters
    ----------
    geometry : SlideGeometry
    mpp : float, optional
        Microns per output pixel.
    magnification : float, optional
        Objective power of the output (e.g. 20): relative to the slide's stated
        objective power, or, for a slide that states only its mpp, taken as
        ``10 / magnification`` microns per pixel.
    where : str
        The slide, for messages.

    Raises
    ------
    SlideError
        When the slide states no resolution to scale from, or the request
        would need upsampling.
    """
    if (mpp is None) == (magnification is None):
        raise MedcneError("give exactly one of `mpp` and `magnification`")
    if mpp is not None:
        if geometry.mpp is None:
            raise SlideError(f"{where}: the slide states no resolution (no microns per pixel); "
                             "tile it with `magnification` if it states its objective power, or leave it out")
        downsample, out_mpp = mpp / geometry.mpp, float(mpp)
    elif geometry.objective is not None:
        downsample = geometry.objective / magnification
        out_mpp = geometry.mpp * downsample if geometry.mpp else math.nan
    elif geometry.mpp is not None:
        out_mpp = MPP_AT_1X / magnification
        downsample = out_mpp / geometry.mpp
    else:
        raise SlideError(f"{where}: the slide states neither its objective power nor its microns per pixel, "
                         "so no magnification can be chosen; leave this slide out")
    if downsample < 1 - LEVEL_SLACK:
        asked = f"`mpp` {mpp}" if mpp is not None else f"`magnification` {magnification}"
        raise SlideError(f"{where}: {asked} is finer than the slide's full resolution "
                         f"({_resolution_text(geometry)}); ask for a coarser resolution")
    downsample = max(downsample, 1.0)
    level = level_for(geometry, downsample)
    factor = downsample / geometry.downsamples[level]
    if abs(factor - 1) < LEVEL_SLACK:
        factor = 1.0
    return Scale(downsample=downsample, level=level, level_factor=factor, mpp=out_mpp)


def _resolution_text(geometry: SlideGeometry) -> str:
    parts = ([f"{geometry.mpp:g} um/px"] if geometry.mpp else []) + (
        [f"{geometry.objective:g}x"] if geometry.objective else [])
    return ", ".join(parts)


def tile_grid(geometry: SlideGeometry, scale: Scale, tile_size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Level-0 top-left corners of the whole tiles covering the slide, row by row.

    Returns
    -------
    x, y : ndarray of int64, shape (n,)
        Corners in level-0 pixels; only tiles that lie wholly inside the slide.
    side : float
        Level-0 pixels covered by one tile side (``tile_size * downsample``).
    """
    side = tile_size * scale.downsample
    nx, ny = int(geometry.width // side), int(geometry.height // side)
    cols = np.floor(np.arange(nx) * side + 0.5).astype(np.int64)
    rows = np.floor(np.arange(ny) * side + 0.5).astype(np.int64)
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    return xx.ravel(), yy.ravel(), float(side)


def open_slide(path):
    """Open a slide with OpenSlide; one line naming the file when it cannot be read."""
    openslide = openslide_module()
    path = Path(path)
    if not path.is_file():
        raise SlideError(f"{path}: no such slide file; check the path")
    try:
        return openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as exc:  # OpenSlideUnsupportedFormatError is an OpenSlideError
        raise SlideError(f"{path}: cannot be read as a whole-slide image ({_reason(exc)}); "
                         "check that the file is complete and in a format OpenSlide reads") from exc


def _reason(exc: BaseException) -> str:
    return shortened(exc) or type(exc).__name__


@contextmanager
def reading(where: str, what: str) -> Iterator[None]:
    """Turn an OpenSlide error raised within into one line naming the slide ``where`` and ``what`` was read.

    Every read of an open slide goes through it (properties, the low-resolution
    level, tiles), so that a damaged part of any level is a :class:`SlideError`,
    which ``--skip-bad`` skips, never an internal error.
    """
    openslide = openslide_module()
    try:
        yield
    except openslide.OpenSlideError as exc:
        raise SlideError(f"{where}: {what} cannot be read ({_reason(exc)}); "
                         "the file may be truncated or damaged") from exc


def _opaque(rgba: np.ndarray) -> bool:
    """Whether every alpha is 255; read as 32-bit words (alpha the high byte), 40x faster than a strided min."""
    if sys.byteorder == "little" and rgba.flags.c_contiguous:
        return bool(rgba.view(np.uint32).min() >= 0xFF000000)
    return bool(rgba[..., 3].min() == 255)


def to_rgb(region: Image.Image) -> np.ndarray:
    """An RGBA region from ``read_region`` as uint8 RGB, transparent parts (outside the scan) white."""
    rgba = np.asarray(region)
    if _opaque(rgba):  # as tissue always is: no blending (PIL's convert is 3x faster than numpy's strided copy)
        return np.asarray(region.convert("RGB"))
    a = rgba[..., 3:].astype(np.float32) / 255
    return (rgba[..., :3] * a + 255 * (1 - a) + 0.5).astype(np.uint8)


def read_tile(slide, x: int, y: int, scale: Scale, tile_size: int, where: str = "slide") -> np.ndarray:
    """One tile, ``tile_size`` x ``tile_size`` x 3 uint8, with its top-left corner at level-0 (x, y)."""
    side = max(1, round(tile_size * scale.level_factor))
    with reading(where, f"the tile at x={x}, y={y}"):
        region = slide.read_region((int(x), int(y)), scale.level, (side, side))
    if side != tile_size:
        region = region.resize((tile_size, tile_size), Image.Resampling.BOX)
    return to_rgb(region)


def read_row(slide, x: int, y: int, count: int, scale: Scale, tile_size: int, where: str = "slide") -> np.ndarray:
    """``count`` tiles side by side from level-0 (x, y), read as one region; (count, T, T, 3) uint8.

    Only for tiles read at their level's own size (``level_factor`` 1) from a
    level with a whole downsample: then the tiles of one region are exactly
    those read one by one, and one call replaces ``count`` (OpenSlide decodes
    each stored tile once instead of once per tile cut from it).
    """
    with reading(where, f"the tiles from x={x}, y={y}"):
        region = slide.read_region((int(x), int(y)), scale.level, (count * tile_size, tile_size))
    rgb = to_rgb(region).reshape(tile_size, count, tile_size, 3)
    return rgb.transpose(1, 0, 2, 3)
