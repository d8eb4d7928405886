"""Labels of slide tiles: a CSV of slide-level labels, or QuPath GeoJSON region annotations.

A tile takes the class of the annotated region containing its centre; when
regions overlap, the smallest of them (the most specific outline, e.g. a tumour
drawn inside a tissue region). Regions are GeoJSON ``Polygon`` or
``MultiPolygon`` features with QuPath's ``classification`` (``{"name": ...}``
or a plain string); holes follow the even-odd rule. Features without a class
are left out (and counted in a note).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, MissingColumnError
from .csvfile import refuse_semicolons


class AnnotationError(DataError):
    """A GeoJSON annotation file that cannot be used as given."""


@dataclass(frozen=True)
class Region:
    """One classified region: rings of level-0 (x, y) vertices (outer rings and holes)."""

    name: str
    rings: tuple[np.ndarray, ...]
    area: float


def read_slide_labels(path, column: str = "label") -> dict[str, str]:
    """``{slide: label}`` from a CSV with columns ``slide`` and ``column``.

    ``slide`` is a slide's id (its file name without extension) or its file name.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if len(fields) == 1:
                refuse_semicolons(path, fields[0])
            for needed in ("slide", column):
                if needed not in fields:
                    raise MissingColumnError(f"{path}: no column {needed!r} (columns: {', '.join(fields) or 'none'}); "
                                             "the labels CSV needs columns 'slide' and 'label'")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read as a CSV of slide labels ({exc})") from exc
    labels: dict[str, str] = {}
    for i, row in enumerate(rows, start=2):
        slide, label = (row.get("slide") or "").strip(), (row.get(column) or "").strip()
        if not slide:
            raise DataError(f"{path}: line {i} has no slide; fill in the 'slide' column")
        if slide in labels and labels[slide] != label:
            raise DataError(f"{path}: slide {slide!r} is listed twice with different labels "
                            f"({labels[slide]!r}, {label!r}); keep one row per slide")
        labels[slide] = label
    return labels


def label_for_slide(labels: dict[str, str], slide_id: str, file_name: str) -> str | None:
    """The CSV label of a slide (by id or file name); None when not listed or empty."""
    value = labels.get(slide_id, labels.get(file_name))
    return value or None


def _ring(coords, where: str) -> np.ndarray:
    try:
        ring = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{where}: coordinates are not numbers; export the annotations again") from exc
    if ring.ndim != 2 or ring.shape[1] < 2 or not np.isfinite(ring).all():
        raise AnnotationError(f"{where}: coordinates must be finite [x, y] pairs; export the annotations again")
    ring = ring[:, :2]
    if len(np.unique(ring, axis=0)) < 3:
        raise AnnotationError(f"{where}: a polygon ring has fewer than 3 distinct points; remove or redraw it")
    return ring


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _class_name(properties) -> str | None:
    cls = (properties or {}).get("classification")
    if isinstance(cls, dict):
        cls = cls.get("name")
    return str(cls) if isinstance(cls, str) and cls.strip() else None


def _region(feature, where: str) -> Region | None:
    if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
        raise AnnotationError(f"{where}: not a GeoJSON feature with a geometry; export the annotations again")
    name = _class_name(feature.get("properties"))
    if name is None:
        return None
    geometry = feature["geometry"]
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind not in ("Polygon", "MultiPolygon") or not isinstance(coords, list) or not coords:
        raise AnnotationError(f"{where}: geometry {kind!r} is not a polygon with coordinates; "
                              "only Polygon and MultiPolygon regions can label tiles")
    polygons = [coords] if kind == "Polygon" else coords
    rings, area = [], 0.0
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            raise AnnotationError(f"{where}: an empty polygon; remove or redraw it")
        shell = _ring(polygon[0], where)
        holes = [_ring(h, where) for h in polygon[1:]]
        part = abs(_signed_area(shell)) - sum(abs(_signed_area(h)) for h in holes)
        if part <= 0:
            raise AnnotationError(f"{where}: a polygon encloses no area; remove or redraw it")
        rings += [shell, *holes]
        area += part
    return Region(name=name, rings=tuple(rings), area=area)


def read_regions(path) -> tuple[list[Region], int]:
    """Classified regions of a QuPath GeoJSON export; returns them and the number of unclassified ones.

    Accepts a FeatureCollection, a list of features (QuPath's "export as
    array"), or a single Feature.

    Raises
    ------
    AnnotationError
        One line naming the file and feature for invalid JSON or polygons.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot be read as GeoJSON ({' '.join(str(exc).split())}); "
                              "export the annotations from QuPath again") from exc
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    else:
        features = data
    if not isinstance(features, list):
        raise AnnotationError(f"{path}: not a GeoJSON FeatureCollection or list of features; "
                              "export the annotations from QuPath as GeoJSON")
    regions, unclassified = [], 0
    for i, feature in enumerate(features, start=1):  # counted as a person counts, as QuPath lists them
        region = _region(feature, f"{path}: feature {i} of {len(features)}")
        if region is None:
            unclassified += 1
        else:
            regions.append(region)
    return regions, unclassified


def _inside(ring: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd crossing test of points against one ring (closed implicitly)."""
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    inside = np.zeros(px.shape, bool)
    for a, b, c, d in zip(x0, y0, x1, y1, strict=True):
        crosses = (b > py) != (d > py)
        if crosses.any():
            xc = a + (py - b) * (c - a) / ((d - b) if d != b else math.inf)
            inside ^= crosses & (px < xc)
    return inside


def region_labels(regions: list[Region], cx: np.ndarray, cy: np.ndarray) -> list[str | None]:
    """The class of the smallest region containing each point (level-0 x, y); None outside all."""
    cx, cy = np.asarray(cx, np.float64), np.asarray(cy, np.float64)
    best_area = np.full(cx.shape, np.inf)
    names: list[str | None] = [None] * len(cx)
    for region in regions:
        allx = np.concatenate([r[:, 0] for r in region.rings])
        ally = np.concatenate([r[:, 1] for r in region.rings])
        near = np.flatnonzero((cx >= allx.min()) & (cx <= allx.max()) & (cy >= ally.min()) & (cy <= ally.max())
                              & (region.area < best_area))
        if not len(near):
            continue
        hit = np.zeros(len(near), bool)
        for ring in region.rings:
            hit ^= _inside(ring, cx[near], cy[near])
        for i in near[hit]:
            names[i] = region.name
            best_area[i] = region.area
    return names
