"""Labels for every image from a few annotated ones, with a confidence.

Two neighbourhood methods on the points of some space (a t-SimCNE run's
backbone features by default, see :mod:`medcne.runs.curate`):

- ``"spreading"`` (default): label spreading (Zhou et al., "Learning with
  local and global consistency", 2004) on the symmetric k-nearest-neighbour
  graph of all images. The annotations flow along the graph, so a class
  reaches the images of its cluster even when they are far from every
  annotated image, which matters with one or a few annotations per class.
  Each class's spread mass is then divided by its total (class mass
  normalisation, Zhu et al. 2003), so a class whose annotations sit in a
  dense, well-connected region does not swallow its neighbours.
- ``"knn"``: a rank-weighted vote of the ``k`` nearest annotated images.

Confidence is the winning class's share (of the spread mass, or of the vote),
in [1/C, 1]; annotated images keep their label with confidence 1.
"""

from __future__ import annotations

import numpy as np

from ..errors import MedcneError
from .neighbours import Neighbours, nearest_neighbours
from .qc import check_labels

METHODS = ("spreading", "knn")
# Weight of the graph against the annotations. Zhou et al. use 0.99; 0.9 spread less
# far and was as good on features and better on pixels (bundled sample, bench/qc.py --base sample).
ALPHA = 0.9
MAX_ITER = 200
TOL = 1e-6


def propagate_labels(X, labels, *, method: str = "spreading", k: int = 15, device="cpu",
                     neighbours: Neighbours | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fill in the labels of the unannotated images.

    Parameters
    ----------
    X : array (N, D)
        The images as points.
    labels : array (N,) int
        Class index of each annotated image, -1 for the others; at least two
        classes must be annotated.
    method : {'spreading', 'knn'}
    k : int
        Neighbours of the graph (spreading) or annotated images voting (knn).
    device : str
        Where the neighbour search runs.
    neighbours : Neighbours, optional
        The k-nearest-neighbour graph of ``X`` when already computed (spreading).

    Returns
    -------
    labels : ndarray (N,) int64
        A class index for every image.
    confidence : ndarray (N,) float64
        Share of the winning class, 1 for annotated images.
    """
    if method not in METHODS:
        raise MedcneError(f"`method` must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    labels = check_labels(labels, len(X))
    seeds = labels >= 0
    if len(np.unique(labels[seeds])) < 2:
        raise MedcneError(
            f"propagation needs annotated images of at least two classes; got {int(seeds.sum())} annotated "
            f"image(s) of {len(np.unique(labels[seeds]))} class(es)"
        )
    n_classes = int(labels.max() + 1)
    if method == "knn" or seeds.all():
        shares = _knn_shares(X, labels, n_classes, k, device)
    else:
        nb = neighbours if neighbours is not None else nearest_neighbours(X, min(int(k), len(X) - 1), device=device)
        shares = _spread(nb, labels, n_classes)
        unreached = shares.sum(1) == 0  # a component of the graph without annotations
        if unreached.any():
            shares[unreached] = _knn_shares(X, labels, n_classes, k, device, only=unreached)[unreached]
    out = shares.argmax(1)
    confidence = shares.max(1)
    out[seeds], confidence[seeds] = labels[seeds], 1.0
    return out.astype(np.int64), confidence


def _knn_shares(X, labels, n_classes, k, device, only=None) -> np.ndarray:
    """Rank-weighted vote of the nearest annotated images, (N, n_classes); rows outside ``only`` are zero."""
    X = np.asarray(X)
    seeds = np.flatnonzero(labels >= 0)
    rows = np.flatnonzero(labels < 0 if only is None else only)
    shares = np.zeros((len(X), n_classes))
    if len(rows) == 0:
        return shares
    kk = min(int(k), len(seeds))
    nb = nearest_neighbours(X[rows], kk, reference=X[seeds], device=device)
    weights = np.arange(kk, 0, -1, dtype=np.float64)
    votes = np.zeros((len(rows), n_classes))
    for r in range(kk):
        np.add.at(votes, (np.arange(len(rows)), labels[seeds[nb.indices[:, r]]]), weights[r])
    shares[rows] = votes / votes.sum(1, keepdims=True)
    return shares


def _spread(nb: Neighbours, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Label spreading on the symmetric kNN graph; rows are class shares (zero where unreached)."""
    from scipy import sparse

    n = len(nb)
    rows = np.repeat(np.arange(n), nb.k)
    A = sparse.csr_matrix((np.ones(n * nb.k), (rows, nb.indices.ravel())), shape=(n, n))
    W = A.maximum(A.T)  # i ~ j when either is among the other's k nearest
    d = np.asarray(W.sum(1)).ravel()
    inv = 1.0 / np.sqrt(np.maximum(d, 1e-12))
    S = sparse.diags(inv) @ W @ sparse.diags(inv)
    Y = np.zeros((n, n_classes))
    seeds = labels >= 0
    Y[np.flatnonzero(seeds), labels[seeds]] = 1.0
    F = Y.copy()
    for _ in range(MAX_ITER):
        nxt = ALPHA * (S @ F) + (1 - ALPHA) * Y
        done = np.abs(nxt - F).max() < TOL * max(np.abs(nxt).max(), 1e-300)
        F = nxt
        if done:
            break
    mass = F.sum(0, keepdims=True)
    F = np.divide(F, mass, out=np.zeros_like(F), where=mass > 0)
    total = F.sum(1, keepdims=True)
    return np.divide(F, total, out=np.zeros_like(F), where=total > 0)
