"""The viewer page in a real browser: Debian's Chromium driven headless by Playwright.

The page is built for a 2,000-point run over the bundled BloodMNIST sample (with
a synthetic ``qc.csv``) and opened from ``file://``, as a user would; a second,
unlabeled run of two clusters serves label suggestion. Without Chromium, Playwright or the
JavaScript bundle these tests skip, except when ``CI`` is set: CI installs all
three (``make browser viewer-assets``), so there a missing piece is a failure.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medcne.datasets as ds
from medcne.io import write_json
from medcne.runs import write_embedding
from medcne.viewer import build_viewer, plan_layout
from medcne.viewer.build import BUNDLE
from medcne.viewer.screenshot import launch_chromium, screenshot

CHROMIUM = os.environ.get("MEDCNE_CHROMIUM", "/usr/bin/chromium")
HOVER_SIDE = 168  # px of the hover image in the page (index.html)
QC_FLAGS = ("likely_label_error", "likely_duplicate", "likely_outlier")

pytestmark = pytest.mark.slow


def _need(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason}; CI is set, where `make browser viewer-assets` must provide it")
    pytest.skip(reason)


def _need_browser() -> None:
    _need(Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None,
          f"Chromium not found at {CHROMIUM} (`make browser` installs Debian's chromium)")
    _need(importlib.util.find_spec("playwright") is not None,
          "Playwright for Python is not installed (`pip install playwright`; never `playwright install`)")
    _need(BUNDLE.is_file(), f"viewer bundle {BUNDLE} missing (`make viewer-assets`)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(index.html, run data) for a 2,000-point run over the bundled sample."""
    _need_browser()
    run = tmp_path_factory.mktemp("run")
    data = ds.load_sample()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(data.class_names), 2)) * 6
    emb = (centres[data.labels] + rng.normal(size=(len(data), 2))).astype(np.float32)
    write_embedding(run, emb, data.ids, data.labels, data.class_names)
    write_json(run / "params.json", {"method": "tsimcne", "data": {"path": str(ds.SAMPLE_PATH)}})
    _write_qc(run / "qc.csv", data, emb, rng)
    index = build_viewer(run)
    return index, data, emb


def _write_qc(path, data, emb, rng) -> None:
    """A qc.csv as `medcne qc` will write it: flags on a few random points, nearest other image."""
    n = len(data)
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    flags = {name: set(rng.choice(n, size=size, replace=False).tolist())
             for name, size in zip(QC_FLAGS, (30, 20, 15), strict=True)}
    flags["likely_duplicate"].add(min(flags["likely_label_error"]))  # one point with both flags
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label", "label_issue_score", "suggested_label", "likely_label_error", "duplicate_id",
                    "duplicate_distance", "likely_duplicate", "outlier_score", "likely_outlier", "extra"])
        for i in range(n):
            label = data.class_names[data.labels[i]]
            error = i in flags["likely_label_error"]
            # A flagged label error suggests another class; elsewhere the suggestion is the label itself.
            suggested = data.class_names[(data.labels[i] + 1) % len(data.class_names)] if error else label
            w.writerow([data.ids[i], label, f"{rng.random():.4f}", suggested, int(error), data.ids[nearest[i]],
                        f"{d[i, nearest[i]]:.4f}", int(i in flags["likely_duplicate"]),
                        f"{rng.random() * 3:.4f}", int(i in flags["likely_outlier"]), "ignored"])


