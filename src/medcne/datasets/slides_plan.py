"""One slide's tiling plan (which tiles, their labels and provenance) and the reading of its tiles.

Planning reads only the low-resolution image (tissue mask, thumbnail), so the
ids, labels and provenance of every tile are known before a tile is read; the
tiles then stream in blocks, never the whole slide in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MedcneError
from .slides import (
    Scale,
    SlideGeometry,
    choose_scale,
    geometry_of,
    open_slide,
    read_row,
    read_tile,
    reading,
    tile_grid,
)
from .slides_labels import label_for_slide, read_regions, region_labels
from .slides_tissue import lowres_downsample, read_lowres, thumbnail, tissue_mask, tissue_share

UNLABELLED_CHOICES = ("keep", "drop")


@dataclass(frozen=True)
class TileOptions:
    """What to cut from every slide.

    Attributes
    ----------
    tile_size : int
        Side of a tile in output pixels.
    mpp, magnification : float or None
        The output resolution: exactly one of them.
    min_tissue : float
        Share of tissue (0-1) a tile needs to be kept.
    slide_labels : dict or None
        ``{slide id or file name: class}`` from a CSV.
    annotations : Path or None
        A folder holding ``<slide id>.geojson`` (QuPath export) per slide.
    unlabelled : {'keep', 'drop'}
        Tiles outside all regions (or of a slide with no label): kept unlabelled, or dropped.
    """

    tile_size: int = 96
    mpp: float | None = 1.0
    magnification: float | None = None
    min_tissue: float = 0.5
    slide_labels: dict[str, str] | None = None
    annotations: Path | None = None
    unlabelled: str = "keep"

    def check(self) -> None:
        """Refuse values that cannot work, naming the option and the fix."""
        if not isinstance(self.tile_size, int) or self.tile_size < 8:
            raise MedcneError(f"`tile_size` must be an integer of at least 8 pixels; got {self.tile_size!r}")
        for name, value in (("mpp", self.mpp), ("magnification", self.magnification)):
            if value is not None and not value > 0:
                raise MedcneError(f"`{name}` must be a positive number; got {value!r}")
        if (self.mpp is None) == (self.magnification is None):
            raise MedcneError("give exactly one of `mpp` and `magnification`")
        if not 0 <= self.min_tissue <= 1:
            raise MedcneError(f"`min_tissue` is a share of a tile, 0 to 1; got {self.min_tissue!r}")
        if self.unlabelled not in UNLABELLED_CHOICES:
            raise MedcneError(f"`unlabelled` must be one of {', '.join(UNLABELLED_CHOICES)}; got {self.unlabelled!r}")
        if self.slide_labels is not None and self.annotations is not None:
            raise MedcneError("give `labels` (one class per slide) or `annotations` (regions), not both")
        if self.annotations is not None and not Path(self.annotations).is_dir():
            raise MedcneError(f"`annotations` {self.annotations}: not a folder; give the folder of "
                              "<slide id>.geojson files")


@dataclass
class SlidePlan:
    """The tiles of one slide: level-0 corners, labels, and what provenance and thumbnail need."""

    slide_id: str
    path: Path
    geometry: SlideGeometry
    scale: Scale
    x: np.ndarray
    y: np.ndarray
    side: float
    labels: list[str | None]
    thumbnail: Image.Image
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def ids(self) -> list[str]:
        return [f"{self.slide_id}/{x}_{y}" for x, y in zip(self.x.tolist(), self.y.tolist(), strict=True)]

    @property
    def provenance(self) -> dict[str, np.ndarray]:
        n = len(self)
        return {
            "slide": np.full(n, self.slide_id, dtype=object).astype(str),
            "level": np.full(n, self.scale.level, np.int32),
            "x": self.x.astype(np.int64),
            "y": self.y.astype(np.int64),
            "mpp": np.full(n, self.scale.mpp, np.float32),
            "tile_size": np.full(n, self.side, np.float32),
        }

    @property
    def thumbnail_info(self) -> dict:
        """The thumbnail's JSON: slide id, level-0 size, level-0 pixels per thumbnail pixel."""
        return {"slide": self.slide_id, "width": self.geometry.width, "height": self.geometry.height,
                "scale": self.geometry.width / self.thumbnail.width}


def _labels(options: TileOptions, slide_id: str, path: Path, cx, cy) -> tuple[list[str | None], list[str]]:
    n, notes = len(cx), []
    if options.slide_labels is not None:
        label = label_for_slide(options.slide_labels, slide_id, path.name)
        if label is None:
            listed = slide_id in options.slide_labels or path.name in options.slide_labels
            why = "has an empty label in the labels CSV" if listed else "not in the labels CSV"
            notes.append(f"{path.name}: {why}; its tiles are unlabelled")
        return [label] * n, notes
    if options.annotations is None:
        return [None] * n, notes
    geojson = Path(options.annotations) / f"{slide_id}.geojson"
    if not geojson.is_file():
        notes.append(f"{path.name}: no annotations ({geojson.name} not found)")
        return [None] * n, notes
    regions, unclassified = read_regions(geojson)
    if unclassified:
        notes.append(f"{geojson.name}: {unclassified} annotation(s) without a class left out")
    return region_labels(regions, cx, cy), notes


