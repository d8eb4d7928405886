"""Exact silhouette score, fast and memory-bounded.

The silhouette of point i is ``(b - a) / max(a, b)`` with ``a`` its mean
distance to the other points of its class and ``b`` the smallest mean distance
to the points of another class (0 for a class of one point), as in
scikit-learn. Everything follows from one (N, C) table: the sum of distances
from each point to all points of each class, computed without ever holding
a matrix of distances:

* the points are sorted by class, so the sum over one class is a sum over a
  contiguous range of points;
* on a CPU, a compiled loop (numba, GIL released, threads over tiles of rows)
  visits each pair of points once: a tile of 64 rows of one class against
  runs of 256 later points; the squared differences coordinate by coordinate,
  the square roots and the sums per row and per column stay in registers and
  L1 cache, vectorised;
* on a GPU (``device="cuda"``, through torch, imported only then) a row block
  is one ``cdist`` against all points and one matrix product.

Distances are computed from coordinate differences (not from the expansion
``|x|^2 + |y|^2 - 2 x.y``, which loses digits in float32) after centring the
points, summed in float32 over runs of 256 and in float64 across runs.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import MedcneError
from ..parallel import split_run
from ._validate import as_labels, as_points

_RUN = 256  # points summed in float32 before adding to the float64 total


def _check(Z, labels) -> tuple[np.ndarray, np.ndarray, int]:
    Z = as_points(Z)
    codes, n_classes = as_labels(labels, len(Z))
    if not 2 <= n_classes <= len(Z) - 1:
        raise MedcneError(
            f"the silhouette needs 2 to N-1 = {len(Z) - 1} classes; got {n_classes}: "
            "give labels with at least two classes"
        )
    return Z, codes, n_classes


def _class_sums_cpu(Zs: np.ndarray, starts: np.ndarray, n_jobs: int) -> np.ndarray:
    """Summed distance from each point to all points of each class, shape (N, C); points sorted by class.

    Each pair of points is visited once: row tiles (of one class each) go to the
    threads in runs of equal work; a thread adds a pair's distance to the row
    point's sums (rows it owns) and to the column point's sums in its own
    (N, C) table, and the tables are added at the end.
    """
    kernel = _compiled()
    n, n_classes = len(Zs), len(starts) - 1
    coords = np.ascontiguousarray(Zs.T, dtype=np.float32)  # (d, N): each coordinate contiguous
    bounds = starts.astype(np.int64)
    tiles = np.unique(np.concatenate([np.arange(0, n, _TILE), bounds[:-1]]))
    tiles = np.append(tiles[tiles < n], n)  # tile t: rows tiles[t]:tiles[t + 1], one class
    tile_class = np.searchsorted(bounds, tiles[:-1], side="right") - 1
    # Work of a tile: its rows times the columns after them.
    work = np.cumsum(np.diff(tiles) * (n - tiles[:-1]).astype(np.float64))
    # Each thread keeps an (N, C) float64 table of column sums: at most _TABLES_BYTES in all.
    threads = max(1, min(n_jobs, _TABLES_BYTES // (8 * n * n_classes), len(tiles) - 1))
    cuts = np.searchsorted(work, work[-1] * np.arange(threads + 1) / threads, side="left")
    cuts[0], cuts[-1] = 0, len(tiles) - 1
    rows = np.zeros((n, n_classes), dtype=np.float64)
    cols = np.zeros((threads, n, n_classes), dtype=np.float64)

    def run(t0: int, t1: int) -> None:
        for t in range(t0, t1):
            kernel(coords, bounds, tiles, tile_class, cuts[t], cuts[t + 1], rows, cols[t])

    split_run(run, threads, threads)
    return rows + cols.sum(axis=0)


_TILE = 64  # rows of a tile: their distances to a run of columns are summed per column too
_TABLES_BYTES = 1 << 29  # 512 MB of per-thread column tables at most (fewer threads beyond)
_KERNEL = None


def _compiled():
    """The numba kernel, compiled (or loaded from numba's cache) on first use."""
    global _KERNEL
    if _KERNEL is None:
        try:
            from numba import njit
        except ImportError as error:  # numba is a dependency; a broken install lands here
            raise MedcneError("the silhouette on CPU needs numba: pip install numba") from error

        @njit(cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz", "reassoc", "contract"})
        def tile_sums(coords, starts, tiles, tile_class, first, last, rows, cols):
            d = coords.shape[0]
            squares = np.empty(_RUN, np.float32)
            column = np.empty(_RUN, np.float32)
            for t in range(first, last):
                r0, r1, ci = tiles[t], tiles[t + 1], tile_class[t]
                # Pairs inside the tile (same class), each once.
                for i in range(r0, r1):
                    for j in range(i + 1, r1):
                        sq = np.float32(0.0)
                        for q in range(d):
                            diff = coords[q, j] - coords[q, i]
                            sq += diff * diff
                        dist = np.sqrt(sq)
                        rows[i, ci] += dist
                        cols[j, ci] += dist
                # The tile against every column after it, class by class, in runs.
                for k in range(ci, len(starts) - 1):
                    for j0 in range(max(starts[k], r1), starts[k + 1], _RUN):
                        m = min(_RUN, starts[k + 1] - j0)
                        column[:m] = 0.0
                        for i in range(r0, r1):
                            squares[:m] = 0.0
                            for q in range(d):
                                xi = coords[q, i]
                                row = coords[q, j0:j0 + m]
                                for j in range(m):
                                    diff = row[j] - xi
                                    squares[j] += diff * diff
                            run = np.float32(0.0)
                            for j in range(m):
                                dist = np.sqrt(squares[j])
                                run += dist
                                column[j] += dist
                            rows[i, k] += run
                        for j in range(m):
                            cols[j0 + j, ci] += column[j]

        _KERNEL = tile_sums
    return _KERNEL


def _class_sums_torch(Zs: np.ndarray, starts: np.ndarray, device: str) -> np.ndarray:
    import torch

    n, n_classes = len(Zs), len(starts) - 1
    pts = torch.as_tensor(Zs, device=device)
    codes = torch.as_tensor(np.repeat(np.arange(n_classes), np.diff(starts)), device=device)
    onehot = torch.nn.functional.one_hot(codes, n_classes).to(torch.float64)
    rows = max(1, (1 << 26) // n)  # 64M float64 distances per block at most
    out = torch.empty((n, n_classes), dtype=torch.float64, device=device)
    for r0 in range(0, n, rows):
        dist = torch.cdist(pts[r0 : r0 + rows], pts, compute_mode="donot_use_mm_for_euclid_dist")
        out[r0 : r0 + rows] = dist.to(torch.float64) @ onehot
    return out.cpu().numpy()


def _resolve_device(device: str | None) -> str | None:
    """None for the CPU kernel, else the torch device to compute on."""
    if device in (None, "cpu"):
        return None
    from ..device import resolve_device

    dev = resolve_device(device)
    return None if dev.type == "cpu" else str(dev)


def silhouette_samples(Z, labels, *, device: str | None = "cpu", n_jobs: int | None = None) -> np.ndarray:
    """Silhouette of each point, equal to scikit-learn's ``silhouette_samples`` (Euclidean).

    Parameters
    ----------
    Z : array, shape (N, d)
        The points (a map: d = 2).
    labels : array, shape (N,)
        Class of each point; 2 to N - 1 distinct values.
    device : {'cpu', 'cuda', 'auto'}
        Where to compute; 'cuda' and 'auto' (a GPU when present) need torch.
    n_jobs : int, optional
        CPU threads; default: all cores.

    Returns
    -------
    ndarray, shape (N,)
        Silhouette values in [-1, 1].
    """
    Z, codes, n_classes = _check(Z, labels)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)])
    # Centring keeps float32 coordinates precise relative to the distances.
    Zs = (Z[order] - Z.mean(axis=0)).astype(np.float32)
    dev = _resolve_device(device)
    if dev is None:
        jobs = n_jobs or os.cpu_count() or 1
        sums = _class_sums_cpu(Zs, starts, max(1, int(jobs)))
    else:
        sums = _class_sums_torch(Zs, starts, dev)
    own = codes[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[np.arange(len(Zs)), own] / (counts[own] - 1)
        means = sums / counts
        means[np.arange(len(Zs)), own] = np.inf
        b = means.min(axis=1)
        s = (b - a) / np.maximum(a, b)
    s = np.nan_to_num(s)  # classes of one point (0/0) score 0, as in scikit-learn
    s[counts[own] == 1] = 0.0
    out = np.empty_like(s)
    out[order] = s
    return out


def silhouette(Z, labels, *, device: str | None = "cpu", n_jobs: int | None = None) -> float:
    """Mean silhouette of all points, equal to ``sklearn.metrics.silhouette_score`` to 1e-6.

    Parameters
    ----------
    Z : array, shape (N, d)
        The points (a map: d = 2).
    labels : array, shape (N,)
        Class of each point; 2 to N - 1 distinct values.
    device : {'cpu', 'cuda', 'auto'}
        Where to compute; see :func:`silhouette_samples`.
    n_jobs : int, optional
        CPU threads; default: all cores.

    Returns
    -------
    float
        In [-1, 1]; higher means classes lie further apart relative to their size.
    """
    return float(np.mean(silhouette_samples(Z, labels, device=device, n_jobs=n_jobs)))
