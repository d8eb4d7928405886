"""kNN accuracy of a map and neighbourhood preservation between two spaces."""

from __future__ import annotations

import numpy as np

from ..defaults import KNN_K, KNN_SPLITS, KNN_TEST_SIZE
from ..errors import SEED_MAX, MedcneError, check_seed
from ._validate import as_labels, as_points


def _split(codes: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices of a seeded stratified split.

    Uses scikit-learn's ``train_test_split(stratify=...)`` as the reference code
    of the paper does. Classes with a single point cannot be split; they go to
    the training side, and when the test side would be smaller than the number
    of classes (tiny data) the split falls back to an unstratified one.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(codes))
    counts = np.bincount(codes)
    single = counts[codes] < 2
    rest = idx[~single]
    try:
        train, test = train_test_split(rest, test_size=test_size, random_state=seed, stratify=codes[rest])
    except ValueError:
        train, test = train_test_split(idx, test_size=test_size, random_state=seed)
        return np.sort(train), np.sort(test)
    return np.sort(np.concatenate([train, idx[single]])), np.sort(test)


def too_few_for_knn(codes, k: int, test_size: float = KNN_TEST_SIZE, seed: int = 0) -> str | None:
    """Why the labeled points ``codes`` are too few for kNN accuracy with ``k`` neighbours (at least
    ``k`` training points and one test point after the stratified split), or None. A ``k`` that
    is not a positive integer is refused."""
    _check_positive(k)
    return _too_few(*_split(np.asarray(codes), test_size, seed), k)


def _check_positive(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MedcneError(f"`k` must be a positive integer; got {k!r}")


def _too_few(train: np.ndarray, test: np.ndarray, k: int) -> str | None:
    if len(test) == 0 or len(train) < k:
        return (f"{k} needs at least {k} training points and one test point; got {len(train)} and {len(test)} "
                f"from {len(train) + len(test)} points")
    return None


def knn_accuracy(Z, labels, k: int = KNN_K, test_size: float = KNN_TEST_SIZE, seed: int = 0) -> float:
    """Accuracy (%) of a k-nearest-neighbour classifier on the map.

    Parameters
    ----------
    Z : array, shape (N, d)
        The embedding (any d; the paper's maps have d = 2).
    labels : array, shape (N,)
        Class of each point (any values: ints or strings).
    k : int
        Neighbours voting (uniform weights, Euclidean distance); paper: 15.
    test_size : float
        Fraction of points held out, stratified by class; paper: 0.1.
    seed : int
        Seed of the split.

    Returns
    -------
    float
        Percentage of held-out points whose class is the majority of their k
        nearest training points.
    """
    from sklearn.neighbors import KNeighborsClassifier

    Z = as_points(Z)
    codes, _ = as_labels(labels, len(Z))
    if not 0 < test_size < 1:
        raise MedcneError(f"`test_size` must lie strictly between 0 and 1; got {test_size!r}")
    check_seed(seed)
    _check_positive(k)
    train, test = _split(codes, test_size, seed)
    if problem := _too_few(train, test, k):
        raise MedcneError(f"`k` {problem}: use a smaller k or more points")
    clf = KNeighborsClassifier(n_neighbors=int(k)).fit(Z[train], codes[train])
    return float(100.0 * np.mean(clf.predict(Z[test]) == codes[test]))


def knn_accuracy_splits(
    Z, labels, k: int = KNN_K, test_size: float = KNN_TEST_SIZE, n_splits: int = KNN_SPLITS, seed: int = 0
) -> np.ndarray:
    """kNN accuracy (%) over ``n_splits`` stratified splits (seeds ``seed``, ``seed+1``..., past
    :data:`~medcne.errors.SEED_MAX` counted on from 0).

    Returns
    -------
    ndarray, shape (n_splits,)
        One accuracy per split; report ``.mean()`` and ``.std()``.
    """
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise MedcneError(f"`n_splits` must be a positive integer; got {n_splits!r}")
    check_seed(seed)
    return np.array([knn_accuracy(Z, labels, k, test_size, (seed + i) % (SEED_MAX + 1)) for i in range(n_splits)])


def _neighbours(X: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices (len(queries), k) of the k nearest points of each query, itself excluded.

    Exact (brute force for high dimensions, a tree for low ones). scikit-learn
    computes brute-force distances in chunks (its ``working_memory``), so memory
    stays bounded for large N.
    """
    from sklearn.neighbors import NearestNeighbors

    algorithm = "brute" if X.shape[1] > 15 else "auto"
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm).fit(X)
    return without_query(nn.kneighbors(X[queries], return_distance=False), queries, k)


def without_query(idx: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` neighbours of each query from its ``k + 1`` nearest points (itself among them, as a rule).

    The query itself is usually first, but exact duplicates may come first
    instead; the query is dropped where it appears, else the farthest point.
    """
    is_self = idx == np.asarray(queries)[:, None]
    has_self = is_self.any(axis=1)
    is_self[~has_self, -1] = True
    return idx[~is_self].reshape(len(queries), k)


def check_k(k, n: int) -> None:
    """A neighbourhood size for ``n`` points: an integer in 1..n-1, else one line naming ``k``."""
    if not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise MedcneError(f"`k` must be an integer in 1..{n - 1}; got {k!r}")


def preservation_queries(n: int, n_queries: int | None = None, seed: int = 0) -> np.ndarray:
    """The points scored by neighbourhood preservation: all ``n``, or a seeded sorted sample of ``n_queries``."""
    check_seed(seed)
    if n_queries is None or n_queries >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(n_queries), replace=False))


def preserved_share(high: np.ndarray, Z, queries: np.ndarray, k: int) -> float:
    """Mean share of the ``queries``' neighbours ``high`` (len(queries), k) among their k nearest in ``Z``."""
    Z = as_points(Z)
    check_k(k, len(Z))
    low = _neighbours(Z, queries, int(k))
    # Members of each row of `high` also in the same row of `low` (k x k compares per point).
    shared = (high[:, :, None] == low[:, None, :]).any(axis=2).sum(axis=1)
    return float(np.mean(shared) / k)


def neighbour_preservation(X_high, Z, k: int = 15, n_queries: int | None = None, seed: int = 0) -> float:
    """Fraction of each point's k nearest neighbours in ``X_high`` that stay among its k nearest in ``Z``.

    Parameters
    ----------
    X_high : array, shape (N, D)
        The high-dimensional data (pixels flattened, or backbone features).
    Z : array, shape (N, d)
        The map.
    k : int
        Neighbourhood size.
    n_queries : int, optional
        Score only a seeded random subset of this many points (their neighbours
        are still searched among all N, so each score is exact); for large N,
        where all N queries in D dimensions would take long.
    seed : int
        Seed of the query subset.

    Returns
    -------
    float
        Mean over the scored points of |kNN_high ∩ kNN_map| / k, in [0, 1].
    """
    X_high = as_points(np.asarray(X_high).reshape(len(X_high), -1), "X_high")
    Z = as_points(Z)
    if len(X_high) != len(Z):
        raise MedcneError(f"X_high has {len(X_high)} points but Z has {len(Z)}; give the same points")
    check_k(k, len(Z))
    queries = preservation_queries(len(Z), n_queries, seed)
    return preserved_share(_neighbours(X_high.astype(np.float32, copy=False), queries, int(k)), Z, queries, int(k))
