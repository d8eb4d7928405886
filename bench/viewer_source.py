"""What provenance costs the viewer page: data.js bytes and build time, with and without.

Builds the page of one synthetic run of slide tiles twice in the same process,
back to back: once with its six provenance columns (slide, level, x, y, mpp,
tile_size, as ``medcne tile`` writes them) and once without, and prints the
bytes of data.js per point and the ratio of build times (timings on a shared
machine are noisy; the bytes are not).

    .venv/bin/python bench/viewer_source.py            # 100,000 tiles of 40 slides
    .venv/bin/python bench/viewer_source.py --n 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from medcne.device import machine_name
from medcne.io import write_json
from medcne.runs import write_embedding
from medcne.viewer import build_viewer


def tile_run(folder: Path, n: int, slides: int, provenance: bool) -> None:
    rng = np.random.default_rng(0)
    write_embedding(folder, rng.normal(size=(n, 2)).astype(np.float32), [f"t{i}" for i in range(n)])
    if provenance:
        z = dict(np.load(folder / "embedding.npz"))
        z.update(prov_slide=np.array([f"TCGA-slide-{i % slides:03d}" for i in range(n)]),
                 prov_level=np.zeros(n, np.int64), prov_x=rng.integers(0, 120_000, n),
                 prov_y=rng.integers(0, 90_000, n), prov_mpp=np.full(n, 0.5), prov_tile_size=np.full(n, 448))
        np.savez(folder / "embedding.npz", **z)
    write_json(folder / "params.json", {"method": "tsimcne", "data": {}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="tiles")
    ap.add_argument("--slides", type=int, default=40, help="slides the tiles come from")
    args = ap.parse_args()
    images = np.random.default_rng(1).integers(0, 256, size=(args.n, 8, 8, 3), dtype=np.uint8)
    print(f"machine: {machine_name()}; n={args.n:,}")
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for provenance in (False, True, False, True):  # interleaved: load drifts hit both alike
            run = Path(tmp) / f"run-{provenance}"
            tile_run(run, args.n, args.slides, provenance)
            t0 = time.perf_counter()
            index = build_viewer(run, images=images, overwrite=True)
            seconds = time.perf_counter() - t0
            size = (index.parent / "data.js").stat().st_size
            result.setdefault(provenance, []).append((seconds, size))
    for provenance in (False, True):
        seconds = min(s for s, _ in result[provenance])
        size = result[provenance][-1][1]
        print(f"provenance={provenance!s:5}  data.js {size / 1e6:.2f} MB ({size / args.n:.1f} B/point), "
              f"build {seconds:.2f} s (best of 2)")
    extra = result[True][-1][1] - result[False][-1][1]
    ratio = min(s for s, _ in result[True]) / min(s for s, _ in result[False])
    print(f"provenance adds {extra / args.n:.1f} B/point to data.js; build time ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