@pytest.fixture(scope="module")
def qc_rows(site):
    with open(site[0].parent.parent / "qc.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """(index.html, cluster per point): an unlabeled run of two far-apart clusters, 150 points each."""
    _need_browser()
    run = tmp_path_factory.mktemp("clusters")
    rng = np.random.default_rng(3)
    side = np.repeat([0, 1], 150)
    emb = (np.c_[np.where(side == 0, -10.0, 10.0), np.zeros(300)] + rng.normal(size=(300, 2))).astype(np.float32)
    write_embedding(run, emb, [f"img{i}" for i in range(300)])
    write_json(run / "params.json", {"method": "tsne-pixels", "data": {}})
    images = rng.integers(0, 256, size=(300, 8, 8, 3), dtype=np.uint8)
    return build_viewer(run, images=images), side


@pytest.fixture(scope="module")
def browser(site):
    yield from chromium()


def chromium():
    """A headless Chromium for a module's pages (the body of its ``browser`` fixture)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p, CHROMIUM)
        yield b
        b.close()


def open_page(browser, index, width=1280, height=800):
    """(context, page, JavaScript errors) of the page at ``index``, ready to use."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(index.resolve().as_uri())
    wait_ready(pg)
    return ctx, pg, errors


def wait_ready(page) -> None:
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)


@pytest.fixture()
def page(browser, site):
    ctx, pg, errors = open_page(browser, site[0])
    yield pg
    ctx.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def screen_positions(page) -> np.ndarray:
    """N x 2 positions of all points in page pixels, as the map draws them now."""
    box = page.locator("#canvas").bounding_box()
    rel = page.evaluate("Array.from({length: MEDCNE_DATA.n}, (_, i) => medcne.screenPosition(i))")
    return np.asarray(rel) + [box["x"], box["y"]]


def drag_box(page, x0, y0, x1, y1) -> None:
    # The library starts its rectangle at the first move event; make that 1 px from the press.
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 1, y0 + 1)
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()


def test_hover_shows_the_right_image(page, site):
    _, data, _ = site
    pos = screen_positions(page)
    # The point farthest from its nearest neighbour on screen: the hover is unambiguous.
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    i = int(np.argmax(d.min(axis=1)))
    assert d[i].min() > 8
    page.mouse.move(*pos[i])
    page.wait_for_selector(f"#hover[data-index='{i}']", timeout=5000)
    assert page.locator("[data-field=id]").inner_text() == f"id: {data.ids[i]}"
    assert page.locator("[data-field=label]").inner_text() == f"label: {data.class_names[data.labels[i]]}"

    tile = 28
    sheet, col, row = plan_layout(len(data), tile).locate(i)
    scale = HOVER_SIDE // tile
    style = page.eval_on_selector(
        "#hover-image", "e => [e.style.backgroundImage, e.style.backgroundPosition]")
    assert style[0] == f'url("sprites/sheet-{sheet:03d}.png")'
    assert style[1] == f"{-col * tile * scale}px {-row * tile * scale}px"
    # What is on screen is the image itself: sample the centre of each enlarged pixel.
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#hover-image").screenshot())).convert("RGB"))
    seen = shot[scale // 2::scale, scale // 2::scale][:tile, :tile].astype(int)
    assert np.abs(seen - data.images[i].astype(int)).mean() < 3


def test_box_selection_label_and_export(page, site, tmp_path):
    _, data, emb = site
    page.click("#mode-box")
    pos = screen_positions(page)
    x0, y0, x1, y1 = 330.0, 290.0, 630.0, 540.0
    drag_box(page, x0, y0, x1, y1)
    page.wait_for_function("medcne.state.selection.length > 0", timeout=5000)
    chosen = set(page.evaluate("medcne.state.selection"))
    # Points more than 1.5 px inside the box must be selected, points 1.5 px outside must not;
    # the few on the edge may go either way (sub-pixel rounding).
    inside, near = _inside(pos, x0, y0, x1, y1, -1.5), _inside(pos, x0, y0, x1, y1, 1.5)
    assert 50 < len(inside) < len(data)
    assert set(inside) <= chosen <= set(near)
    assert len(near) - len(inside) < len(inside) / 10  # the undecided band is thin
    assert page.locator("#selection-count").inner_text() == f"{len(chosen)} selected"
    assert page.locator("#grid > div").count() == min(len(chosen), 400)
    inside = np.array(sorted(chosen))

    page.fill("#label-input", "suspect, check")
    page.click("#label-apply")
    assert page.locator("#annotation-count").inner_text() == f"{len(inside)} annotated"
    legend = page.locator("#legend li[data-class='suspect, check'] .count")
    assert legend.inner_text() == f"{len(inside)}"
    with page.expect_download() as dl:
        page.click("#export")
    target = tmp_path / "annotations.csv"
    dl.value.save_as(target)
    rows = list(csv.DictReader(target.open(newline="")))
    assert list(rows[0]) == ["id", "x", "y", "old_label", "new_label", "source", "confidence"]
    assert [r["id"] for r in rows] == [data.ids[k] for k in sorted(inside)]
    k = sorted(inside)[0]
    assert rows[0]["old_label"] == data.class_names[data.labels[k]]
    assert {r["new_label"] for r in rows} == {"suspect, check"}
    assert {(r["source"], r["confidence"]) for r in rows} == {("manual", "")}
    np.testing.assert_allclose(float(rows[0]["x"]), emb[k, 0], rtol=1e-5)
    np.testing.assert_allclose(float(rows[0]["y"]), emb[k, 1], rtol=1e-5)
    # The file goes back into medcne as it is (`medcne evaluate RUN --labels FILE`).
    from medcne.runs import read_label_csv

    assert read_label_csv(target) == {data.ids[k]: "suspect, check" for k in inside}


def test_lasso_selects_what_it_encloses(page, site):
    page.click("#mode-lasso")
    pos = screen_positions(page)
    x0, y0, x1, y1 = 250.0, 200.0, 520.0, 470.0
    # A freehand square, traced in small steps as a hand would.
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)]:
        page.mouse.move(x, y, steps=15)
    page.mouse.up()
    page.wait_for_function("medcne.state.selection.length > 0", timeout=5000)
    chosen = set(page.evaluate("medcne.state.selection"))
    inside, near = _inside(pos, x0, y0, x1, y1, -3), _inside(pos, x0, y0, x1, y1, 3)
    assert len(inside) > 50
    assert set(inside) <= chosen <= set(near)


def _in_triangle(pos, a, b, c, margin):
    """Indices of the points of ``pos`` at least ``margin`` px inside the triangle abc (negative: outside)."""
    def side(p, q, r):
        return (r[:, 0] - p[0]) * (q[1] - p[1]) - (r[:, 1] - p[1]) * (q[0] - p[0])

    corners = [(a, b), (b, c), (c, a)]
    sign = np.sign(side(a, b, np.asarray([c])))[0]
    dist = np.min([sign * side(p, q, pos) / np.hypot(q[0] - p[0], q[1] - p[1]) for p, q in corners], axis=0)
    return np.flatnonzero(dist > margin)


def test_shift_drag_in_pan_mode_is_a_lasso_even_after_box_mode(page, site):
    """The page's help says Shift+drag is a lasso; a Box selection before must not leave it a rectangle."""
    page.click("#mode-box")
    page.click("#mode-pan")
    pos = screen_positions(page)
    a, b, c = (250.0, 200.0), (560.0, 200.0), (250.0, 500.0)
    page.keyboard.down("Shift")
    page.mouse.move(*a)
    page.mouse.down()
    for x, y in [b, c, (a[0], a[1] + 2)]:
        page.mouse.move(x, y, steps=15)
    page.mouse.up()
    page.keyboard.up("Shift")
    page.wait_for_function("medcne.state.selection.length > 0", timeout=5000)
    chosen = set(page.evaluate("medcne.state.selection"))
    inside, near = _in_triangle(pos, a, b, c, 3), _in_triangle(pos, a, b, c, -3)
    in_box_only = set(_inside(pos, a[0], a[1], b[0], c[1], -3)) - set(near)
    assert len(inside) > 20 and len(in_box_only) > 20  # the bounding box holds points the triangle leaves out
    assert set(inside) <= chosen <= set(near)


def test_hidden_class_is_not_selected(page, site):
    _, data, _ = site
    name = data.class_names[0]
    page.click(f"#legend li[data-class='{name}']")
    assert "hidden" in page.get_attribute(f"#legend li[data-class='{name}']", "class")
    page.click("#mode-box")
    box = page.locator("#canvas").bounding_box()
    drag_box(page, box["x"] + 2, box["y"] + 2, box["x"] + box["width"] - 2, box["y"] + box["height"] - 2)
    expected = int((data.labels != 0).sum())
    page.wait_for_function(f"medcne.state.selection.length === {expected}", timeout=5000)


def test_find_takes_an_id_as_typed_then_without_the_spaces_around_it(browser, tmp_path):
    """Ids may begin or end with a space (a class folder named ' b'): Find matches the id as typed first."""
    run = tmp_path / "run"
    ids = [" a", "a", "b ", "c"]
    write_embedding(run, np.arange(8, dtype=np.float32).reshape(4, 2), ids)
    write_json(run / "params.json", {"method": "tsne-pixels", "data": {}})
    index = build_viewer(run, images=np.zeros((4, 8, 8, 3), np.uint8))
    ctx, pg, errors = open_page(browser, index)
    for typed, expected in [(" a", 0), ("a", 1), ("b ", 2), ("  c ", 3)]:
        pg.fill("#find", typed)
        pg.press("#find", "Enter")
        pg.wait_for_function(f"medcne.state.selection.length === 1 && medcne.state.selection[0] === {expected}",
                             timeout=5000)
    ctx.close()
    assert errors == []


def test_find_by_id_and_colour_by_column(page, site):
    _, data, _ = site
    i = 1234
    page.fill("#find", str(data.ids[i]))
    page.press("#find", "Enter")
    page.wait_for_selector(f"#hover[data-index='{i}']", timeout=5000)
    assert page.locator("#selection-count").inner_text() == "1 selected"
    page.fill("#find", "no-such-id")
    page.press("#find", "Enter")
    assert page.locator("#find-result").inner_text() == "no image with id no-such-id"

    page.select_option("#color-by", "brightness")
    assert page.evaluate("medcne.scatterplot.get('colorBy')") == "valueW"  # the library's name for valueB
    assert page.locator("#ramp-box").is_visible()
    bright = data.images.reshape(len(data), -1).mean(axis=1) / 255
    assert float(page.locator("#ramp-lo").inner_text()) == pytest.approx(bright.min(), rel=5e-3)
    assert float(page.locator("#ramp-hi").inner_text()) == pytest.approx(bright.max(), rel=5e-3)


def test_screenshot_shows_the_classes(page, site, tmp_path):
    shot = tmp_path / "viewer.png"
    page.locator("#map").screenshot(path=str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(c[k : k + 2], 16) for k in (1, 3, 5)) for c in
               page.evaluate("MEDCNE_DATA.palette")}
    drawn = {tuple(p) for p in np.unique(pixels, axis=0)}
    # Every class colour appears as the centre of some point (opacity aside, they blend to near it).
    near = [min(np.abs(np.asarray(list(drawn)) - c).sum(axis=1)) for c in colours]
    assert max(near) < 40, near


