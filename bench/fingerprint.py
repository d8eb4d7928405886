"""What the images' fingerprint costs: every image hashed (up to 256 MB of them) against 64 sampled.

A run's readers (qc, view, plot, evaluate, propagate, embed) and `fit --resume` check the images
against the fingerprint params.json keeps. Usage:

    .venv/bin/python bench/fingerprint.py [--data ../shared/data/bloodmnist28.npz] [--store-images 20000]

Prints the machine, the milliseconds of each fingerprint, and the ratio of the full one to the
sampled one, for the dataset in memory and for a lazily read store of 64-px random images.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from medcne.datasets import load_dataset
from medcne.datasets.store_write import StoreWriter


def timed(data) -> tuple[float, float]:
    """Milliseconds of the sampled (64 images) and the full fingerprint of ``data``."""
    out = []
    for sampled in (64, None):
        start = time.perf_counter()
        data.fingerprint(sampled=sampled, labels=False)
        out.append(1000 * (time.perf_counter() - start))
    return out[0], out[1]


def random_store(folder: Path, n: int, side: int = 64):
    rng = np.random.default_rng(0)
    writer = StoreWriter(folder, (side, side, 3))
    blocks = (rng.integers(0, 256, (min(1000, n - i), side, side, 3), dtype=np.uint8) for i in range(0, n, 1000))
    writer.add_part("a", blocks, ids=np.array([f"a/{i}" for i in range(n)]))
    return load_dataset(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/bloodmnist28.npz"))
    ap.add_argument("--store-images", type=int, default=20000)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    cases = [("in memory", load_dataset(args.data))]
    with tempfile.TemporaryDirectory() as tmp:
        cases.append(("store, read lazily", random_store(Path(tmp) / "store", args.store_images)))
        for what, data in cases:
            mib = len(data) * int(np.prod(data.image_shape)) / 2**20
            sampled, full = timed(data)
            print(f"{what}: {len(data):,} images {data.image_shape}, {mib:.0f} MiB: 64 sampled {sampled:.1f} ms, "
                  f"every image {full:.1f} ms (ratio {full / sampled:.1f})")


if __name__ == "__main__":
    main()
