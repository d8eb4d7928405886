"""Approximate k nearest neighbours against exact: recall@15 and time, hnswlib and pynndescent.

On BloodMNIST's pixels reduced to 50 dimensions by PCA (the space ``medcne qc
--space pixels`` uses) and on the raw pixels (2,352 dimensions), for growing
numbers of points: exact brute force (:func:`medcne.curate.nearest_neighbours`,
method 'exact'), hnswlib (HNSW graph) and pynndescent (NN-descent). Recall@15
is the share of the exact 15 neighbours that a method finds (self excluded).
Each library is warmed up on a small set first (pynndescent compiles with numba
on first use), so times are those of a warm process. Times on a shared 2-core
machine are noisy; the recall is not.

    PYTHONPATH=src .venv/bin/python bench/neighbours.py --sizes 4000 17092
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from medcne.curate.neighbours import approximate_neighbours, nearest_neighbours  # noqa: E402
from medcne.datasets import load_dataset  # noqa: E402
from medcne.device import machine_name  # noqa: E402

K = 15

ROOT = Path(__file__).resolve().parents[1]


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(found, exact, strict=True))
    return hits / exact.size


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def spaces(data, n_pca: int = 50) -> dict[str, np.ndarray]:
    X = data.to_numpy().reshape(len(data), -1).astype(np.float32) / 255
    centred = X - X.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(X) // 4000)], full_matrices=False)
    return {"pca50": centred @ vt[:n_pca].T, "pixels": X}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "bloodmnist28.npz"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 17092])
    ap.add_argument("--spaces", nargs="+", default=["pca50", "pixels"])
    args = ap.parse_args()
    data = load_dataset(args.data)
    all_spaces = spaces(data)
    print(f"machine: {machine_name()}; BloodMNIST; k={K}")
    warm = all_spaces["pca50"][:500]
    for library in ("hnswlib", "pynndescent"):
        approximate_neighbours(warm, K, library=library)
    print("| space | N | exact s | hnswlib s | hnswlib recall@15 | pynndescent s | pynndescent recall@15 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.spaces:
        for n in args.sizes:
            X = all_spaces[name][np.random.default_rng(0).permutation(len(data))[:n]]
            exact, t_exact = timed(lambda X=X: nearest_neighbours(X, K, method="exact"))
            cells = [name, f"{n:,}", f"{t_exact:.1f}"]
            for library in ("hnswlib", "pynndescent"):
                nb, t = timed(lambda X=X, lib=library: approximate_neighbours(X, K, library=lib))
                cells += [f"{t:.1f}", f"{recall(nb.indices, exact.indices):.4f}"]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