def _inside(pos, x0, y0, x1, y1, grow):
    """Indices of points inside the box grown by ``grow`` px (shrunk if negative)."""
    ok = (pos[:, 0] > x0 - grow) & (pos[:, 0] < x1 + grow) & (pos[:, 1] > y0 - grow) & (pos[:, 1] < y1 + grow)
    return np.flatnonzero(ok)


def test_screenshot_tool_hovers_and_selects(site, browser, tmp_path):
    index, data, _ = site
    out = screenshot(index, tmp_path / "shot.png", hover_id=data.ids[7], box=(0.1, 0.1, 0.9, 0.9),
                     size=(1000, 700), browser=browser)
    assert Image.open(out).size == (1000, 700)


# -- the first view, Reset view and resizes fit the whole map ---------------------------------
# Extent of all points on screen, in canvas pixels, as the library projects them now.
EXTENT_JS = """() => {
  const r = document.getElementById('canvas').getBoundingClientRect();
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < MEDCNE_DATA.n; i++) {
    const [x, y] = medcne.screenPosition(i);
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  return {x0, x1, y0, y1, width: r.width, height: r.height};
}"""
MARGIN = 4  # px every point keeps from the canvas edge, at least
FILL = 0.85  # share of the canvas width or height the map spans, at least: a fit, not a thumbnail
FITS_JS = (f"(e => e.x0 >= {MARGIN} && e.y0 >= {MARGIN} && e.x1 <= e.width - {MARGIN} && e.y1 <= e.height - {MARGIN}"
           f" && Math.max((e.x1 - e.x0) / e.width, (e.y1 - e.y0) / e.height) >= {FILL})(({EXTENT_JS})())")


