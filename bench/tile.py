"""Tiles/s and peak RSS of `medcne tile` beside a plain OpenSlide ``read_region`` loop, in the same run.

A pyramidal tiled TIFF of SIDE x SIDE pixels (default 40,960, mpp 0.25, levels
1/2/4/8/16, deflate) is generated from BloodMNIST images enlarged 16 times on
white, about a third of the cells tissue; written tile by tile, never whole in
memory. Then, each in its own process (so that peak RSS is its own):

* ``loop``: ``read_region`` of exactly the tiles `medcne tile` keeps (same
  level and size), each turned into a numpy array: the floor any tiler pays;
* ``medcne``: ``medcne tile SLIDE --out STORE`` (tissue detection, tiles,
  store, thumbnail), timed whole.

The ratio (medcne seconds per tile kept / loop seconds per tile) is the figure;
the same is run on a slide of SIDE/4 to show whether RSS depends on slide size.

    .venv/bin/python bench/tile.py                      # 40,960 px and 10,240 px slides
    .venv/bin/python bench/tile.py --side 20480 --keep  # smaller, keep the files in build/bench-tile
    .venv/bin/python bench/tile.py --repeat 3           # each slide measured 3 times, in turn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BLOODMNIST = ROOT.parent / "shared" / "data" / "bloodmnist28.npz"
CELL, ENLARGE, TILE, LEVELS = 448, 16, 512, 5


def make_slide(path: Path, side: int, seed: int = 0) -> int:
    """Write the slide; returns the number of tissue cells."""
    import tifffile

    with np.load(BLOODMNIST) as data:
        images = data["images"][:4000]
    cells = side // CELL
    rng = np.random.default_rng(seed)
    which = np.where(rng.random((cells, cells)) < 1 / 3, rng.integers(0, len(images), (cells, cells)), -1)

    def tiles(level: int):
        ds = 2 ** level
        n = side // ds
        cell = CELL // ds
        for ty in range(0, n, TILE):
            for tx in range(0, n, TILE):
                out = np.full((TILE, TILE, 3), 255, np.uint8)
                for cy in range(ty // cell, min(cells, (ty + TILE - 1) // cell + 1)):
                    for cx in range(tx // cell, min(cells, (tx + TILE - 1) // cell + 1)):
                        if which[cy, cx] < 0:
                            continue
                        block = images[which[cy, cx]].repeat(ENLARGE // ds, 0).repeat(ENLARGE // ds, 1)
                        y0, x0 = cy * cell - ty, cx * cell - tx
                        ys, xs = slice(max(0, y0), min(TILE, y0 + cell)), slice(max(0, x0), min(TILE, x0 + cell))
                        out[ys, xs] = block[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
                yield out

    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level in range(LEVELS):
            n = side // 2 ** level
            per_cm = 1e4 / (0.25 * 2 ** level)
            tw.write(tiles(level), shape=(n, n, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                     compression="zlib", compressionargs={"level": 1}, resolution=(per_cm, per_cm),
                     resolutionunit="CENTIMETER", subfiletype=0 if level == 0 else 1)
    return int((which >= 0).sum())


HWM = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
RSS = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')))"
# CPU seconds of the process (user + system): less at the mercy of other programs than wall time.
CPU = "sum(resource.getrusage(resource.RUSAGE_SELF)[:2])"


def child(code: str) -> tuple[dict, float]:
    """Run Python ``code`` in a process of its own (its peak RSS is its own); its JSON line and wall seconds."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


LOOP = """
import json, resource, time, numpy as np, openslide
from medcne.datasets.slides_plan import TileOptions, plan_path
from pathlib import Path
plan = plan_path(Path({slide!r}), "s", TileOptions(tile_size={tile}, mpp={mpp}))
side = max(1, round({tile} * plan.scale.level_factor))
xs, ys, level = plan.x.tolist(), plan.y.tolist(), plan.scale.level
del plan
slide = openslide.OpenSlide({slide!r})
rss0, cpu0, start = {rss}, {cpu}, time.perf_counter()
for x, y in zip(xs, ys):
    a = np.asarray(slide.read_region((x, y), level, (side, side)))[..., :3]
print(json.dumps({{"tiles": len(xs), "loop_s": time.perf_counter() - start, "cpu_s": {cpu} - cpu0,
                   "rss_kb": {hwm}, "rss_start_kb": rss0}}))
"""

