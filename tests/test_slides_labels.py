"""Tile labels: slide-level CSV, QuPath GeoJSON regions (centre rule, smallest region, holes), invalid files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcne.datasets.slides_labels import (
    AnnotationError,
    label_for_slide,
    read_regions,
    read_slide_labels,
    region_labels,
)
from medcne.errors import DataError


def square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def feature(rings, name, kind="Polygon"):
    props = {"objectType": "annotation"}
    if name is not None:
        props["classification"] = {"name": name, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": rings}, "properties": props}


def write(tmp_path, obj, name="s.geojson"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_a_tile_takes_the_class_of_the_smallest_region_holding_its_centre(tmp_path):
    tissue = feature([square(0, 0, 100, 100)], "Stroma")
    tumour = feature([square(10, 10, 40, 40)], "Tumor")
    ring_with_hole = feature([square(60, 60, 90, 90), square(70, 70, 80, 80)], "Necrosis")
    unclassified = feature([square(0, 0, 5, 5)], None)
    path = write(tmp_path, {"type": "FeatureCollection", "features": [tissue, tumour, ring_with_hole, unclassified]})
    regions, skipped = read_regions(path)
    assert [r.name for r in regions] == ["Stroma", "Tumor", "Necrosis"] and skipped == 1
    points = np.array([[20, 20], [50, 50], [65, 65], [75, 75], [150, 20]], float)
    assert region_labels(regions, points[:, 0], points[:, 1]) == ["Tumor", "Stroma", "Necrosis", "Stroma", None]


def test_multipolygons_lists_and_string_classes_are_read(tmp_path):
    multi = feature([[square(0, 0, 10, 10)], [square(20, 0, 30, 10)]], "Tumor", kind="MultiPolygon")
    plain = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square(40, 0, 50, 10)]},
             "properties": {"classification": "Immune"}}
    regions, _ = read_regions(write(tmp_path, [multi, plain]))
    assert region_labels(regions, np.array([5, 25, 15, 45]), np.array([5, 5, 5, 5])) == [
        "Tumor", "Tumor", None, "Immune"]


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "cannot be read as GeoJSON"),
    ({"type": "FeatureCollection", "features": {"a": 1}}, "not a GeoJSON FeatureCollection"),
    ([feature([[[0, 0], [1, 1], [0, 0]]], "Tumor")], "fewer than 3 distinct points"),
    ([feature([[[0, 0], [1, 0], [2, 0], [0, 0]]], "Tumor")], "encloses no area"),
    ([feature([[["a", 0], [1, 0], [1, 1]]], "Tumor")], "not numbers"),
    ([feature([[[0, 0], [1, 0], [float("nan"), 1]]], "Tumor")], "finite"),
    ([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]},
       "properties": {"classification": {"name": "Tumor"}}}], "not a polygon"),
    ([{"type": "Feature", "properties": {}}], "not a GeoJSON feature with a geometry"),
])
def test_invalid_annotations_are_one_line_naming_file_and_feature(tmp_path, content, fragment):
    path = write(tmp_path, content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(AnnotationError, match=fragment) as err:
        read_regions(path)
    assert "\n" not in str(err.value) and "s.geojson" in str(err.value)


def test_slide_labels_by_id_or_file_name(tmp_path):
    path = write(tmp_path, "slide,label\nA,tumor\nB.svs,normal\nC,\n", name="labels.csv")
    labels = read_slide_labels(path)
    assert label_for_slide(labels, "A", "A.tiff") == "tumor"
    assert label_for_slide(labels, "B", "B.svs") == "normal"
    assert label_for_slide(labels, "C", "C.svs") is None and label_for_slide(labels, "D", "D.svs") is None


@pytest.mark.parametrize("text, fragment", [
    ("name,label\nA,x\n", "no column 'slide'"),
    ("slide,label\nA,x\nA,y\n", "listed twice"),
    ("slide,label\n,x\n", "line 2 has no slide"),
])
def test_bad_label_csvs_are_one_line(tmp_path, text, fragment):
    with pytest.raises(DataError, match=fragment):
        read_slide_labels(write(tmp_path, text, name="labels.csv"))


def test_features_are_numbered_from_one_as_listed(tmp_path):
    good = feature([square(0, 0, 10, 10)], "Tumor")
    line = feature([[[0, 0], [1, 1], [0, 0]]], "Tumor")
    with pytest.raises(AnnotationError, match=r"s\.geojson: feature 2 of 2: a polygon ring has fewer than 3"):
        read_regions(write(tmp_path, {"type": "FeatureCollection", "features": [good, line]}))
    with pytest.raises(AnnotationError, match="feature 1 of 1: not a GeoJSON feature"):
        read_regions(write(tmp_path, [{"type": "Feature", "properties": {}}]))
