"""Class names that begin or end with a space (a dataset's class ``' basophil'``, from a CSV or a folder
name) in the viewer's label box, in Chromium: a name picked from the list or typed is the class it
names, spaces and all, and two labels that differ only in the spaces around them are never made.

Small labelled runs built here; skipped without Chromium, Playwright or the bundle, except under CI
(see test_viewer_browser.py).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medcne.io import write_json
from medcne.runs import read_label_csv, write_embedding
from medcne.viewer import build_viewer
from test_viewer_browser import (
    _need_browser,
    chromium,
    label,
    legend_counts,
    manual_labels,
    open_page,
    select,
    wait_ready,
)

pytestmark = pytest.mark.slow
CELLS = [" basophil", "eosinophil ", "lymphocyte"]
LOOKALIKES = ["a", " a", " c", "c "]  # two pairs that differ only in the spaces around them


def _build(folder, names, per_class=10):
    """index.html of a run of ``per_class`` points of each class of ``names``, one cluster per class."""
    group = np.repeat(np.arange(len(names)), per_class)
    rng = np.random.default_rng(0)
    emb = (np.c_[group * 10.0, np.zeros(len(group))] + rng.normal(size=(len(group), 2))).astype(np.float32)
    write_embedding(folder, emb, [f"img{i}" for i in range(len(group))], group, names)
    write_json(folder / "params.json", {"method": "tsimcne", "data": {}})
    images = rng.integers(0, 256, size=(len(group), 8, 8, 3), dtype=np.uint8)
    return build_viewer(folder, images=images)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    _need_browser()
    return _build(tmp_path_factory.mktemp("cells"), CELLS)


@pytest.fixture(scope="module")
def lookalikes(tmp_path_factory):
    _need_browser()
    return _build(tmp_path_factory.mktemp("lookalikes"), LOOKALIKES, per_class=5)


@pytest.fixture(scope="module")
def browser(cells):
    yield from chromium()


def names(page) -> list[str]:
    return page.evaluate("medcne.labels.names")


def test_a_class_picked_or_typed_is_that_class_spaces_and_all(browser, cells, tmp_path):
    ctx, page, errors = open_page(browser, cells)
    try:
        # The label box's list offers the classes as written: picking one puts that text in the box.
        assert page.eval_on_selector_all("#label-options option", "os => os.map(o => o.value)") == CELLS
        select(page, [10, 11])
        label(page, CELLS[0])  # picked from the list: ' basophil'
        select(page, [12])
        label(page, "basophil")  # typed without the space
        select(page, [13])
        label(page, "  eosinophil")  # typed with other spaces
        select(page, [14])
        label(page, "gamma ")  # a new label: kept without the spaces around it
        select(page, [15])
        label(page, " gamma")  # ... and that one again
        assert names(page) == [*CELLS, "gamma"]
        want = {10: " basophil", 11: " basophil", 12: " basophil", 13: "eosinophil ", 14: "gamma", 15: "gamma"}
        assert manual_labels(page) == want
        assert legend_counts(page) == {" basophil": 13, "eosinophil ": 5, "lymphocyte": 10, "gamma": 2}
        assert page.locator("#label-note").inner_text() == ""

        with page.expect_download() as dl:
            page.click("#export")
        target = tmp_path / "labels.csv"
        dl.value.save_as(target)
        rows = list(csv.DictReader(target.open(newline="")))
        assert {r["id"]: (r["old_label"], r["new_label"]) for r in rows} == {
            f"img{i}": (CELLS[i // 10], name) for i, name in want.items()}
        assert read_label_csv(target) == {f"img{i}": name for i, name in want.items()}

        page.reload()
        wait_ready(page)
        assert names(page) == [*CELLS, "gamma"] and manual_labels(page) == want
    finally:
        ctx.close()
    assert errors == []


def test_a_name_that_could_be_two_classes_is_refused_until_one_is_picked(browser, lookalikes):
    ctx, page, errors = open_page(browser, lookalikes)
    try:
        for typed, meant in [("a", "a"), (" a", " a"), (" a ", "a"), ("c ", "c "), (" c", " c")]:
            select(page, [0])
            label(page, typed)
            assert manual_labels(page) == {0: meant}, typed
        select(page, [1])
        label(page, "c")  # ' c' or 'c '? nothing is labelled, and the page says why
        assert manual_labels(page) == {0: " c"}
        assert page.locator("#label-note").inner_text() == (
            '"c" could be any of the labels " c", "c ": pick one from the list')
        label(page, "c ")
        assert manual_labels(page) == {0: " c", 1: "c "} and names(page) == LOOKALIKES
        assert page.locator("#label-note").inner_text() == ""
    finally:
        ctx.close()
    assert errors == []


def test_a_stored_label_that_differs_from_a_class_only_in_spaces_is_that_class(browser, cells):
    """Annotations kept by an earlier page, which made 'basophil' beside the class ' basophil'."""
    ctx, page, errors = open_page(browser, cells)
    try:
        record = {"format": "medcne-annotations", "version": 1, "names": ["basophil", "gamma"],
                  "manual": [["basophil", [10, 1]], ["gamma", [2]]], "suggested": [["basophil", 0.8, [20]]]}
        page.evaluate("r => localStorage.setItem('medcne-annotations:' + MEDCNE_DATA.runKey, r)", json.dumps(record))
        page.reload()
        wait_ready(page)
        assert names(page) == [*CELLS, "gamma"]
        assert manual_labels(page) == {10: " basophil", 11: " basophil", 2: "gamma"}
        assert page.evaluate("medcne.labels.annotation(20)")["name"] == " basophil"
        assert legend_counts(page) == {" basophil": 12, "eosinophil ": 8, "lymphocyte": 9, "gamma": 1}
    finally:
        ctx.close()
    assert errors == []