def assert_fits(page) -> dict:
    e = page.evaluate(EXTENT_JS)
    assert e["x0"] >= MARGIN and e["y0"] >= MARGIN, f"points cut off left or top: {e}"
    assert e["x1"] <= e["width"] - MARGIN and e["y1"] <= e["height"] - MARGIN, f"points cut off right or bottom: {e}"
    assert max((e["x1"] - e["x0"]) / e["width"], (e["y1"] - e["y0"]) / e["height"]) >= FILL, f"map not fitted: {e}"
    return e


def drawn_extent(page) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the non-white pixels of the canvas: where points are really drawn."""
    page.eval_on_selector("#help", "e => { e.hidden = true; }")  # the help text is drawn over the map
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#canvas").screenshot())).convert("RGB"))
    # The outermost pixel rows may hold the header's border (the canvas starts at a fraction of a px).
    ys, xs = np.nonzero(shot[2:-2, 2:-2].min(axis=2) < 235)
    return xs.min() + 2, ys.min() + 2, xs.max() + 2, ys.max() + 2


@pytest.mark.parametrize("size, resized", [((1400, 900), (1000, 1200)), ((1000, 1200), (1400, 900)),
                                           ((640, 480), (1280, 800))],
                         ids=["landscape", "portrait", "small"])
def test_the_whole_map_fits_the_window(browser, site, size, resized):
    ctx, page, errors = open_page(browser, site[0], *size)
    try:
        # The first view.
        e = assert_fits(page)
        x0, y0, x1, y1 = drawn_extent(page)
        # The pixels agree with the projected positions (a point is a few px wide).
        assert abs(x0 - e["x0"]) < 6 and abs(x1 - e["x1"]) < 6 and abs(y0 - e["y0"]) < 6 and abs(y1 - e["y1"]) < 6, \
            (x0, y0, x1, y1, e)

        # A resize refits the view while the user has not moved it.
        page.set_viewport_size({"width": resized[0], "height": resized[1]})
        page.wait_for_function(FITS_JS, timeout=5000)
        assert assert_fits(page)["width"] != e["width"]

        # The user's zoom survives a resize; Reset view fits again.
        box = page.locator("#canvas").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -800)
        page.wait_for_function(f"!{FITS_JS}", timeout=5000)
        zoomed = page.evaluate("medcne.scatterplot.get('cameraDistance')")
        page.set_viewport_size({"width": size[0], "height": size[1]})
        page.wait_for_timeout(300)
        assert page.evaluate("medcne.scatterplot.get('cameraDistance')") == pytest.approx(zoomed)
        page.click("#reset-view")
        page.wait_for_function(FITS_JS, timeout=5000)
        assert_fits(page)
    finally:
        ctx.close()
    assert errors == []


# -- annotations kept in the browser ------------------------------------------------------------
def select(page, indices) -> None:
    page.evaluate("ix => medcne.scatterplot.select(ix)", list(map(int, indices)))
    page.wait_for_function(f"medcne.state.selection.length === {len(indices)}", timeout=5000)


def label(page, name) -> None:
    page.fill("#label-input", name)
    page.click("#label-apply")


def legend_counts(page) -> dict:
    return page.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('#legend li'),
        li => [li.dataset.class, Number(li.querySelector('.count').textContent.replace(/,/g, ''))]))""")


