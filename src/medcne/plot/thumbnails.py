"""The thumbnail map (the paper's Figures 4 and 5): one representative image per occupied grid cell."""

from __future__ import annotations

import math

import numpy as np

from ..datasets.memory import MARGIN, available_bytes, check_memory
from ..errors import MedcneError
from .maps import _as_map, class_colors

# Peak memory per pixel of the canvas while it is drawn and saved: the RGBA canvas and
# matplotlib's floating-point copies as it resamples it (measured: about 58 bytes).
CANVAS_BYTES_PER_PIXEL = 64
MAX_THUMB_PX = 64


def thumbnail_grid(Z, grid: int = 25) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Cut the plane into square cells and pick the point nearest each occupied cell's centre.

    Parameters
    ----------
    Z : array, shape (N, 2)
    grid : int
        Cells along the longer side of the map's bounding box.

    Returns
    -------
    cells : ndarray of int, shape (M, 2)
        (row, column) of each occupied cell; row 0 is the top.
    chosen : ndarray of int, shape (M,)
        Index of the representative point of each cell.
    frame : (x0, y_top, cell)
        Left edge, top edge and side of a cell, in map units.
    """
    Z = _as_map(Z)
    if not isinstance(grid, (int, np.integer)) or grid < 1:
        raise MedcneError(f"`grid` must be a positive integer; got {grid!r}")
    lo, hi = Z.min(axis=0), Z.max(axis=0)
    cell = float(max((hi - lo).max(), 1e-12)) / grid
    col = np.minimum(((Z[:, 0] - lo[0]) / cell).astype(np.int64), grid - 1)
    row = np.minimum(((hi[1] - Z[:, 1]) / cell).astype(np.int64), grid - 1)
    centre = np.c_[lo[0] + (col + 0.5) * cell, hi[1] - (row + 0.5) * cell]
    dist = ((Z - centre) ** 2).sum(axis=1)
    key = row * grid + col
    # Sort by cell, then by distance: the first point of each cell is its representative.
    order = np.lexsort((dist, key))
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    return np.c_[row[first], col[first]], first, (float(lo[0]), float(hi[1]), cell)


def thumbnail_px(image_side: int, px: int | None = None) -> int:
    """The side of a thumbnail, in pixels: ``px``, else the images' side up to 64."""
    return px or min(image_side, MAX_THUMB_PX)


def check_canvas(grid: int, px: int, name: str = "`grid`") -> None:
    """Refuse a grid whose canvas (``grid`` thumbnails of ``px`` pixels a side) would not fit in memory.

    The line names the largest grid that fits; ``name`` is the option as the user knows it.
    """
    side = grid * px
    available = available_bytes()
    largest = max(int(math.sqrt(MARGIN * (available or 0) / CANVAS_BYTES_PER_PIXEL)) // px, 1)
    check_memory(side * side * CANVAS_BYTES_PER_PIXEL, f"{name} {grid}",
                 f"a thumbnail canvas of {side:,} x {side:,} px ({px} px thumbnails)",
                 f"use {name} {largest} or less")


def _resize(images: np.ndarray, px: int) -> np.ndarray:
    """Nearest-neighbour resize of (M, H, W, C) uint8 to (M, px, px, 3): thumbnails only."""
    _, h, w, c = images.shape
    rows = (np.arange(px) * h / px).astype(np.int64)
    cols = (np.arange(px) * w / px).astype(np.int64)
    out = images[:, rows][:, :, cols]
    return np.repeat(out, 3, axis=3) if c == 1 else out


def plot_thumbnails(
    Z,
    images,
    labels=None,
    class_names=None,
    grid: int = 25,
    px: int | None = None,
    ax=None,
    title: str | None = None,
    border: int = 1,
):
    """Draw one image per occupied cell of a grid over the map, as one RGBA canvas.

    Parameters
    ----------
    Z : array, shape (N, 2)
    images : array or LazyImages, shape (N, H, W, C), uint8
        Indexable by an array of indices (only the chosen images are read).
    labels : array of int, shape (N,), optional
        Each thumbnail gets a border in its class colour (the colours of
        :func:`plot_map`), with a legend of the classes shown.
    grid : int
        Cells along the longer side.
    px : int, optional
        Thumbnail side in pixels; default min(H, 64). A canvas of ``grid * px`` pixels a
        side that would not fit in memory is refused before any image is read.
    ax : Axes, optional
    title : str, optional
    border : int
        Border width in pixels (0: none).

    Returns
    -------
    matplotlib.axes.Axes
        One AxesImage; empty cells are transparent.
    """
    Z = _as_map(Z)
    if len(images) != len(Z):
        raise MedcneError(f"{len(images)} images for {len(Z)} points; give one image per point")
    cells, chosen, (x0, y_top, cell) = thumbnail_grid(Z, grid)
    side = thumbnail_px(images.shape[1], px)
    check_canvas(grid, side)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(8, 8))
    order = np.argsort(chosen)  # lazy stores read increasing indices fastest
    thumbs = np.empty((len(chosen), *np.asarray(images[chosen[order][:1]]).shape[1:]), dtype=np.uint8)
    thumbs[order] = np.asarray(images[chosen[order]])
    thumbs = _resize(thumbs, side)
    legend = None
    if labels is not None and border > 0:
        labels = np.asarray(labels)
        names = [str(c) for c in (class_names or range(int(labels.max()) + 1))]
        rgba = class_colors(len(names))
        c = (rgba[labels[chosen], :3] * 255).astype(np.uint8)[:, None, None, :]
        legend = [(names[k], rgba[k]) for k in np.unique(labels[chosen])]
        b = min(border, side // 4)
        thumbs[:, :b], thumbs[:, -b:] = c, c
        thumbs[:, :, :b], thumbs[:, :, -b:] = c, c
    n_rows, n_cols = int(cells[:, 0].max()) + 1, int(cells[:, 1].max()) + 1
    canvas = np.zeros((n_rows * side, n_cols * side, 4), dtype=np.uint8)
    for (r, col), thumb in zip(cells, thumbs, strict=True):
        canvas[r * side : (r + 1) * side, col * side : (col + 1) * side, :3] = thumb
        canvas[r * side : (r + 1) * side, col * side : (col + 1) * side, 3] = 255
    extent = (x0, x0 + n_cols * cell, y_top - n_rows * cell, y_top)
    ax.imshow(canvas, extent=extent, interpolation="nearest" if side <= 32 else "antialiased")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_axis_off()
    if legend:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(facecolor="none", edgecolor=col, linewidth=2, label=name) for name, col in legend],
                  loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def count_thumbnails(ax, side: int) -> int:
    """Occupied cells of a canvas drawn by :func:`plot_thumbnails` (for tests and checks)."""
    alpha = np.asarray(ax.images[0].get_array())[..., 3]
    h, w = alpha.shape
    return int((alpha.reshape(h // side, side, w // side, side).max(axis=(1, 3)) > 0).sum())