# The command's start (its parser imports every command, torch among them) is timed apart from the tiling.
TILE_CLI = """
import json, resource, time
start = time.perf_counter()
from medcne.cli import build_parser, main
build_parser()
rss0, cpu0, started = {rss}, {cpu}, time.perf_counter()
rc = main({argv!r})
assert rc == 0, rc
print(json.dumps({{"start_s": started - start, "tile_s": time.perf_counter() - started, "cpu_s": {cpu} - cpu0,
                   "rss_kb": {hwm}, "rss_start_kb": rss0}}))
"""


def measure(slide: Path, work: Path, tile: int, mpp: float) -> dict:
    """The loop, then `medcne tile`, on one slide; each in a fresh process."""
    store = work / f"{slide.stem}-store"
    shutil.rmtree(store, ignore_errors=True)
    loop, _ = child(LOOP.format(slide=str(slide), tile=tile, mpp=mpp, hwm=HWM, rss=RSS, cpu=CPU))
    argv = ["tile", str(slide), "--out", str(store), "--tile-size", str(tile), "--mpp", str(mpp), "--quiet"]
    ours, _ = child(TILE_CLI.format(argv=argv, hwm=HWM, rss=RSS, cpu=CPU))
    n_ours = _count(store)
    shutil.rmtree(store, ignore_errors=True)
    per_loop, per_ours = loop["loop_s"] / loop["tiles"], ours["tile_s"] / n_ours
    return {"slide": slide.name, "tiles": n_ours, "loop_tiles": loop["tiles"], "loop_tiles_per_s": 1 / per_loop,
            "medcne_tiles_per_s": 1 / per_ours, "ratio": per_ours / per_loop, "medcne_start_s": ours["start_s"],
            "ratio_with_start": (ours["tile_s"] + ours["start_s"]) / n_ours / per_loop,
            "cpu_ratio": (ours["cpu_s"] / n_ours) / (loop["cpu_s"] / loop["tiles"]),
            "loop_peak_rss_mb": loop["rss_kb"] / 1024, "medcne_peak_rss_mb": ours["rss_kb"] / 1024,
            # What tiling adds to the process it runs in (torch and the rest imported before).
            "medcne_added_rss_mb": (ours["rss_kb"] - ours["rss_start_kb"]) / 1024}


def _count(store: Path) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from medcne.datasets.store_read import open_store

    return len(open_store(store))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=40960, help="level-0 side of the large slide (multiple of 8192)")
    parser.add_argument("--sides", help="comma-separated level-0 sides instead of SIDE/4 and SIDE, e.g. 10240,81920")
    parser.add_argument("--tile", type=int, default=224)
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--work", default=str(ROOT / "build" / "bench-tile"))
    parser.add_argument("--keep", action="store_true", help="keep the generated slides")
    parser.add_argument("--repeat", type=int, default=1, help="measure each slide this many times (loop, tiler, ...)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; tile {args.tile} px at {args.mpp} um/px")
    rows = []
    try:
        sides = [int(v) for v in args.sides.split(",")] if args.sides else [args.side // 4, args.side]
        for side in sides:
            slide = work / f"slide{side}.tiff"
            start = time.perf_counter()
            cells = make_slide(slide, side)
            print(f"wrote {slide.name}: {side} x {side} px, {cells} tissue cells, "
                  f"{slide.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.0f} s")
            for _ in range(args.repeat):  # alternating loop and tiler: a change of load hits both
                rows.append(measure(slide, work, args.tile, args.mpp))
                print(json.dumps(rows[-1]))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("| slide | tiles kept | loop tiles/s | medcne tiles/s | wall ratio | wall ratio with start | CPU ratio "
          "| loop peak RSS MB | medcne peak RSS MB | medcne RSS added by tiling MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rss = [f"{r[k]:.0f}" for k in ("loop_peak_rss_mb", "medcne_peak_rss_mb", "medcne_added_rss_mb")]
        print(f"| {r['slide']} | {r['tiles']} | {r['loop_tiles_per_s']:.1f} | {r['medcne_tiles_per_s']:.1f} | "
              f"{r['ratio']:.2f} | {r['ratio_with_start']:.2f} | {r['cpu_ratio']:.2f} | {' | '.join(rss)} |")


if __name__ == "__main__":
    main()
