"""Thumbnail sprite sheets: many small images packed into a few PNG files.

A page that shows 300,000 thumbnails cannot load 300,000 files; it loads a few
sheets and shows one tile of a sheet with a CSS background offset. Every sheet
stays within ``max_side`` pixels on each side (4096 by default), which browsers
decode and hold without trouble.

Tile ``i`` (in embedding order) lies on sheet ``i // per_sheet``, at column
``j % cols`` and row ``j // cols`` where ``j = i % per_sheet``.

A page of millions of points holds thumbnails of a sample: at most
``SPRITE_PIXELS`` thumbnail pixels (:func:`thumbnail_sample`); tile ``i`` is
then the ``i``-th point of the sorted sample.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..defaults import chunk_rows
from ..errors import MedcneError

MAX_SIDE = 4096
THUMB_MAX = 64
# Thumbnail pixels one page holds at most: 510,000 thumbnails of 28 px, 97,000 of 64 px. BloodMNIST's
# sheets take about 2 bytes per pixel as PNG, so about 0.8 GB of sprites on disk at the most.
SPRITE_PIXELS = 400_000_000


@dataclass(frozen=True)
class SpriteLayout:
    """Where each tile lies: ``n`` tiles of ``tile`` x ``tile`` pixels, ``cols`` per row."""

    n: int
    tile: int
    cols: int
    rows_per_sheet: int

    @property
    def per_sheet(self) -> int:
        return self.cols * self.rows_per_sheet

    @property
    def n_sheets(self) -> int:
        return math.ceil(self.n / self.per_sheet)

    def sheet_range(self, sheet: int) -> tuple[int, int]:
        """First and one-past-last tile index on ``sheet``."""
        start = sheet * self.per_sheet
        return start, min(start + self.per_sheet, self.n)

    def sheet_shape(self, sheet: int) -> tuple[int, int]:
        """(width, height) in pixels of ``sheet``; the last sheet only has the rows it needs."""
        start, stop = self.sheet_range(sheet)
        rows = math.ceil((stop - start) / self.cols)
        return self.cols * self.tile, rows * self.tile

    def locate(self, index: int) -> tuple[int, int, int]:
        """(sheet, column, row) of tile ``index``."""
        sheet, j = divmod(int(index), self.per_sheet)
        row, col = divmod(j, self.cols)
        return sheet, col, row


def check_thumb(thumb, max_side: int = MAX_SIDE) -> int:
    """``thumb``, a thumbnail side in pixels, when it is an integer that fits a sprite sheet.

    The one check of the side: :func:`medcne.viewer.build_viewer` calls it before
    any image is read and :func:`plan_layout` for each layout. The message names
    the parameter ``thumb``; the command line shows it as ``--thumb``.
    """
    if not (isinstance(thumb, numbers.Integral) and not isinstance(thumb, bool) and 1 <= thumb <= max_side):
        raise MedcneError(f"`thumb` must be a thumbnail side from 1 to {max_side} pixels (the side of a "
                          f"sprite sheet); got {thumb!r}")
    return int(thumb)


def plan_layout(n: int, tile: int, max_side: int = MAX_SIDE) -> SpriteLayout:
    """Square-ish sheets: one sheet for small sets, full ``max_side`` sheets for large ones."""
    tile = check_thumb(tile, max_side)
    fit = max_side // tile
    cols = min(fit, math.ceil(math.sqrt(n)))
    rows = min(fit, math.ceil(n / cols))
    return SpriteLayout(n=n, tile=tile, cols=cols, rows_per_sheet=rows)


def thumbnail_size(image_shape: tuple[int, int, int], requested: int | None = None) -> int:
    """Side of the square tiles: the image side, capped at 64 px unless asked otherwise."""
    side = max(image_shape[0], image_shape[1])
    return int(requested) if requested else min(side, THUMB_MAX)


def thumbnail_sample(n: int, tile: int, first=None, pixels: int | None = None,
                     seed: int = 0) -> np.ndarray | None:
    """Sorted indices of the points that get a thumbnail, or None when all of them fit.

    At most ``pixels // tile**2`` points (default :data:`SPRITE_PIXELS`): those of ``first`` (e.g. the
    images QC flagged and their duplicates, which the page shows side by
    side; the lowest indices when they alone pass the budget), then a seeded
    random draw of the others.
    """
    budget = max(1, (SPRITE_PIXELS if pixels is None else pixels) // (tile * tile))
    if n <= budget:
        return None
    first = np.unique(np.asarray([] if first is None else first, dtype=np.int64))[:budget]
    rest = np.setdiff1d(np.arange(n), first, assume_unique=True)
    drawn = np.random.default_rng(seed).choice(rest, budget - len(first), replace=False)
    return np.sort(np.concatenate([first, drawn]))


def make_tiles(images: np.ndarray, tile: int) -> np.ndarray:
    """Square ``tile`` x ``tile`` uint8 thumbnails of an N x H x W x C batch (letterboxed).

    Images already of that size pass through untouched, so tiles of small
    datasets (MedMNIST 28x28) are the pixels themselves.
    """
    n, h, w, c = images.shape
    if h == w == tile:
        return np.ascontiguousarray(images)
    out = np.zeros((n, tile, tile, c), dtype=np.uint8)
    scale = tile / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (tile - th) // 2, (tile - tw) // 2
    for i in range(n):
        img = Image.fromarray(images[i, :, :, 0] if c == 1 else images[i])
        small = np.asarray(img.resize((tw, th), Image.BILINEAR, reducing_gap=2.0))
        out[i, top : top + th, left : left + tw] = small.reshape(th, tw, c)
    return out


def pack_sheet(tiles: np.ndarray, cols: int) -> np.ndarray:
    """Arrange K x t x t x C tiles row by row into one (rows*t) x (cols*t) x C image."""
    k, t, _, c = tiles.shape
    rows = math.ceil(k / cols)
    padded = np.zeros((rows * cols, t, t, c), dtype=np.uint8)
    padded[:k] = tiles
    grid = padded.reshape(rows, cols, t, t, c).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * t, cols * t, c)


def write_sprites(images, folder: Path, tile: int, max_side: int = MAX_SIDE,
                  compress_level: int = 1,
                  on_batch: Callable[[int, np.ndarray], None] | None = None,
                  keep: np.ndarray | None = None,
                  ) -> tuple[SpriteLayout, list[dict]]:
    """Write ``sheet-000.png``... into ``folder``; return the layout and one entry per sheet.

    Parameters
    ----------
    images : ndarray or LazyImages
        uint8, N x H x W x C (C = 1 or 3), in embedding order. Read
        :data:`medcne.defaults.READ_CHUNK_MB` of images at a time, so lazy
        stores (PCam) never load whole.
    folder : Path
        Where the sheets go (created).
    tile : int
        Side of a thumbnail in pixels.
    compress_level : int
        zlib level of the PNGs; 1 because higher levels cost 40-60% more time
        for 1% smaller files on BloodMNIST (28.7 MB at 1, 28.4 MB at 6).
    on_batch : callable, optional
        ``on_batch(start, images)`` for every block of the images (all of
        them, with or without ``keep``), so that callers can compute
        per-image values without reading a lazy store twice.
    keep : ndarray, optional
        Sorted indices of the images that get a tile (:func:`thumbnail_sample`);
        default all.

    Returns
    -------
    layout, sheets
        ``sheets`` holds ``{"file", "width", "height"}`` per sheet, ``file``
        relative to the parent of ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    layout = plan_layout(n if keep is None else len(keep), tile, max_side)
    sheets: list[dict] = []
    pending: list[np.ndarray] = []  # tiles not yet on a sheet

    def flush(final: bool) -> None:
        if not pending:
            return
        tiles = np.concatenate(pending)
        pending.clear()
        while len(tiles) >= layout.per_sheet or (final and len(tiles)):
            sheet = pack_sheet(tiles[: layout.per_sheet], layout.cols)
            tiles = tiles[layout.per_sheet :]
            name = f"sheet-{len(sheets):03d}.png"
            Image.fromarray(sheet[:, :, 0] if sheet.shape[2] == 1 else sheet).save(
                folder / name, compress_level=compress_level)
            height, width = sheet.shape[:2]
            sheets.append({"file": f"{folder.name}/{name}", "width": width, "height": height})
        if len(tiles):
            pending.append(tiles)

    block = chunk_rows(int(np.prod(images.shape[1:])))  # images read at a time, whatever a sheet holds
    for start in range(0, n, block):
        batch = np.asarray(images[start : start + block])
        if on_batch is not None:
            on_batch(start, batch)
        if keep is not None:
            chosen = keep[(keep >= start) & (keep < start + len(batch))] - start
            batch = batch[chosen]
        pending.append(make_tiles(batch, tile))
        flush(final=False)
    flush(final=True)
    return layout, sheets
