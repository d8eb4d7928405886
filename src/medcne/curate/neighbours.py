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
Above :data:`APPROX_ABOVE` points on a CPU, ``method='auto'`` uses an
approximate index instead (:func:`approximate_neighbours`, hnswlib, the
``[ann]`` extra) when it is installed; :attr:`Neighbours.method` says which
was used, and the commands print it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..defaults import chunk_rows
from ..errors import MedcneError, require

MEMORY_MB = 512  # one block of float32 distances
# Above this many points (on a CPU) 'auto' switches to an approximate index: bench/neighbours.py measured
# hnswlib at recall@15 >= 0.99 on BloodMNIST, and exact brute force grows with N^2 (bench/RESULTS.md).
APPROX_ABOVE = 50_000
METHODS = ("auto", "exact", "approximate")
LIBRARIES = ("hnswlib", "pynndescent")
# hnswlib's graph: links per node, and the candidate lists of construction and search.
QUERY_BLOCK = 65_536  # points queried at a time
EXACT_BLOCK_MB = 64  # float64 differences of the distances recomputed at a time
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF = 16, 100, 100  # 100 rather than 200: bench/RESULTS.md


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` nearest reference points of each query point, nearest first.

    Attributes
    ----------
    indices : ndarray (N, k) int64
        Row indices into the reference points.
    distances : ndarray (N, k) float32
        Euclidean distances, ascending along each row.
    method : str
        ``'exact'``, or ``'approximate (LIBRARY)'`` for an approximate index.
    """

    indices: np.ndarray
    distances: np.ndarray
    method: str = "exact"

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


def nearest_neighbours(X, k: int, *, reference=None, device="cpu", memory_mb: float = MEMORY_MB,
                       method: str = "auto", centre: bool = True) -> Neighbours:
    """``k`` nearest neighbours by Euclidean distance: exact in bounded memory, or approximate for many points.

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
    method : {'auto', 'exact', 'approximate'}
        'auto': exact on a GPU or up to :data:`APPROX_ABOVE` points, else
        :func:`approximate_neighbours` when hnswlib is installed (else exact).

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
        raise MedcneError(f"`k` must be between 1 and {available} (the points that can be neighbours); got {k}")
    k = int(k)
    dev = resolve_device(device)
    if method not in METHODS:
        raise MedcneError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}")
    if method == "approximate" or (method == "auto" and auto_method(len(R), dev) != "exact"):
        return approximate_neighbours(X, k, reference=None if reference is None else R)
    # Centring changes no distance but shrinks |x|^2, and with it the rounding of the product form
    # (``centre=False``: the caller centred X and the reference already, on one centre).
    middle = R.mean(axis=0, dtype=np.float64).astype(np.float32) if centre else np.float32(0)
    Rt = torch.from_numpy(R - middle if centre else R).to(dev)
    Xt = Rt if reference is None else torch.from_numpy(X - middle if centre else X).to(dev)
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


def nearest_among_blocks(X, blocks, k: int, *, device="cpu") -> Neighbours:
    """Exact ``k`` nearest neighbours of ``X`` among reference points given block by block.

    ``blocks`` yields ``(start, points)``: rows ``start, start + 1, ...`` of the
    reference (e.g. a store read in chunks). Each block is searched exactly
    (:func:`nearest_neighbours`) and its best ``k`` merged with those found
    before, so memory holds ``X`` twice (as given, and centred once for all
    blocks), one block and (len(X), 2k) candidates, whatever the number of
    reference points (:func:`blocks_search_bytes`). ``X``'s own rows are not
    excluded.
    """
    X = as_points(X)
    middle = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    X = X - middle  # one centred copy for every block (any centre near the data serves the rounding)
    k = int(k)
    indices = np.empty((len(X), 0), dtype=np.int64)
    distances = np.empty((len(X), 0), dtype=np.float32)
    for start, block in blocks:
        block = as_points(block, "reference") - middle
        nb = nearest_neighbours(X, min(k, len(block)), reference=block, device=device, method="exact", centre=False)
        indices = np.concatenate([indices, nb.indices + int(start)], axis=1)
        distances = np.concatenate([distances, nb.distances], axis=1)
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]  # ties: the earlier block first
        indices, distances = np.take_along_axis(indices, order, 1), np.take_along_axis(distances, order, 1)
    if indices.shape[1] < k:
        raise MedcneError(f"`k` must be at most the {indices.shape[1]} reference points; got {k}")
    return Neighbours(indices, distances)


def blocks_search_bytes(n_queries: int, dim: int, block_bytes: int) -> int:
    """Memory that :func:`nearest_among_blocks` holds at most for ``n_queries`` float32 query
    points of ``dim`` values, searching reference blocks of ``block_bytes`` (float32) each.

    The queries twice (as given and centred) and a byte a value (the NaN check), the block three
    times (as read, centred, and their temporaries), and the rows of the exact re-ranking (a
    gathered float32 row, its float64 copy and the difference); checked against tracemalloc's
    peak in the tests.
    """
    exact_rows = min(n_queries, QUERY_BLOCK, chunk_rows(8 * dim, EXACT_BLOCK_MB << 20))
    return 9 * n_queries * dim + 3 * block_bytes + 20 * exact_rows * dim


def _exact(Q: np.ndarray, R: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Direct distances of the kept neighbours, rows re-sorted by them."""
    d = np.empty(idx.shape, dtype=np.float64)
    # Blocks of rows whose (rows, D) float64 differences take EXACT_BLOCK_MB: at 96 x 96 x 3 pixels
    # (27,648 values) 5,000 rows at once would be 1.1 GB per buffer.
    rows = min(QUERY_BLOCK, chunk_rows(8 * Q.shape[1], EXACT_BLOCK_MB << 20))
    for start in range(0, len(Q), rows):
        q, block = Q[start : start + rows], idx[start : start + rows]
        for j in range(idx.shape[1]):  # k passes over (rows, D): no (rows, k, D) buffer
            diff = R[block[:, j]].astype(np.float64) - q
            d[start : start + len(q), j] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1).astype(np.float32)


def auto_method(n: int, device="cpu") -> str:
    """What ``method='auto'`` uses for ``n`` reference points on ``device`` (as :attr:`Neighbours.method` says it)."""
    from ..device import resolve_device

    if resolve_device(device).type == "cpu" and n > APPROX_ABOVE and _installed("hnswlib"):
        return "approximate (hnswlib)"
    return "exact"


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def approximate_neighbours(X, k: int, *, reference=None, library: str = "hnswlib", seed: int = 0) -> Neighbours:
    """Approximate ``k`` nearest neighbours from an index (hnswlib's HNSW graph, or pynndescent).

    Built in one thread with a fixed seed, so that a rerun gives the same
    neighbours. The distances of the neighbours found are exact (recomputed as
    in :func:`nearest_neighbours`); a point is never its own neighbour when
    ``reference`` is None.
    """
    if library not in LIBRARIES:
        raise MedcneError(f"library must be one of {', '.join(LIBRARIES)}; got {library!r}")
    X = as_points(X)
    R = X if reference is None else as_points(reference, "reference")
    own = reference is None
    if not 1 <= int(k) <= len(R) - own:
        raise MedcneError(f"`k` must be between 1 and {len(R) - own} (the points that can be neighbours); got {k}")
    k, want = int(k), min(int(k) + own, len(R))
    if library == "hnswlib":
        hnswlib = require("hnswlib", "ann")
        index = hnswlib.Index(space="l2", dim=R.shape[1])
        index.init_index(max_elements=len(R), ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M, random_seed=seed)
        index.set_num_threads(1)
        index.add_items(R, np.arange(len(R)))
        index.set_ef(max(HNSW_EF, want))
        idx = np.empty((len(X), want), dtype=np.int64)
        for start in range(0, len(X), QUERY_BLOCK):  # its (rows, want) labels and distances, a block at a time
            idx[start : start + QUERY_BLOCK] = index.knn_query(X[start : start + QUERY_BLOCK], k=want)[0]
        del index  # its copy of the points and its graph, before the distances are recomputed
    else:
        pynndescent = require("pynndescent", "ann")
        nnd = pynndescent.NNDescent(R, n_neighbors=max(want, 15), random_state=seed, n_jobs=1, low_memory=True)
        idx = (nnd.neighbor_graph[0] if own else nnd.query(X, k=want)[0])[:, :want].astype(np.int64)
    if own:
        idx = _drop_self(idx, k)
    indices, distances = _exact(X, R, idx)
    return Neighbours(indices, distances, f"approximate ({library})")


def _drop_self(idx: np.ndarray, k: int) -> np.ndarray:
    """Each row without its own index (or without its last entry where the index missed itself)."""
    rows = np.arange(len(idx))[:, None]
    is_self = idx == rows
    drop = np.where(is_self.any(1), is_self.argmax(1), idx.shape[1] - 1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[np.arange(len(idx)), drop] = False
    return idx[keep].reshape(len(idx), -1)[:, :k]
