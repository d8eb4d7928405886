"""The viewer in Chromium: the ring on the point shown, point sizes, legend counts under the
QC filter, likely duplicates, 3-D maps as pairs of axes, and where a tile came from.

Small runs built here (61 and 2,000 points of the bundled sample, a 3-D run, a run of
slide tiles with a slide thumbnail); skipped without Chromium, Playwright or the bundle,
except under CI (see test_viewer_browser.py).
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

import medcne.datasets as ds
from medcne.io import write_json
from medcne.runs import write_embedding
from medcne.viewer import build_viewer
from test_viewer_browser import _need_browser, chromium, open_page, screen_positions

pytestmark = pytest.mark.slow
QC_HEADER = ["id", "label", "label_issue_score", "suggested_label", "likely_label_error", "duplicate_id",
             "duplicate_distance", "likely_duplicate", "outlier_score", "likely_outlier"]


@pytest.fixture(scope="module")
def sample():
    _need_browser()
    return ds.load_sample()


@pytest.fixture(scope="module")
def browser(sample):
    yield from chromium()


def clustered(labels, dims, rng, spread=6.0):
    centres = rng.normal(size=(int(labels.max()) + 1, dims)) * spread
    return (centres[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32)


def make_run(folder, data, idx, dims=2, seed=0, params_data=None, extra=None):
    rng = np.random.default_rng(seed)
    emb = clustered(data.labels[idx], dims, rng)
    write_embedding(folder, emb, data.ids[idx], data.labels[idx], data.class_names)
    if extra:
        z = dict(np.load(folder / "embedding.npz"))
        np.savez(folder / "embedding.npz", **z, **extra)
    write_json(folder / "params.json", {"method": "tsimcne", "data": params_data or {}})
    return emb


@pytest.fixture(scope="module")
def qc_run(tmp_path_factory, sample):
    """(index, emb, rows): 300 points whose qc.csv names a nearest image for every point, flags 12 of them."""
    run = tmp_path_factory.mktemp("qc")
    idx = np.arange(300)
    emb = make_run(run, sample, idx)
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest, dist = d.argmin(axis=1), d.min(axis=1)
    flagged = set(np.argsort(dist)[:12].tolist())  # the 12 closest pairs-ish: as a threshold would flag
    rows = []
    for i in idx:
        label = sample.class_names[sample.labels[i]]
        rows.append({"id": sample.ids[i], "label": label, "label_issue_score": "0.1", "suggested_label": label,
                     "likely_label_error": "0", "duplicate_id": sample.ids[nearest[i]],
                     "duplicate_distance": f"{dist[i]:.5f}", "likely_duplicate": str(int(i in flagged)),
                     "outlier_score": "0.5", "likely_outlier": "0"})
    with open(run / "qc.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, QC_HEADER)
        w.writeheader()
        w.writerows(rows)
    return build_viewer(run, images=sample.images[idx]), emb, rows


@pytest.fixture()
def page_of(browser):
    """Opens pages; closes them and checks for JavaScript errors at the end."""
    opened = []

    def open_(index, width=1280, height=800):
        ctx, page, errors = open_page(browser, index, width, height)
        opened.append((ctx, errors))
        return page

    yield open_
    for ctx, errors in opened:
        ctx.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"


def hover(page, i) -> None:
    page.evaluate("i => medcne.scatterplot.hover(i)", int(i))
    page.wait_for_selector(f"#hover[data-index='{i}']", timeout=5000)


def isolated_point(pos) -> int:
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return int(np.argmax(d.min(axis=1)))


def map_shot(page) -> np.ndarray:
    page.eval_on_selector("#help", "e => { e.hidden = true; }")
    return np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB")).astype(int)


# -- the point shown is ringed -------------------------------------------------------------------
def test_the_hovered_point_is_ringed_on_screen(page_of, qc_run):
    index, _, _ = qc_run
    page = page_of(index)
    assert not page.locator("#ring").is_visible()
    pos = screen_positions(page)
    i = isolated_point(pos)
    page.mouse.move(*pos[i])  # a real mouse over the point
    page.wait_for_selector(f"#ring[data-index='{i}']", state="visible", timeout=5000)
    ring = page.locator("#ring").bounding_box()
    centre = np.array([ring["x"] + ring["width"] / 2, ring["y"] + ring["height"] / 2])
    assert np.abs(centre - pos[i]).max() < 1.0
    size = page.evaluate("medcne.scatterplot.get('pointSize')")
    assert ring["width"] >= size + 8  # around the point, not on it
    # Drawn: black ring pixels on a circle around the point, none at the same place before.
    box = page.locator("#map").bounding_box()
    cx, cy = pos[i] - [box["x"], box["y"]]
    r = ring["width"] / 2 - 1  # the middle of the 2 px border
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    pts = np.c_[cx + r * np.cos(angles), cy + r * np.sin(angles)].round().astype(int)
    dark = lambda shot: int((shot[pts[:, 1], pts[:, 0]].max(axis=1) < 90).sum())  # noqa: E731
    assert dark(map_shot(page)) >= 12
    page.mouse.move(5, 5)  # the mouse leaves: the panel still shows the point, and the ring stays with it
    page.wait_for_timeout(200)
    assert page.locator("#ring").is_visible()
    page.eval_on_selector("#ring", "e => { e.hidden = true; }")
    assert dark(map_shot(page)) <= 2


def test_the_ring_follows_find_and_zoom_and_hides_with_its_point(page_of, qc_run):
    index, _, rows = qc_run
    page = page_of(index)
    j = next(k for k, r in enumerate(rows) if r["likely_duplicate"] == "0")
    page.fill("#find", rows[j]["id"])
    page.press("#find", "Enter")
    page.wait_for_selector(f"#ring[data-index='{j}']", state="visible", timeout=5000)
    page.wait_for_timeout(600)  # the find zooms onto the point
    ring = page.locator("#ring").bounding_box()
    pos = screen_positions(page)[j]
    assert abs(ring["x"] + ring["width"] / 2 - pos[0]) < 1.0 and abs(ring["y"] + ring["height"] / 2 - pos[1]) < 1.0
    page.select_option("#qc-filter", "likely_duplicate")  # the point is not a duplicate: filtered out
    page.wait_for_selector("#ring", state="hidden", timeout=5000)


# -- point size ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sizes(tmp_path_factory, sample):
    """index.html of a 61-point and of a 2,000-point run."""
    small, large = tmp_path_factory.mktemp("p61"), tmp_path_factory.mktemp("p2000")
    idx = np.random.default_rng(1).choice(len(sample), 61, replace=False)
    make_run(small, sample, idx)
    make_run(large, sample, np.arange(len(sample)))
    return build_viewer(small, images=sample.images[idx]), build_viewer(large, images=sample.images)


def drawn_width(page, at) -> int:
    """Width in px of the point drawn at ``at`` (page px): the run of non-white pixels through its centre."""
    shot = map_shot(page)
    box = page.locator("#map").bounding_box()
    x, y = int(round(at[0] - box["x"])), int(round(at[1] - box["y"]))
    row = shot[y].min(axis=1) < 200
    lo = hi = x
    while lo > 0 and row[lo - 1]:
        lo -= 1
    while hi < len(row) - 1 and row[hi + 1]:
        hi += 1
    return hi - lo + 1


def test_few_points_are_drawn_large_many_small(page_of, sizes):
    small = page_of(sizes[0])
    pos = screen_positions(small)
    i = isolated_point(pos)
    size_small = small.evaluate("medcne.scatterplot.get('pointSize')")
    assert 8 <= size_small <= 12
    assert drawn_width(small, pos[i]) >= 8  # 61 images are not 2-3 px specks
    large = page_of(sizes[1])
    size_large = large.evaluate("medcne.scatterplot.get('pointSize')")
    assert 2.5 <= size_large <= 6
    assert size_small > 2 * size_large


def test_points_grow_when_zooming_in_and_return_on_reset(page_of, sizes):
    page = page_of(sizes[1])
    base = page.evaluate("medcne.scatterplot.get('pointSize')")
    fitted = page.evaluate("medcne.scatterplot.get('cameraDistance')")
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -1200)
    page.wait_for_function(f"medcne.scatterplot.get('cameraDistance') < {fitted} / 3", timeout=5000)
    page.wait_for_timeout(300)
    distance = page.evaluate("medcne.scatterplot.get('cameraDistance')")
    grown = page.evaluate("medcne.scatterplot.get('pointSize')")
    # The square root of the zoom, up to 4 times the base size.
    assert grown == pytest.approx(base * min(4, np.sqrt(fitted / distance)), rel=0.02)
    assert grown > 1.5 * base
    page.click("#reset-view")
    page.wait_for_function(f"Math.abs(medcne.scatterplot.get('pointSize') - {base}) < 0.05", timeout=5000)


# -- QC: legend counts and duplicates ---------------------------------------------------------------
def legend_counts(page) -> dict:
    return page.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('#legend li'),
        li => [li.dataset.class, Number(li.querySelector('.count').textContent.replace(/,/g, ''))]))""")