def check_annotations(options: TileOptions, slides) -> None:
    """Read the GeoJSON of every slide of ``slides`` (``(path, slide id)`` pairs) that has one.

    Done before any slide is tiled, so that a file that cannot label tiles
    stops the run before anything is written, not after other slides were
    committed; each slide's plan reads its file again.
    """
    if options.annotations is None:
        return
    for _, slide_id in slides:
        geojson = Path(options.annotations) / f"{slide_id}.geojson"
        if geojson.is_file():
            read_regions(geojson)


def plan_slide(slide, path: Path, slide_id: str, options: TileOptions) -> SlidePlan:
    """Which tiles of an open slide to keep: tissue share, labels, the unlabelled rule."""
    where = str(path)
    geometry = geometry_of(slide, where)
    scale = choose_scale(geometry, mpp=options.mpp, magnification=options.magnification, where=where)
    x, y, side = tile_grid(geometry, scale, options.tile_size)
    lowres, lowres_ds = read_lowres(slide, geometry, lowres_downsample(geometry, side), where)
    share = tissue_share(tissue_mask(lowres), lowres_ds, x, y, side)
    keep = share >= max(options.min_tissue, 1e-9)  # a tile with no tissue at all is never kept
    x, y = x[keep], y[keep]
    labels, notes = _labels(options, slide_id, path, x + side / 2, y + side / 2)
    tissue_tiles = len(x)
    if options.unlabelled == "drop":
        kept = np.array([lab is not None for lab in labels], bool)
        x, y, labels = x[kept], y[kept], [lab for lab in labels if lab is not None]
    thumb, _ = thumbnail(lowres)
    if options.magnification is not None and geometry.objective is None:
        notes.append(f"{path.name}: states no objective power; {options.magnification:g}x taken as "
                     f"{scale.mpp:g} um/px")
    if not tissue_tiles:
        notes.append(f"{path.name}: no tiles (no tissue reaches `min_tissue` {options.min_tissue:g})")
    elif not len(x):
        notes.append(f"{path.name}: no tiles (its {tissue_tiles} tiles of tissue are unlabelled and "
                     "`unlabelled` drop leaves them out)")
    return SlidePlan(slide_id, path, geometry, scale, x, y, side, labels, thumb, notes)


def plan_path(path: Path, slide_id: str, options: TileOptions) -> SlidePlan:
    """:func:`plan_slide` of the slide file at ``path`` (opened and closed here).

    Any OpenSlide error of the slide is a :class:`~medcne.datasets.slides.SlideError`
    naming it (each read names what it read; this catches any other).
    """
    slide = open_slide(path)
    try:
        with reading(str(path), "the slide"):
            return plan_slide(slide, path, slide_id, options)
    finally:
        slide.close()


def rows_of(plan: SlidePlan, start: int, stop: int, longest: int = 16) -> list[tuple[int, int]]:
    """Runs ``(first, count)`` of tiles ``start:stop`` that lie side by side and can be read as one region.

    Tiles are side by side when their y is equal and x one tile apart; runs
    are formed only where :func:`read_row` gives the same pixels as tile by
    tile reading (no resize, a whole level downsample), else each run is one tile.
    """
    level_ds = plan.geometry.downsamples[plan.scale.level]
    joinable = plan.scale.level_factor == 1.0 and float(level_ds).is_integer() and float(plan.side).is_integer()
    runs: list[tuple[int, int]] = []
    for i in range(start, stop):
        if (joinable and runs and runs[-1][1] < longest and plan.y[i] == plan.y[i - 1]
                and plan.x[i] - plan.x[i - 1] == plan.side):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def iter_blocks(plan: SlidePlan, tile_size: int, block: int = 64,
                on_tiles: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """The plan's tiles as uint8 blocks of at most ``block`` x T x T x 3, in plan order.

    Opens the slide itself (so a worker process can run it); ``on_tiles(n)``
    is called after each block, for progress.
    """
    slide = open_slide(plan.path)
    where = str(plan.path)
    try:
        for start in range(0, len(plan), block):
            stop = min(start + block, len(plan))
            out = np.empty((stop - start, tile_size, tile_size, 3), np.uint8)
            with reading(where, "the slide"):  # read_tile and read_row name the tile; this catches any other
                for first, count in rows_of(plan, start, stop):
                    x, y, at = int(plan.x[first]), int(plan.y[first]), first - start
                    if count == 1:
                        out[at] = read_tile(slide, x, y, plan.scale, tile_size, where=where)
                    else:
                        out[at: at + count] = read_row(slide, x, y, count, plan.scale, tile_size, where=where)
            yield out
            if on_tiles is not None:
                on_tiles(stop - start)
    finally:
        slide.close()
