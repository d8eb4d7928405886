"""Tiny run folders for the evaluation tests (no training: two pixel statistics as the map)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medcne.datasets import SAMPLE_PATH, load_dataset
from medcne.runs import write_embedding


def make_run(folder: Path, n: int = 300, method: str = "fake", noise: float = 0.0, seed: int = 0,
             labeled: bool = True, data_path: Path = SAMPLE_PATH) -> Path:
    """A run folder of ``n`` images of the bundled sample, mapped by their pixels' mean and spread (+ noise)."""
    spec = dict(subset=n, seed=seed)
    data = load_dataset(data_path, **spec)
    X = data.to_numpy().reshape(n, -1).astype(np.float64)
    # Cheap features that differ between blood cell classes (no SVD: BLAS is slow on a busy machine).
    Z = np.c_[X.mean(1) - 180, X.std(1) - 45] + np.random.default_rng(seed).normal(scale=noise + 1e-9, size=(n, 2))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps({"method": method, "data": {"path": str(data_path), **spec}}))
    if labeled:
        write_embedding(folder, Z, data.ids, data.labels, data.class_names)
    else:
        write_embedding(folder, Z, data.ids)
    return folder