def test_legend_counts_follow_the_qc_filter(page_of, qc_run, sample):
    index, _, rows = qc_run
    page = page_of(index)
    labels = sample.labels[:300]
    totals = {name: int((labels == k).sum()) for k, name in enumerate(sample.class_names)}
    assert legend_counts(page) == totals
    page.select_option("#qc-filter", "likely_duplicate")
    flagged = np.array([r["likely_duplicate"] == "1" for r in rows])
    want = {name: int(((labels == k) & flagged).sum()) for k, name in enumerate(sample.class_names)}
    assert sum(want.values()) == 12
    page.wait_for_function("document.getElementById('legend-title').textContent.includes('only')", timeout=5000)
    assert legend_counts(page) == want
    assert page.locator("#legend-title").inner_text().lower() == "classes (likely duplicates only)"
    # A hidden class keeps its count; the counts still add up to what the filter keeps.
    name = next(n for n, c in want.items() if c > 0)
    page.click(f"#legend li[data-class='{name}']")
    assert legend_counts(page) == want
    assert page.locator("#shown-count").inner_text() == f"{12 - want[name]} shown"
    page.select_option("#qc-filter", "all")
    assert legend_counts(page) == totals
    assert page.locator("#legend-title").inner_text().lower() == "classes"


def test_duplicate_of_is_shown_only_for_likely_duplicates(page_of, qc_run):
    index, _, rows = qc_run
    page = page_of(index)
    ids = [r["id"] for r in rows]
    i = next(k for k, r in enumerate(rows) if r["likely_duplicate"] == "1")
    hover(page, i)
    assert page.locator("[data-field='duplicate of']").inner_text() == f"duplicate of: {rows[i]['duplicate_id']}"
    assert page.locator("#hover-duplicate").is_visible()
    assert "likely duplicate" in page.locator("[data-field='qc']").inner_text()
    # Every point has a nearest image in qc.csv; one that is not flagged is no duplicate.
    j = next(k for k, r in enumerate(rows) if r["likely_duplicate"] == "0" and r["duplicate_id"] in ids)
    hover(page, j)
    assert page.locator("[data-field='duplicate of']").count() == 0
    assert not page.locator("#hover-duplicate").is_visible()


