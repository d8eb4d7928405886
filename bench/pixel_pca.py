"""Pixel features by PCA: time, memory and quality of the incremental solver against its old chunk.

The pixel baselines and ``qc --space pixels`` reduce images of more than
2,500 values to 50 PCA components: all at once (scikit-learn's randomized
solver) when the pixels take at most 2 GB as float32 and twice that fits,
else incrementally, a chunk of images at a time. Incremental PCA takes an SVD
of (50 + rows) x values per chunk, so its time per image and its memory grow
with the rows of a chunk: it once used 8,192 rows, now ``ipca_rows`` (500, at
most 128 MB of float64 values). Each way runs in its own process on real
images (BloodMNIST resized to ``--size``), sampling its RssAnon:

- ``rows-8192``: the incremental solver with the old chunk (the baseline);
- ``incremental``: the incremental solver as today;
- ``in-memory``: the randomized solver on all pixels at once (today's choice below 2 GB).

Quality: the variance the 50 components keep (against the in-memory solver's)
and the 10-NN accuracy of the 50-D features (5-fold).

    PYTHONPATH=src .venv/bin/python bench/pixel_pca.py --n 8000 --size 64
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlimit import peak_growth  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bloodmnist28.npz"
MODES = ("rows-8192", "incremental", "in-memory")


def child(path: str, n: int, size: int, mode: str) -> dict:
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from medcne.datasets import load_dataset

    tsne_mod = importlib.import_module("medcne.baselines.tsne")  # the package exports a function `tsne`
    if mode != "in-memory":
        tsne_mod.PCA_IN_MEMORY_BYTES = 0
    if mode == "rows-8192":
        tsne_mod.IPCA_ROWS, tsne_mod.IPCA_BLOCK_MB = 8192, 1 << 30
    data = load_dataset(path, size=size, subset=n, seed=0)
    data.to_numpy()
    importlib.import_module("sklearn.decomposition")  # its import is not the solver's memory
    (Y, record), growth, seconds = peak_growth(lambda: tsne_mod.pixel_features(data, seed=0))
    knn = cross_val_score(KNeighborsClassifier(10), Y, data.labels, cv=5).mean()
    return {"solver": record["pca_solver"], "rows": tsne_mod.ipca_rows(record["dim"]), "dim": record["dim"],
            "seconds": seconds, "growth_gb": growth / 2**30, "variance": float(Y.var(0).sum()), "knn": float(knn)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, default=8000, help="images (a seeded subset)")
    ap.add_argument("--size", type=int, default=64, help="side the images are resized to")
    ap.add_argument("--child", choices=MODES)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.data, args.n, args.size, args.child)))
        return
    from medcne.device import machine_name

    print(f"machine: {machine_name()}; load {os.getloadavg()[0]:.1f}; {args.n} images of {Path(args.data).name} "
          f"at {args.size} px")
    found = {}
    for mode in MODES:
        argv = [sys.executable, __file__, "--data", args.data, "--n", str(args.n), "--size", str(args.size),
                "--child", mode]
        r = found[mode] = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True)
                                     .stdout.strip().splitlines()[-1])
        rows = f"{r['rows'] if mode != 'rows-8192' else 8192} rows" if r["solver"] == "incremental" else "all"
        print(f"{mode:12s} {r['solver']:11s} ({rows}, {r['dim']:,} values): peak RssAnon growth "
              f"{r['growth_gb']:.2f} GB, {r['seconds']:.1f} s, variance kept {r['variance']:.2f}, "
              f"10-NN {100 * r['knn']:.1f}%")
    new, old, whole = found["incremental"], found["rows-8192"], found["in-memory"]
    print(f"incremental / rows-8192: memory {new['growth_gb'] / old['growth_gb']:.2f}, "
          f"time {new['seconds'] / old['seconds']:.2f}; variance kept / in-memory "
          f"{new['variance'] / whole['variance']:.4f} (rows-8192: {old['variance'] / whole['variance']:.4f})")


if __name__ == "__main__":
    main()