def manual_labels(page) -> dict:
    return {int(i): name for i, name in page.evaluate(
        "Array.from(medcne.labels.manual, ([i, k]) => [i, medcne.labels.names[k]])")}


def panel_line(page, field):
    """The side panel's line ``field`` of the image shown, as it is now (no waiting); None without one."""
    return page.evaluate("f => document.querySelector(`#hover-text [data-field='${f}']`)?.textContent ?? null", field)


def test_annotations_survive_a_reload_until_cleared(page, site):
    _, data, _ = site
    suspect, blurry = list(range(0, 40)), list(range(100, 130))
    select(page, suspect)
    label(page, "suspect")
    select(page, blurry)
    label(page, "blurry")
    select(page, [0, 1])
    label(page, data.class_names[0])  # an existing class name: no new label
    expected = {**{i: "suspect" for i in suspect}, **{i: "blurry" for i in blurry}, 0: data.class_names[0],
                1: data.class_names[0]}
    counts = legend_counts(page)
    colours = page.evaluate("medcne.labels.palette")
    assert manual_labels(page) == expected and counts["suspect"] == 38 and counts["blurry"] == 30

    page.reload()
    wait_ready(page)
    assert manual_labels(page) == expected
    assert legend_counts(page) == counts
    assert page.evaluate("medcne.labels.palette") == colours  # a label keeps its colour
    assert page.locator("#annotation-count").inner_text() == "70 annotated"
    page.evaluate("medcne.showPoint(100)")
    assert page.locator("[data-field='new label']").inner_text() == "new label: blurry"

    page.once("dialog", lambda d: d.dismiss())  # "Cancel" keeps them
    page.click("#clear-annotations")
    assert page.locator("#annotation-count").inner_text() == "70 annotated"
    page.once("dialog", lambda d: d.accept())
    page.click("#clear-annotations")
    assert page.locator("#annotation-count").inner_text() == "0 annotated"
    assert manual_labels(page) == {} and "suspect" not in legend_counts(page)
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('medcne-annotations:'))") == []
    page.reload()
    wait_ready(page)
    assert manual_labels(page) == {} and "suspect" not in legend_counts(page)
    assert legend_counts(page) == {name: int((data.labels == k).sum()) for k, name in enumerate(data.class_names)}