# -- 3-D maps ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three(tmp_path_factory, sample):
    run = tmp_path_factory.mktemp("three")
    idx = np.arange(400)
    # Slices of two scan series: provenance without slide tiles.
    scans = {"prov_series": np.repeat(["CT 1", "MR 2"], 200), "prov_slice": np.tile(np.arange(200), 2)}
    emb = make_run(run, sample, idx, dims=3, seed=4, extra=scans)
    return build_viewer(run, images=sample.images[idx]), emb


def test_a_3d_map_shows_each_pair_of_axes(page_of, three):
    index, emb = three
    page = page_of(index)
    assert page.locator("#axes").is_visible()
    options = page.eval_on_selector_all("#axes option", "os => os.map(o => o.textContent)")
    assert options == ["x / y", "x / z", "y / z"]
    for k, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
        page.select_option("#axes", str(k))
        page.wait_for_timeout(700)  # the fit's transition
        pos = screen_positions(page)
        # Screen x follows the first axis, screen y (downwards) the second: exactly, up to scale and shift.
        sx = np.polyfit(emb[:, a], pos[:, 0], 1)
        sy = np.polyfit(emb[:, b], pos[:, 1], 1)
        assert np.abs(np.polyval(sx, emb[:, a]) - pos[:, 0]).max() < 1.0
        assert np.abs(np.polyval(sy, emb[:, b]) - pos[:, 1]).max() < 1.0
        assert sx[0] > 0 and sy[0] < 0 and sx[0] == pytest.approx(-sy[0], rel=1e-3)  # one scale
        canvas = page.locator("#canvas").bounding_box()
        assert pos[:, 0].min() > canvas["x"] and pos[:, 0].max() < canvas["x"] + canvas["width"]
        assert pos[:, 1].min() > canvas["y"] and pos[:, 1].max() < canvas["y"] + canvas["height"]
    hover(page, 205)
    assert page.locator("[data-field='x, y, z']").inner_text() == "x, y, z: " + ", ".join(
        page.evaluate("i => [MEDCNE_DATA.x[i], MEDCNE_DATA.y[i], MEDCNE_DATA.z[i]].map(String)", 205))
    # A scan slice: its series and slice index, and no slide picture (no tile columns).
    assert page.locator("[data-field='series']").inner_text() == "series: MR 2"
    assert page.locator("[data-field='slice']").inner_text() == "slice: 5"
    assert not page.locator("#hover-slide").is_visible()
    assert "z" in page.eval_on_selector_all("#color-by option", "os => os.map(o => o.value)")


