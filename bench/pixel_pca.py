"""Pixel features by PCA: the chunked randomized solver against the two solvers it replaced.

The pixel baselines and ``qc --space pixels`` reduce images of more than
2,500 values to 50 PCA components. They used scikit-learn's randomized solver
on all pixels at once (below 2 GB of float32 pixels) or its incremental PCA
(above, in chunks of 8,192 images, later 500); they now use
:func:`medcne.baselines.pca.chunked_pca` at every size: the same randomized
algorithm, its products with the pixel matrix made a chunk at a time. Each way
runs in its own process on real images (BloodMNIST resized to ``--size``),
sampling its RssAnon:

- ``in-memory``: scikit-learn's ``PCA(50, svd_solver='randomized')`` on all pixels (before, below 2 GB);
- ``incremental-500`` / ``incremental-8192``: scikit-learn's ``IncrementalPCA(50)`` in chunks of
  500 / 8,192 images (before, above 2 GB; 8,192 takes minutes, so only when named in ``--modes``);
- ``chunked``: today's :func:`~medcne.baselines.pca.chunked_pca`.

Quality: the variance the 50 components keep and the 10-NN accuracy of the
50-D features (5-fold).

    PYTHONPATH=src .venv/bin/python bench/pixel_pca.py --n 17092 --size 96
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

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bloodmnist28.npz"
MODES = ("in-memory", "incremental-500", "incremental-8192", "chunked")


def solve(data, mode: str):
    import numpy as np
    from sklearn.decomposition import PCA, IncrementalPCA

    from medcne.baselines.pca import chunked_pca, pixel_rows

    if mode == "chunked":
        return chunked_pca(data, 50, 0)
    if mode == "in-memory":
        return PCA(50, svd_solver="randomized", random_state=0).fit_transform(pixel_rows(data.to_numpy()))
    rows = int(mode.split("-")[1])
    ipca = IncrementalPCA(50, batch_size=rows)
    for _, images in data.iter_chunks(rows):
        if len(images) >= 50:
            ipca.partial_fit(pixel_rows(images))
    return np.concatenate([ipca.transform(pixel_rows(images)) for _, images in data.iter_chunks(rows)])


def child(path: str, n: int, size: int, mode: str) -> dict:
    import importlib

    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from medcne.datasets import load_dataset

    data = load_dataset(path, size=size, subset=n, seed=0)
    data.to_numpy()
    importlib.import_module("sklearn.decomposition")  # its import is not the solver's memory
    Y, growth, seconds = peak_growth(lambda: solve(data, mode))
    knn = cross_val_score(KNeighborsClassifier(10), Y, data.labels, cv=5).mean()
    return {"seconds": seconds, "growth_gb": growth / 2**30, "variance": float(Y.var(0).sum()), "knn": float(knn)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, default=8000, help="images (a seeded subset)")
    ap.add_argument("--size", type=int, default=64, help="side the images are resized to")
    ap.add_argument("--modes", default="in-memory,incremental-500,chunked")
    ap.add_argument("--child", choices=MODES)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.data, args.n, args.size, args.child)))
        return
    from medcne.device import machine_name

    print(f"machine: {machine_name()}; load {os.getloadavg()[0]:.1f}; {args.n} images of {Path(args.data).name} "
          f"at {args.size} px ({3 * args.size**2:,} values)")
    found = {}
    for mode in args.modes.split(","):
        argv = [sys.executable, __file__, "--data", args.data, "--n", str(args.n), "--size", str(args.size),
                "--child", mode]
        r = found[mode] = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True)
                                     .stdout.strip().splitlines()[-1])
        print(f"{mode:17s} peak RssAnon growth {r['growth_gb']:.2f} GB, {r['seconds']:.1f} s, "
              f"variance kept {r['variance']:.2f}, 10-NN {100 * r['knn']:.1f}%")
    new = found["chunked"]
    for mode, r in found.items():
        if mode != "chunked":
            print(f"chunked / {mode}: memory {new['growth_gb'] / r['growth_gb']:.2f}, "
                  f"time {new['seconds'] / r['seconds']:.2f}, variance kept {new['variance'] / r['variance']:.4f}")


if __name__ == "__main__":
    main()
