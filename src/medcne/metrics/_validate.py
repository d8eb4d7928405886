"""Input checks shared by the metrics: one clear line per mistake."""

from __future__ import annotations

import numpy as np

from ..errors import MedcneError


def as_points(Z, name: str = "Z") -> np.ndarray:
    """``Z`` as a finite float array of shape (N, d)."""
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise MedcneError(f"{name} must be a non-empty 2D array (N points x d dims); got shape {Z.shape}")
    if Z.dtype.kind not in "fiu":
        raise MedcneError(f"{name} must be numeric; got dtype {Z.dtype}")
    if not np.isfinite(Z).all():
        raise MedcneError(f"{name} holds NaN or infinite values; drop or fix those points first")
    return Z


def as_labels(labels, n: int, name: str = "labels") -> tuple[np.ndarray, int]:
    """Class codes 0..C-1 (int64, shape (N,)) and C, from any label values."""
    if labels is None:
        raise MedcneError(f"{name} are needed for this metric; give one label per point")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise MedcneError(f"{name} must be one label per point ({n}); got shape {labels.shape}")
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return codes, int(codes.max()) + 1