def test_a_2d_map_has_no_axes_menu(page_of, qc_run):
    page = page_of(qc_run[0])
    assert not page.locator("#axes").is_visible()
    assert "z" not in page.eval_on_selector_all("#color-by option", "os => os.map(o => o.value)")


# -- where a tile came from ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slide(tmp_path_factory, sample):
    """(index, prov): 100 tiles of a 10 x 10 mosaic of sample images (28 px each, level 0) on one slide,
    whose thumbnail (half size) sits in the dataset folder."""
    root = tmp_path_factory.mktemp("slide")
    store, run = root / "store", root / "run"
    (store / "thumbnails").mkdir(parents=True)
    g, t = 10, 28
    mosaic = np.zeros((g * t, g * t, 3), np.uint8)
    for k in range(g * g):
        mosaic[(k // g) * t:(k // g + 1) * t, (k % g) * t:(k % g + 1) * t] = sample.images[k]
    Image.fromarray(mosaic).resize((g * t // 2, g * t // 2)).save(store / "thumbnails" / "S 1.png")
    (store / "thumbnails" / "S 1.json").write_text(json.dumps(
        {"slide": "S 1", "width": g * t, "height": g * t, "scale": 2.0}))
    k = np.arange(g * g)
    prov = {"slide": np.array(["S 1"] * (g * g)), "level": np.zeros(g * g, int), "x": (k % g) * t,
            "y": (k // g) * t, "mpp": np.full(g * g, 0.5), "tile_size": np.full(g * g, t)}
    make_run(run, sample, k, params_data={"path": str(store)}, extra={f"prov_{c}": v for c, v in prov.items()})
    return build_viewer(run, images=sample.images[:g * g]), prov


def test_a_tile_shows_its_source_and_its_box_on_the_slide(page_of, slide):
    index, prov = slide
    page = page_of(index)
    i = 57  # row 5, column 7 of the mosaic
    hover(page, i)
    shown = {c: page.locator(f"[data-field='{c}']").inner_text() for c in prov}
    assert shown == {"slide": "slide: S 1", "level": "level: 0", "x": "x: 196", "y": "y: 140", "mpp": "mpp: 0.5",
                     "tile_size": "tile_size: 28"}
    assert (prov["x"][i], prov["y"][i]) == (196, 140)
    assert page.locator("#hover-slide").is_visible()
    assert page.eval_on_selector("#hover-slide img", "e => e.getAttribute('src')") == "slides/00000.png"
    img = page.locator("#hover-slide img").bounding_box()
    box = page.locator("#hover-slide .tile-box").bounding_box()
    k = img["width"] / 140  # the thumbnail is 140 px wide; shown at its size or smaller
    assert k <= 1.0 + 1e-6
    # The box: level-0 (196, 140), 28 px -> thumbnail (98, 70), 14 px, times the shown scale.
    assert box["x"] - img["x"] == pytest.approx(98 * k, abs=1.5)
    assert box["y"] - img["y"] == pytest.approx(70 * k, abs=1.5)
    assert box["width"] == pytest.approx(max(4, 14 * k), abs=1.5)
    # Drawn: red box edges in the panel's pixels at that place.
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#hover-slide").screenshot())).convert("RGB")).astype(int)
    panel = page.locator("#hover-slide").bounding_box()
    x0, y0 = int(box["x"] - panel["x"]), int(box["y"] - panel["y"])
    edge = shot[y0 + 1, x0 + 2:x0 + int(box["width"]) - 2]
    assert ((edge[:, 0] > 180) & (edge[:, 1] < 80) & (edge[:, 2] < 80)).mean() > 0.8


def test_a_run_without_provenance_shows_no_slide(page_of, qc_run):
    page = page_of(qc_run[0])
    hover(page, 3)
    assert not page.locator("#hover-slide").is_visible()
    assert page.locator("[data-field='slide']").count() == 0


def test_screenshot_tool_picks_a_pair_of_axes(browser, three, qc_run, tmp_path):
    from medcne.errors import MedcneError
    from medcne.viewer.screenshot import screenshot

    xy = screenshot(three[0], tmp_path / "xy.png", size=(900, 600), browser=browser)
    xz = screenshot(three[0], tmp_path / "xz.png", axes="x/z", size=(900, 600), browser=browser)
    a, b = (np.asarray(Image.open(p).convert("L"), dtype=int) for p in (xy, xz))
    assert a.shape == b.shape and np.abs(a - b).mean() > 1  # another picture of the map
    with pytest.raises(MedcneError, match=r"`axes` x/z: the page has no axes menu \(a 2-D map\)"):
        screenshot(qc_run[0], tmp_path / "no.png", axes="x/z", browser=browser)
