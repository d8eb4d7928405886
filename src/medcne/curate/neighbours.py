"""Exact k nearest neighbours in bounded memory (brute force, block by block).

One matrix product per block of query rows gives the squared Euclidean
distances of the block to every reference point; ``torch.topk`` keeps the
``k`` smallest. Only one block of distances (``memory_mb``) exists at a time,
so 327,680 points of 512 dimensions need the features (640 MB) plus one
block, and the result is exact. The distances of the neighbours kept are then
recomputed directly from the vectors (``||x - y||``, float64), because the
product form ``|x|^2 - 2 x.y + |y|^2`` loses the small distances of near
duplicates to float32 rounding.

Brute force on a CPU costs N^2 D multiply-adds: minutes at PCam size
(bench/RESULTS.md, section Curation); on a GPU (``device='cuda'``) seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MedcneError

MEMORY_MB = 512  # one block of float32 distances


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` nearest reference points of each query point, nearest first.

    Attributes
    ----------
    indices : ndarray (N, k) int64
        Row indices into the reference points.
    distances : ndarray (N, k) float32
        Euclidean distances, ascending along each row.
    """

    indices: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def as_points(X, name: str = "X") -> np.ndarray:
    """``X`` as a finite float32 (N, D) array, or a one-line error naming ``name``."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise MedcneError(f"{name} must be a non-empty 2-D array (points x dimensions); got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise MedcneError(f"{name} must hold numbers; got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise MedcneError(f"{name} holds NaN or infinite values; remove or fix those rows first")
    return X


def nearest_neighbours(X, k: int, *, reference=None, device="cpu", memory_mb: float = MEMORY_MB) -> Neighbours:
    """Exact ``k`` nearest neighbours by Euclidean distance, in bounded memory.

    Parameters
    ----------
    X : array (N, D)
        Query points.
    k : int
        Neighbours per point.
    reference : array (M, D), optional
        Points to search; by default ``X`` itself, and then a point is never
        its own neighbour (an exact duplicate of it still is, at distance 0).
    device : str or torch.device
        Where the products run ('cpu', 'cuda', 'auto').
    memory_mb : float
        Size of one block of distances (float32), the only N x M-shaped buffer.

    Returns
    -------
    Neighbours
        ``indices`` and ``distances`` of shape (N, k), nearest first.
    """
    import torch

    from ..device import resolve_device

    X = as_points(X)
    R = X if reference is None else as_points(reference, "reference")
    if R.shape[1] != X.shape[1]:
        raise MedcneError(f"reference has {R.shape[1]} dimensions but X has {X.shape[1]}; give points of the same space")
    available = len(R) - (reference is None)
    if not 1 <= int(k) <= available:
        raise MedcneError(f"k must be between 1 and {available} (the points that can be neighbours); got {k}")
    k = int(k)
    dev = resolve_device(device)
    # Centring changes no distance but shrinks |x|^2, and with it the rounding of the product form.
    centre = R.mean(axis=0, dtype=np.float64).astype(np.float32)
    Rt = torch.from_numpy(R - centre).to(dev)
    Xt = Rt if reference is None else torch.from_numpy(X - centre).to(dev)
    r2 = (Rt * Rt).sum(1)
    rows = int(max(1, min(len(X), memory_mb * 2**20 // (4 * len(R)))))
    indices = np.empty((len(X), k), dtype=np.int64)
    distances = np.empty((len(X), k), dtype=np.float32)
    for start in range(0, len(X), rows):
        q = Xt[start : start + rows]
        d2 = torch.addmm(r2.unsqueeze(0), q, Rt.T, alpha=-2.0)  # |r|^2 - 2 q.r: |q|^2 does not change the order
        if reference is None:
            own = torch.arange(len(q), device=dev)
            d2[own, own + start] = float("inf")
        idx = torch.topk(d2, k, dim=1, largest=False).indices.cpu().numpy()
        indices[start : start + len(q)], distances[start : start + len(q)] = _exact(
            X[start : start + len(q)], R, idx
        )
    return Neighbours(indices, distances)


def _exact(Q: np.ndarray, R: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Direct distances of the kept neighbours, rows re-sorted by them."""
    d = np.empty(idx.shape, dtype=np.float64)
    for j in range(idx.shape[1]):  # k passes over (rows, D): no (rows, k, D) buffer
        diff = R[idx[:, j]].astype(np.float64) - Q
        d[:, j] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1).astype(np.float32)
