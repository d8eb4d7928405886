"""Memory of neighbourhood preservation on long pixel vectors: distances recomputed in bounded blocks.

``evaluate`` (and so every ``fit``) scores preservation against the pixels:
the queried images' nearest pixel neighbours, whose distances are then
recomputed exactly in float64. At 96 x 96 x 3 (27,648 values per image) the
recomputation once took (rows, D) float64 buffers for every queried row at
once. This script runs :func:`medcne.runs.evaluate.pixel_preservation` on
random images in two child processes, each sampling its own RssAnon: with
the distances recomputed ``EXACT_BLOCK_MB`` at a time (today's code) and
with that bound lifted (the baseline: all queried rows at once, as before).

    PYTHONPATH=src .venv/bin/python bench/preservation_memory.py --n 4000 --size 96
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlimit import peak_growth  # noqa: E402


def child(n: int, size: int, bounded: bool) -> dict:
    import numpy as np

    from medcne.curate import neighbours
    from medcne.datasets import from_array
    from medcne.runs.evaluate import pixel_preservation

    if not bounded:
        neighbours.EXACT_BLOCK_MB = 1 << 40  # every queried row at once
    rng = np.random.default_rng(0)
    data = from_array(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    Z = rng.normal(size=(n, 2)).astype(np.float32)
    score, growth, seconds = peak_growth(lambda: pixel_preservation(data, Z, 15, n))
    return {"score": score, "seconds": seconds, "growth_gb": growth / 2**30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="images, all of them scored")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--child", choices=("bounded", "whole"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.n, args.size, args.child == "bounded")))
        return
    from medcne.device import machine_name

    print(f"machine: {machine_name()}; load {os.getloadavg()[0]:.1f}; {args.n} images of {args.size} px, "
          f"all scored (k = 15)")
    found = {}
    for mode in ("whole", "bounded"):
        out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--size", str(args.size), "--child", mode],
                             capture_output=True, text=True, check=True).stdout
        found[mode] = json.loads(out.strip().splitlines()[-1])
        r = found[mode]
        print(f"{mode:8s} peak RssAnon growth {r['growth_gb']:.2f} GB, {r['seconds']:.1f} s, score {r['score']:.6f}")
    b, w = found["bounded"], found["whole"]
    print(f"bounded / whole: memory {b['growth_gb'] / w['growth_gb']:.2f}, time {b['seconds'] / w['seconds']:.2f}, "
          f"same score: {b['score'] == w['score']}")


if __name__ == "__main__":
    main()
