"""Which images: positions from integers or a boolean mask, and a seeded stratified draw.

Leaves of :mod:`medcne.datasets.imageset` (``ImageSet.take``, ``subset``, ``LazyImages``).
"""

from __future__ import annotations

import numpy as np

from ..errors import MedcneError, check_seed


def positions(indices, n: int, where: str) -> np.ndarray:
    """Positions among ``n`` images, from integers or a boolean mask of ``n`` values (as numpy indexes):
    a mask is never read as the positions 0 and 1."""
    a = np.asarray(indices)
    if a.dtype == bool:
        if a.shape != (n,):
            raise MedcneError(f"`indices` of {where}: a boolean mask of shape {a.shape} for {n} images; give one "
                              "True or False per image")
        return np.flatnonzero(a)
    if a.size and a.dtype.kind not in "iu":
        raise MedcneError(f"`indices` of {where}: positions must be integers (or a boolean mask); got {a.dtype}")
    return a.astype(np.int64).reshape(-1)


def stratified_indices(labels: np.ndarray | None, n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset, with class proportions kept.

    Each class gets ``n * share`` images, rounded by largest remainder so that the
    counts add up to ``n`` exactly.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise MedcneError(f"`subset` must be a positive integer; got {n!r}")
    if n > n_total:
        raise MedcneError(
            f"`subset` {n} is larger than the dataset ({n_total} images); "
            f"choose at most {n_total} or leave `subset` unset"
        )
    check_seed(seed)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n_total, size=n, replace=False))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / n_total
    take = np.floor(exact).astype(int)
    remainder = n - take.sum()
    order = np.argsort(-(exact - take), kind="stable")
    take[order[:remainder]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))