# -- label suggestion ------------------------------------------------------------------------------
def test_suggested_labels_fill_each_cluster_and_are_exported(browser, clusters, tmp_path):
    index, side = clusters
    ctx, page, errors = open_page(browser, index)
    try:
        assert page.locator("#suggest").is_disabled()  # nothing to learn from yet
        assert not page.locator("#qc").is_visible()  # no qc.csv, no QC controls
        left, right = int(np.flatnonzero(side == 0)[7]), int(np.flatnonzero(side == 1)[3])
        select(page, [left])
        label(page, "left")
        select(page, [right])
        label(page, "right")
        page.click("#suggest")
        page.wait_for_selector("#suggestions:not([hidden])")
        page.wait_for_function("document.getElementById('suggest-count').textContent.includes('298')", timeout=10_000)
        assert page.locator("#suggest-count").inner_text() == "298 suggested labels to review"
        now = page.evaluate("Array.from(medcne.labels.cur, k => medcne.labels.names[k])")
        assert now == ["left" if s == 0 else "right" for s in side]
        assert legend_counts(page) == {"(no label)": 0, "left": 150, "right": 150}

        with page.expect_download() as dl:
            page.click("#export")
        target = tmp_path / "suggested.csv"
        dl.value.save_as(target)
        rows = list(csv.DictReader(target.open(newline="")))
        assert list(rows[0]) == ["id", "x", "y", "old_label", "new_label", "source", "confidence"]
        assert [r["id"] for r in rows] == [f"img{i}" for i in range(300)]
        assert [r["new_label"] for r in rows] == ["left" if s == 0 else "right" for s in side]
        assert [r["source"] for r in rows] == ["manual" if i in (left, right) else "suggested" for i in range(300)]
        # Two annotated points, so both are the k nearest of every point: one of two agrees.
        assert {r["confidence"] for i, r in enumerate(rows) if i not in (left, right)} == {"0.50"}
        assert {rows[left]["confidence"], rows[right]["confidence"]} == {""}
        from medcne.runs import read_label_csv

        # `medcne evaluate` and `propagate` take the two labels given by hand, not the map's own votes
        assert read_label_csv(target) == {f"img{left}": "left", f"img{right}": "right"}

        # Suggestions wait for review: a reload drops them unless accepted.
        page.reload()
        wait_ready(page)
        assert legend_counts(page) == {"(no label)": 298, "left": 1, "right": 1}
        page.click("#suggest")
        page.wait_for_function("medcne.labels.pending !== null", timeout=10_000)
        page.click("#suggest-accept")
        page.reload()
        wait_ready(page)
        assert legend_counts(page) == {"(no label)": 0, "left": 150, "right": 150}
        assert page.locator("#suggest-count").inner_text() == "298 suggested labels accepted"
        # A new round of suggestions cleared unwanted leaves the accepted ones as they were.
        page.click("#suggest")
        page.wait_for_function("medcne.labels.pending !== null", timeout=10_000)
        page.click("#suggest-clear")
        assert legend_counts(page) == {"(no label)": 0, "left": 150, "right": 150}
        assert page.locator("#suggest-count").inner_text() == "298 suggested labels accepted"
        page.click("#suggest-clear")  # none under review: the accepted ones go
        assert legend_counts(page) == {"(no label)": 298, "left": 1, "right": 1}
        page.reload()
        wait_ready(page)
        assert legend_counts(page) == {"(no label)": 298, "left": 1, "right": 1}
    finally:
        ctx.close()
    assert errors == []


def test_accept_and_clear_update_the_image_shown(browser, clusters):
    """The panel's lines of the image shown follow every change of labels without a new hover:
    Accept drops "to review", Clear suggestions removes the suggested label, labelling and
    suggesting show the new one."""
    index, side = clusters
    ctx, page, errors = open_page(browser, index)
    try:
        left, right = int(np.flatnonzero(side == 0)[7]), int(np.flatnonzero(side == 1)[3])
        shown, other = int(np.flatnonzero(side == 0)[20]), int(np.flatnonzero(side == 1)[20])
        select(page, [left])
        label(page, "left")
        select(page, [right])
        label(page, "right")
        page.click("#suggest")
        page.wait_for_function("medcne.labels.pending !== null", timeout=10_000)
        page.evaluate("i => medcne.showPoint(i)", shown)  # the curator looks at a suggestion
        assert panel_line(page, "suggested label") == "suggested label: left (50% of neighbours, to review)"

        page.click("#suggest-accept")
        assert panel_line(page, "suggested label") == "suggested label: left (50% of neighbours)"  # reviewed
        assert page.locator("#suggest-count").inner_text() == "298 suggested labels accepted"
        assert page.locator("#suggest-accept").is_disabled()
        # The same as after a reload, where the accepted suggestions come back from the browser's storage.
        page.reload()
        wait_ready(page)
        page.evaluate("i => medcne.showPoint(i)", shown)
        assert panel_line(page, "suggested label") == "suggested label: left (50% of neighbours)"
        assert page.locator("#suggest-count").inner_text() == "298 suggested labels accepted"

        page.click("#suggest-clear")
        assert panel_line(page, "suggested label") is None
        assert page.locator("#suggestions").is_hidden()
        # A label given by hand to the image shown, and new suggestions, appear at once too.
        select(page, [shown])
        label(page, "checked")
        assert panel_line(page, "new label") == "new label: checked"
        page.evaluate("i => medcne.showPoint(i)", other)
        page.click("#suggest")
        page.wait_for_function("medcne.labels.pending !== null", timeout=10_000)
        assert panel_line(page, "suggested label").startswith("suggested label: right (")
    finally:
        ctx.close()
    assert errors == []


