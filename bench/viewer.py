"""Benchmark of the map viewer: build time, size on disk, first frame, pan frames and hover in Chromium.

Builds pages for a large synthetic run (default 300,000 points with random
28x28 RGB images) and for a 2,000-point baseline in the same run, then opens
each from ``file://`` in headless Debian Chromium (software WebGL, SwiftShader)
and reads the ``medcne-first-frame`` performance mark the page sets after its
first draw of all points. Prints the machine and ratios to the baseline.

    .venv/bin/python bench/viewer.py            # 300,000 vs 2,000 points
    .venv/bin/python bench/viewer.py --n 50000  # quicker
    .venv/bin/python bench/viewer.py --n 1000000 --repeats 1  # a million points (thumbnails of a sample)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from medcne.device import machine_name
from medcne.io import write_json
from medcne.runs import write_embedding
from medcne.viewer import build_viewer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def synthetic_run(folder: Path, n: int, seed: int = 0) -> np.ndarray:
    """A run folder of ``n`` points in 10 Gaussian clusters; returns its images.

    Images are 7x7 RGB noise blown up 4x to 28x28: random, yet with the
    coarse structure real images have, so PNG compression is neither
    hopeless (pure noise) nor trivial (flat colour).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    centres = rng.normal(size=(10, 2)) * 8
    emb = (centres[labels] + rng.normal(size=(n, 2))).astype(np.float32)
    write_embedding(folder, emb, np.arange(n).astype(str), labels, [f"class {k}" for k in range(10)])
    write_json(folder / "params.json", {"method": "synthetic", "data": {}})
    small = rng.integers(0, 256, size=(n, 7, 7, 3), dtype=np.uint8)
    return small.repeat(4, axis=1).repeat(4, axis=2)


def folder_size(folder: Path) -> dict[str, int]:
    sizes = {"data.js": 0, "sprites": 0, "bundle+html": 0}
    for p in folder.rglob("*"):
        if p.is_file():
            key = "sprites" if p.parent.name == "sprites" else p.name if p.name == "data.js" else "bundle+html"
            sizes[key] += p.stat().st_size
    return sizes


def measure_hover(page, moves: int = 20, seed: int = 0) -> float:
    """Median ms from a mouse move onto a random point until the side panel shows the point under
    the mouse (its id, label and thumbnail tile; the sprite sheet's download and decoding are not waited for)."""
    box = page.locator("#canvas").bounding_box()
    n = page.evaluate("MEDCNE_DATA.n")
    times = []
    for i in np.random.default_rng(seed).choice(n, moves, replace=False):
        x, y = page.evaluate("i => medcne.screenPosition(i)", int(i))
        before = page.evaluate("document.getElementById('hover').dataset.index || ''")
        page.mouse.move(box["x"] + 5, box["y"] + 5)  # off the points' middle first
        t0 = time.perf_counter()
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.wait_for_function("prev => (document.getElementById('hover').dataset.index || '') !== prev",
                               arg=before, timeout=60_000)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure_page(browser, index: Path, repeats: int) -> dict[str, float]:
    """Medians over ``repeats`` loads: ms until data.js is parsed, until the first frame,
    ms per frame while the camera glides (a 2 s zoom transition, drawn every frame), and
    ms from a mouse move to the hover panel (:func:`measure_hover`, on the first load)."""
    start, first, frames, hover = [], [], [], []
    for _ in range(repeats):
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.goto(index.resolve().as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=300_000)
        mark = "performance.getEntriesByName('{}')[0].startTime"
        start.append(page.evaluate(mark.format("medcne-start")))
        first.append(page.evaluate(mark.format("medcne-first-frame")))
        n_frames = page.evaluate("""async () => {
            let k = 0;
            const count = () => k++;
            medcne.scatterplot.subscribe('draw', count);
            await medcne.scatterplot.zoomToLocation([0.3, 0.2], 0.4,
                { transition: true, transitionDuration: 2000 });
            medcne.scatterplot.unsubscribe('draw', count);
            return k;
        }""")
        frames.append(2000 / max(n_frames, 1))
        if not hover:
            page.evaluate("medcne.scatterplot.zoomToOrigin()")
            hover.append(measure_hover(page))
        ctx.close()
    return {"data_ms": statistics.median(start), "first_frame_ms": statistics.median(first),
            "pan_frame_ms": statistics.median(frames), "hover_ms": hover[0]}


def machine() -> str:
    cpu = machine_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores; {chromium}; WebGL by SwiftShader (CPU)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300_000, help="points of the large page")
    ap.add_argument("--baseline", type=int, default=2_000, help="points of the baseline page")
    ap.add_argument("--repeats", type=int, default=3, help="page loads per page (median)")
    ap.add_argument("--keep", help="keep the pages in this folder instead of a temporary one")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    root = Path(args.keep or tempfile.mkdtemp(prefix="medcne-bench-viewer-"))
    print(f"machine: {machine()}")
    results = {}
    for n in (args.baseline, args.n):
        run = root / f"run-{n}"
        run.mkdir(parents=True, exist_ok=True)
        images = synthetic_run(run, n)
        t0 = time.perf_counter()
        index = build_viewer(run, images=images, overwrite=True)
        build_s = time.perf_counter() - t0
        results[n] = {"build_s": build_s, "sizes": folder_size(index.parent)}
        del images
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for n in results:
            results[n].update(measure_page(browser, root / f"run-{n}" / "viewer" / "index.html", args.repeats))
        browser.close()

    base = results[args.baseline]
    print("| points | build s | on disk MB (data.js / sprites / js+html) | data parsed ms | first frame ms "
          "| ms per frame, zooming | hover ms |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for n, r in results.items():
        s = r["sizes"]
        mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
        print(f"| {n:,} | {r['build_s']:.1f} | {mb(sum(s.values()))} ({mb(s['data.js'])} / {mb(s['sprites'])} / "
              f"{mb(s['bundle+html'])}) | {r['data_ms']:.0f} | {r['first_frame_ms']:.0f} | {r['pan_frame_ms']:.1f} "
              f"| {r['hover_ms']:.0f} |")
    big = results[args.n]
    print(f"ratios {args.n:,} / {args.baseline:,} points ({args.n / args.baseline:.0f}x the points): "
          f"build {big['build_s'] / base['build_s']:.1f}x, first frame "
          f"{big['first_frame_ms'] / base['first_frame_ms']:.1f}x, frame while zooming "
          f"{big['pan_frame_ms'] / base['pan_frame_ms']:.1f}x, hover {big['hover_ms'] / base['hover_ms']:.1f}x")
    print(f"pages in {root}")


if __name__ == "__main__":
    main()
