"""Make the bundled demo sample from the joined BloodMNIST file.

Usage: python scripts/make_sample.py [../shared/data/bloodmnist28.npz]

Writes src/medcne/datasets/data/bloodmnist_sample.npz: a stratified random subset
of 2,000 images (seed 0) with labels, class names, the official split and, as
ids, the row index of each image in the source file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from medcne.datasets import read_npz, stratified_indices

N, SEED = 2000, 0
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared/data/bloodmnist28.npz")
    data = read_npz(src)
    idx = stratified_indices(data.labels, len(data), N, SEED)
    with np.load(src) as raw:
        split = raw["split"][idx]
    out = ROOT / "src/medcne/datasets/data/bloodmnist_sample.npz"
    np.savez_compressed(
        out,
        images=data.images[idx],
        labels=data.labels[idx],
        class_names=np.array(data.class_names),
        split=split,
        ids=np.array([str(i) for i in idx]),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(idx)} images)")


if __name__ == "__main__":
    main()