def test_knn_vote_matches_brute_force(page, site):
    _, _, emb = site
    rng = np.random.default_rng(5)
    n = len(emb)
    for n_seeds, k, where in [(60, 5, None), (3, 5, None), (40, 5, "corner"), (200, 7, None)]:
        seeds = rng.choice(n, size=n_seeds, replace=False)
        if where == "corner":  # seeds in one corner: most queries lie outside the seeds' grid
            seeds = np.argsort(emb[:, 0] + emb[:, 1])[:n_seeds]
        seed_labels = rng.integers(0, 4, size=n_seeds)
        queries = np.setdiff1d(np.arange(n), seeds)
        got_label, got_agree = page.evaluate(
            """([s, l, q, k]) => { const r = medcne.knnVote(Int32Array.from(s), Int32Array.from(l), q, k);
                                   return [Array.from(r.label), Array.from(r.agree)]; }""",
            [seeds.tolist(), seed_labels.tolist(), queries.tolist(), k])
        d = np.linalg.norm(emb[queries][:, None] - emb[seeds][None], axis=-1)
        kk = min(k, n_seeds)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :kk]
        for q in range(len(queries)):
            votes = seed_labels[nearest[q]]
            counts = np.bincount(votes)
            # A tie goes to the label of the nearest seed among the tied labels.
            want = next(v for v in votes if counts[v] == counts.max())
            assert got_label[q] == want, (n_seeds, k, q)
            assert got_agree[q] == pytest.approx(counts.max() / kk)


# -- the run's qc.csv --------------------------------------------------------------------------------
def test_qc_filter_shows_only_flagged_points(page, qc_rows):
    assert page.locator("#qc").is_visible()
    assert page.locator("#shown-count").inner_text() == "2,000 shown"
    for flag in QC_FLAGS:
        flagged = sorted(i for i, r in enumerate(qc_rows) if r[flag] == "1")
        page.select_option("#qc-filter", flag)
        page.wait_for_function(f"medcne.scatterplot.get('filteredPoints').length === {len(flagged)}", timeout=5000)
        assert sorted(page.evaluate("medcne.scatterplot.get('filteredPoints')")) == flagged
        assert page.locator("#shown-count").inner_text() == f"{len(flagged)} shown"
    # A selection takes only what is shown.
    page.click("#mode-box")
    box = page.locator("#canvas").bounding_box()
    drag_box(page, box["x"] + 2, box["y"] + 2, box["x"] + box["width"] - 2, box["y"] + box["height"] - 2)
    page.wait_for_function(f"medcne.state.selection.length === {len(flagged)}", timeout=5000)
    assert sorted(page.evaluate("medcne.state.selection")) == flagged
    page.select_option("#qc-filter", "all")
    page.wait_for_function("medcne.scatterplot.get('filteredPoints').length === 2000", timeout=5000)


