"""What a store of slide tiles records of its tiling, and which of the slides given it already holds.

`medcne tile` records the scale of its tiles in a new store's manifest
(``tiling``: tile size, and ``mpp`` or ``magnification``), and in each slide's
part entry the options that chose and labelled that slide's tiles
(``min_tissue``, ``unlabelled``, the slide's labels). A later run into the
store is checked against these records before anything is written: tiles of
another scale are refused (a map of two scales mixes them); slides already
there keep their first tiling (a part is never rewritten), and a note says so
when the options given would tile them otherwise. A slide counts as already
there only when the part of its name holds that slide's tiles. A store written
before these records existed is read as before: only its tile size is checked.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError, MedcneError
from .slides_labels import label_for_slide
from .store import PART_RE, _sha256_file, is_store, read_manifest

THUMBNAILS = "thumbnails"
RESOLUTIONS = ("mpp", "magnification")
# Per-slide options compared for the slides already there, with how a note names them.
SLIDE_OPTIONS = {"min_tissue": "`min_tissue`", "labels": "labels", "unlabelled": "`unlabelled`"}


def store_record(options) -> dict:
    """The scale of a run's tiles, recorded in a new store's manifest."""
    return {"tile_size": options.tile_size, "mpp": options.mpp, "magnification": options.magnification}


def slide_record(options, slide_id: str, path: Path) -> dict:
    """The options that chose and labelled one slide's tiles, recorded with its part."""
    return {"min_tissue": options.min_tissue, "unlabelled": options.unlabelled,
            "labels": _labels_source(options, slide_id, path)}


def _labels_source(options, slide_id: str, path: Path):
    """The slide's class from the CSV, or a checksum of its GeoJSON (None: none), or None without labels."""
    if options.slide_labels is not None:
        return {"csv": label_for_slide(options.slide_labels, slide_id, path.name)}
    if options.annotations is not None:
        geojson = Path(options.annotations) / f"{slide_id}.geojson"
        return {"annotations": _sha256_file(geojson) if geojson.is_file() else None}
    return None


def slides_in_store(out: Path, options, slides: list[tuple[Path, str]]) -> tuple[set[str], list[str]]:
    """The ids of ``slides`` already tiled into the store at ``out``, and notes on them.

    Raises
    ------
    MedcneError
        The store holds images of another shape or tiles of another scale, or
        a part named as a slide that is not that slide's tiles; nothing is
        written then.
    """
    if not is_store(out):
        return set(), []
    try:
        manifest = read_manifest(out)
    except DataError:
        return set(), []  # the store's writer says what is wrong with it
    _check_shape(out, manifest["image_shape"], options.tile_size)
    _check_scale(out, manifest.get("tiling"), options)
    parts = {p.get("name"): p for p in manifest["parts"] if isinstance(p, dict)}
    held = []
    for path, sid in slides:
        if sid not in parts:
            continue
        if not _tiles_of(out, parts[sid], sid):
            raise MedcneError(f"`out` {out}: holds a part named {sid!r} that is not the tiles of slide {path}; "
                              "choose another `out`, or rename the slide file")
        held.append(sid)
    return set(held), _kept_notes(out, parts, held, dict((s, p) for p, s in slides), options)


def _check_shape(out: Path, held, tile_size: int) -> None:
    """Refuse a store of other images than tiles of this size, naming the option that fits it."""
    held = tuple(held)
    if held == (tile_size, tile_size, 3):
        return
    if held[0] == held[1] and held[2] == 3:
        raise MedcneError(f"`out` {out}: the store holds tiles of {held[0]} pixels, not {tile_size}; add slides "
                          f"with `tile_size` {held[0]}, or choose another `out`")
    raise MedcneError(f"`out` {out}: the store holds images of {held}, not RGB tiles; choose another `out`")


def _scale(record) -> tuple[str, float] | None:
    """``('mpp', 1.0)`` or ``('magnification', 20.0)``; None for a record that states neither."""
    for name in RESOLUTIONS:
        value = record.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return name, float(value)
    return None


def _check_scale(out: Path, record, options) -> None:
    """Refuse tiles of another scale than the store's (a store made before the record is not checked)."""
    held = _scale(record) if isinstance(record, dict) else None
    asked = _scale({"mpp": options.mpp, "magnification": options.magnification})
    if held is None or (held[0] == asked[0] and math.isclose(held[1], asked[1], rel_tol=1e-9)):
        return
    raise MedcneError(f"`out` {out}: the store holds tiles at `{held[0]}` {held[1]:g}, not `{asked[0]}` "
                      f"{asked[1]:g}; add slides with `{held[0]}` {held[1]:g}, or choose another `out`")


def _tiles_of(out: Path, part: dict, slide_id: str) -> bool:
    """Whether ``part`` holds the tiles of slide ``slide_id``: its thumbnail is there and its tiles name it."""
    folder = str(part.get("dir", ""))
    if not PART_RE.fullmatch(folder) or not (out / THUMBNAILS / f"{slide_id}.json").is_file():
        return False
    try:
        with np.load(out / folder / "meta.npz", allow_pickle=False) as meta:
            slides = meta["prov_slide"] if "prov_slide" in meta.files else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return slides is not None and len(slides) > 0 and bool((slides.astype(str) == slide_id).all())


def _kept_notes(out: Path, parts: dict, held: list[str], paths: dict[str, Path], options) -> list[str]:
    """One note naming the slides already there whose recorded options differ from those given."""
    changed: dict[str, list[str]] = {}
    for sid in held:
        was = parts[sid].get("tiling")
        if isinstance(was, dict):
            now = slide_record(options, sid, paths[sid])
            if differ := [key for key in SLIDE_OPTIONS if was.get(key) != now[key]]:
                changed[sid] = differ
    if not changed:
        return []
    keys = [SLIDE_OPTIONS[k] for k in SLIDE_OPTIONS if any(k in d for d in changed.values())]
    names = list(changed)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return [f"{len(names)} slide(s) already in {out} ({shown}) keep their first tiling, cut with other "
            f"{' and '.join(keys)}; the options given apply to new slides only; to tile every slide with them, "
            "choose another `out`"]
