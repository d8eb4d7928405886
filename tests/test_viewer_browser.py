"""The viewer page in a real browser: Debian's Chromium driven headless by Playwright.

The page is built for a 2,000-point run over the bundled BloodMNIST sample and
opened from ``file://``, as a user would. Without Chromium, Playwright or the
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

pytestmark = pytest.mark.slow


def _need(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason}; CI is set, where `make browser viewer-assets` must provide it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(index.html, run data) for a 2,000-point run over the bundled sample."""
    _need(Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None,
          f"Chromium not found at {CHROMIUM} (`make browser` installs Debian's chromium)")
    _need(importlib.util.find_spec("playwright") is not None,
          "Playwright for Python is not installed (`pip install playwright`; never `playwright install`)")
    _need(BUNDLE.is_file(), f"viewer bundle {BUNDLE} missing (`make viewer-assets`)")
    run = tmp_path_factory.mktemp("run")
    data = ds.load_sample()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(data.class_names), 2)) * 6
    emb = (centres[data.labels] + rng.normal(size=(len(data), 2))).astype(np.float32)
    write_embedding(run, emb, data.ids, data.labels, data.class_names)
    write_json(run / "params.json", {"method": "tsimcne", "data": {"path": str(ds.SAMPLE_PATH)}})
    index = build_viewer(run)
    return index, data, emb


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p, CHROMIUM)
        yield b
        b.close()


@pytest.fixture()
def page(browser, site):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(site[0].resolve().as_uri())
    pg.wait_for_selector("body[data-ready=true]", timeout=30_000)
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
    assert list(rows[0]) == ["id", "x", "y", "old_label", "new_label"]
    assert [r["id"] for r in rows] == [data.ids[k] for k in sorted(inside)]
    k = sorted(inside)[0]
    assert rows[0]["old_label"] == data.class_names[data.labels[k]]
    assert {r["new_label"] for r in rows} == {"suspect, check"}
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
