"""Screenshots of a viewer page in headless Chromium (for docs and checks).

    python -m medcne.viewer.screenshot RUN/viewer/index.html docs/viewer.png \\
        --hover-id 123 --box 0.55,0.30,0.75,0.55

opens the page from ``file://`` in Debian's Chromium (``/usr/bin/chromium``,
software WebGL; nothing is downloaded), optionally hovers the image with that
id and drags a box selection (fractions of the map's width and height), and
saves a PNG. Needs Playwright for Python (``pip install playwright``; never
``playwright install``: it would download a browser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import MedcneError, require
from ..params import for_cli

CHROMIUM = "/usr/bin/chromium"
# Software WebGL (SwiftShader) works without a GPU; the network flags keep a
# closed machine from waiting on Google's services at start.
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def launch_chromium(playwright, executable: str = CHROMIUM):
    """A headless Chromium browser from Playwright's ``sync_playwright()`` object."""
    if not Path(executable).exists():
        raise MedcneError(f"{executable}: Chromium not found; install Debian's chromium (`make browser`)")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


def screenshot(index, out, *, hover_id: str | None = None, box=None,
               size: tuple[int, int] = (1280, 760), colour_by: str | None = None,
               qc_filter: str | None = None, browser=None, axes: str | None = None) -> Path:
    """Open ``index`` (a viewer's index.html), act as asked, save a PNG at ``out``.

    ``box`` is (x0, y0, x1, y1) in fractions of the map area, dragged in box
    mode. ``qc_filter``: a value of the QC "Show" menu (a run with qc.csv).
    ``browser``: a Playwright browser to reuse (default: start Chromium).
    ``axes``: the pair of axes of a 3-D map, as its "Axes" menu names it ("x / z").
    """
    index, out = Path(index), Path(out)
    if not index.is_file():
        raise MedcneError(f"{index}: no such page; build it with `medcne view RUN`")
    if browser is not None:
        return _shoot(browser, index, out, hover_id, box, size, colour_by, qc_filter, axes)
    sync_api = require("playwright.sync_api", "screenshot")
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            return _shoot(browser, index, out, hover_id, box, size, colour_by, qc_filter, axes)
        finally:
            browser.close()


def _shoot(browser, index: Path, out: Path, hover_id, box, size, colour_by, qc_filter=None, axes=None) -> Path:
    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
    try:
        page = ctx.new_page()
        page.goto(index.resolve().as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        if colour_by:
            page.select_option("#color-by", colour_by)
        if qc_filter:
            page.select_option("#qc-filter", qc_filter)
        if axes:
            _choose_axes(page, axes)
        r = page.locator("#canvas").bounding_box()
        if box:
            page.click("#mode-box")
            x0, y0, x1, y1 = (r["x"] + box[0] * r["width"], r["y"] + box[1] * r["height"],
                              r["x"] + box[2] * r["width"], r["y"] + box[3] * r["height"])
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + 1, y0 + 1)  # the rectangle starts at the first move
            page.mouse.move(x1, y1, steps=10)
            page.mouse.up()
            page.wait_for_function("medcne.state.selection.length > 0", timeout=10_000)
            page.click("#mode-pan")
        if hover_id is not None:
            i = page.evaluate("id => MEDCNE_DATA.ids.indexOf(id)", str(hover_id))
            if i < 0:
                raise MedcneError(f"`hover_id` {hover_id}: no image with that id in {index}")
            # The library's own hover (as a mouse over the point would trigger), so a
            # neighbour drawn on top cannot take the place of the point asked for.
            page.evaluate("i => medcne.scatterplot.hover(i)", i)
            page.wait_for_selector(f"#hover[data-index='{i}']", timeout=10_000)
        page.wait_for_timeout(300)  # let the sprite sheet decode
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
    finally:
        ctx.close()
    return out


def _choose_axes(page, axes: str) -> None:
    names = page.eval_on_selector_all("#axes option", "os => os.map(o => o.textContent)")
    wanted = axes.replace(" ", "").replace("/", " / ")
    if wanted not in names:
        raise MedcneError(f"`axes` {axes}: the page has {', '.join(names) or 'no axes menu (a 2-D map)'}")
    page.select_option("#axes", label=wanted)
    page.wait_for_timeout(600)  # the fit to the new pair moves the camera


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medcne.viewer.screenshot", description=__doc__.splitlines()[0])
    ap.add_argument("index", help="a viewer's index.html")
    ap.add_argument("out", help="PNG to write")
    ap.add_argument("--hover-id", help="hover the image with this id")
    ap.add_argument("--box", help="x0,y0,x1,y1: box selection in fractions of the map area")
    ap.add_argument("--colour-by", help="a column of the 'Colour by' menu")
    ap.add_argument("--qc-filter", help="a value of the QC Show menu, e.g. likely_label_error (needs qc.csv)")
    ap.add_argument("--axes", help="the pair of axes of a 3-D map, e.g. x/z")
    ap.add_argument("--size", default="1280x760", help="window size WxH in pixels")
    args = ap.parse_args(argv)
    box = tuple(float(v) for v in args.box.split(",")) if args.box else None
    w, h = (int(v) for v in args.size.lower().split("x"))
    try:
        print(screenshot(args.index, args.out, hover_id=args.hover_id, box=box, size=(w, h),
                         colour_by=args.colour_by, qc_filter=args.qc_filter, axes=args.axes))
    except MedcneError as e:  # one line, as the medcne commands print it
        print(f"{ap.prog}: {for_cli(str(e))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