def test_qc_hover_shows_suggested_label_and_duplicate(page, site, qc_rows):
    _, data, _ = site
    ids = list(data.ids)
    # A label error that is also a likely duplicate: both lines (a non-duplicate has no
    # "duplicate of": test_viewer_browser_marks.py).
    i = next(k for k, r in enumerate(qc_rows) if r["likely_label_error"] == "1" and r["likely_duplicate"] == "1")
    page.evaluate("i => medcne.scatterplot.hover(i)", i)
    page.wait_for_selector(f"#hover[data-index='{i}']", timeout=5000)
    suggested = qc_rows[i]["suggested_label"]
    assert suggested != data.class_names[data.labels[i]]
    assert page.locator("[data-field='qc suggested label']").inner_text() == f"qc suggested label: {suggested}"
    assert page.locator("[data-field='duplicate of']").inner_text() == f"duplicate of: {qc_rows[i]['duplicate_id']}"
    assert "likely label error" in page.locator("[data-field='qc']").inner_text()
    # The duplicate's thumbnail beside the image.
    dup = ids.index(qc_rows[i]["duplicate_id"])
    sheet, col, row = plan_layout(len(data), 28).locate(dup)
    assert page.locator("#hover-duplicate").is_visible()
    assert page.eval_on_selector("#hover-duplicate", "e => e.style.backgroundPosition") == f"{-col * 56}px {-row * 56}px"
    # Where the checks agree with the label, no suggestion is shown.
    j = next(k for k, r in enumerate(qc_rows) if r["likely_label_error"] == "0")
    page.evaluate("j => medcne.scatterplot.hover(j)", j)
    page.wait_for_selector(f"#hover[data-index='{j}']", timeout=5000)
    assert page.locator("[data-field='qc suggested label']").count() == 0


def test_colour_by_qc_score(page, qc_rows):
    page.select_option("#color-by", "outlier_score")
    scores = [float(r["outlier_score"]) for r in qc_rows]
    assert float(page.locator("#ramp-lo").inner_text()) == pytest.approx(min(scores), rel=5e-3)
    assert float(page.locator("#ramp-hi").inner_text()) == pytest.approx(max(scores), rel=5e-3)
    options = page.eval_on_selector_all("#color-by option", "os => os.map(o => o.value)")
    assert {"label_issue_score", "duplicate_distance", "outlier_score"} <= set(options)


@pytest.fixture(scope="module")
def sampled_site(site, tmp_path_factory):
    """The run of ``site`` in a page that holds thumbnails of a sample of 500 of its 2,000 images
    (the pixel budget lowered to 500 thumbnails of 28 px), QC's flagged images and pairs among them."""
    from medcne.viewer import sprites

    index, data, _ = site
    out = tmp_path_factory.mktemp("sampled") / "viewer"
    saved, sprites.SPRITE_PIXELS = sprites.SPRITE_PIXELS, 500 * 28 * 28
    try:
        build_viewer(index.parent.parent, out)
    finally:
        sprites.SPRITE_PIXELS = saved
    return out / "index.html", data


def test_a_sampled_page_shows_the_thumbnails_it_holds_and_says_when_it_has_none(browser, sampled_site, qc_rows):
    index, data = sampled_site
    ctx, page, errors = open_page(browser, index)
    try:
        points = page.evaluate("MEDCNE_DATA.sprites.points")
        flagged = [k for k, r in enumerate(qc_rows) if "1" in (r["likely_label_error"], r["likely_duplicate"],
                                                               r["likely_outlier"])]
        assert len(points) == 500 and set(flagged) <= set(points)
        missing = next(i for i in range(len(data)) if i not in set(points))
        page.evaluate("i => medcne.scatterplot.hover(i)", missing)
        page.wait_for_selector(f"#hover[data-index='{missing}']", timeout=5000)
        assert page.locator("#hover-image").get_attribute("data-no-thumb") is not None
        assert "no thumbnail" in page.eval_on_selector("#hover-image", "e => getComputedStyle(e, '::after').content")
        assert page.locator("[data-field=thumbnail]").inner_text() == \
            "thumbnail: none: this page holds thumbnails of a sample of 500 of 2,000 images"

        k = 123  # the sample's 124th point is tile 123
        i = points[k]
        page.evaluate("i => medcne.scatterplot.hover(i)", i)
        page.wait_for_selector(f"#hover[data-index='{i}']", timeout=5000)
        assert page.locator("#hover-image").get_attribute("data-no-thumb") is None
        assert page.locator("[data-field=thumbnail]").count() == 0
        tile, scale = 28, HOVER_SIDE // 28
        sheet, col, row = plan_layout(500, tile).locate(k)
        style = page.eval_on_selector("#hover-image", "e => [e.style.backgroundImage, e.style.backgroundPosition]")
        assert style == [f'url("sprites/sheet-{sheet:03d}.png")', f"{-col * tile * scale}px {-row * tile * scale}px"]
        shot = np.asarray(Image.open(io.BytesIO(page.locator("#hover-image").screenshot())).convert("RGB"))
        seen = shot[scale // 2::scale, scale // 2::scale][:tile, :tile].astype(int)
        assert np.abs(seen - data.images[i].astype(int)).mean() < 3
    finally:
        ctx.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
