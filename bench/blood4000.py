"""Write the 4,000-image BloodMNIST subset of the CPU measurements as an .npz a sweep can read.

The subset of ``bench/quality.py`` and issue 15: ``numpy.random.default_rng(0).choice(17092, 4000,
replace=False)`` of ``../shared/data/bloodmnist28.npz``, in that order, with the original ids.

    python bench/blood4000.py build/blood4000.npz
    medcne sweep quick --data build/blood4000.npz --out build/sweep-quick-blood4000
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from medcne.datasets import load_dataset
from medcne.io import save_npz

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bloodmnist28.npz"


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/blood4000.npz")
    data = load_dataset(DATA)
    subset = data.take(np.random.default_rng(0).choice(len(data), 4000, replace=False))
    save_npz(out, images=subset.images, labels=subset.labels, class_names=np.array(subset.class_names),
             ids=subset.ids)
    print(f"{out}: {len(subset)} images, classes {subset.class_counts()}")


if __name__ == "__main__":
    main()
