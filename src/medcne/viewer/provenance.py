"""Where each image of a run came from, for the viewer's detail panel.

A run made from slide tiles or scan slices carries provenance columns:
``embedding.npz`` arrays named ``prov_<column>`` (one value per point), e.g.
``slide``, ``level``, ``x``, ``y``, ``mpp``, ``tile_size`` for tiles (``x``,
``y`` and ``tile_size`` in level-0 pixels of the slide) or ``series`` /
``volume`` and ``slice`` for scans. The page lists them under the hovered image.

For tiles, the dataset folder may hold a thumbnail of each slide, written at
tile time: ``thumbnails/<slide>.png`` and ``thumbnails/<slide>.json`` =
``{"slide", "width", "height", "scale"}`` (level-0 size, level-0 pixels per
thumbnail pixel). Those of the run's slides are copied into the page folder so
the page can draw the tile's box on its slide.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from ..errors import MedcneError
from ..runfiles import VIEWER_SLIDES

# The columns a tile needs for its box on the slide thumbnail.
TILE_COLUMNS = ("slide", "x", "y", "tile_size")
THUMBNAILS = "thumbnails"
SLIDES = VIEWER_SLIDES  # folder of the copied thumbnails in the page folder


def column_values(a: np.ndarray) -> list | dict:
    """A provenance column as JSON-ready values.

    Numbers stay numbers (ints, or floats with None for NaN). Text becomes
    ``{"names": [distinct values], "codes": [index per point]}``: a slide or
    series name repeats over thousands of tiles or slices, and spelling it
    out for each point doubled the page's data file.
    """
    if a.dtype.kind in "iub":
        return [int(v) for v in a.tolist()]
    if a.dtype.kind == "f":
        # 10 significant digits: level-0 coordinates of large slides exceed 6.
        return [float(f"{v:.10g}") if math.isfinite(v) else None for v in a.tolist()]
    names, codes = np.unique(a.astype(str), return_inverse=True)
    return {"names": [str(v) for v in names.tolist()], "codes": codes.reshape(-1).tolist()}


def data_folder(params: dict, data_path=None) -> Path | None:
    """The run's dataset folder (``--data`` or params.json ``data.path``), None if not a folder."""
    path = data_path if data_path is not None else (params.get("data") or {}).get("path")
    if path is None:
        return None
    path = Path(path)
    return path if path.is_dir() else None


def copy_slide_thumbnails(prov: dict[str, np.ndarray], folder: Path | None, out: Path) -> dict[str, dict]:
    """Copy the thumbnails of the run's slides into ``out/slides``; return what the page needs.

    Returns ``{slide id: {"file", "width", "height", "scale"}}`` with the
    thumbnail's own size in pixels; slides without a thumbnail are left out
    (the page then lists the tile's position without a picture). A thumbnail
    whose JSON is damaged is refused with one line naming it.
    """
    if folder is None or not all(c in prov for c in TILE_COLUMNS):
        return {}
    found = {}
    for k, slide in enumerate(sorted(set(prov["slide"].astype(str).tolist()))):
        # A slide id is a file name here; one with a path in it would reach outside the folder.
        if not slide or Path(slide).name != slide or slide in (".", ".."):
            continue
        png, meta = folder / THUMBNAILS / f"{slide}.png", folder / THUMBNAILS / f"{slide}.json"
        if not (png.is_file() and meta.is_file()):
            continue
        scale = _thumbnail_scale(meta, slide)
        width, height = _png_size(png)
        (out / SLIDES).mkdir(parents=True, exist_ok=True)
        name = f"{SLIDES}/{k:05d}.png"  # not the slide id: ids may hold characters a URL dislikes
        shutil.copyfile(png, out / name)
        found[slide] = {"file": name, "width": width, "height": height, "scale": scale}
    return found


def _thumbnail_scale(meta: Path, slide: str) -> float:
    fix = "write it again with `medcne tile`, or delete the slide's thumbnail files"
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
        scale = float(record["scale"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise MedcneError(f"{meta}: damaged slide thumbnail record ({type(exc).__name__}: {exc}); {fix}") from None
    if not (math.isfinite(scale) and scale > 0):
        raise MedcneError(f"{meta}: scale must be a positive number of level-0 pixels per thumbnail pixel; "
                          f"got {record['scale']!r}; {fix}")
    if str(record.get("slide", slide)) != slide:
        raise MedcneError(f"{meta}: describes slide {record.get('slide')!r}, not {slide!r}; {fix}")
    return scale


def _png_size(png: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(png) as im:  # reads the header only
            return im.size
    except (OSError, UnidentifiedImageError) as exc:
        raise MedcneError(f"{png}: not a readable image ({exc}); write it again with `medcne tile`, "
                          "or delete the slide's thumbnail files") from None
