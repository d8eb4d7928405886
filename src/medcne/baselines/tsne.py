"""t-SNE (openTSNE) and UMAP of feature vectors, and pixels as features."""

from __future__ import annotations

import os

import numpy as np

from ..datasets import ImageSet
from ..datasets.memory import check_memory, fits
from ..defaults import chunk_rows
from ..errors import require

# Pixel vectors longer than this are reduced by PCA first (the paper does so
# for PCam, 96 x 96 x 3 = 27,648). MedMNIST 28 x 28 x 3 = 2,352 stays raw, as
# does 48 x 48 x 1; 64 x 64 x 3 = 12,288 is reduced.
PCA_ABOVE = 2500
PCA_DIMS = 50
# Above this many float32 bytes of pixels, PCA runs incrementally on chunks.
PCA_IN_MEMORY_BYTES = 2 << 30
# Incremental PCA takes the SVD of (PCA_DIMS + rows) x values at each chunk: its time per
# image and its memory (about six float64 copies of a chunk) grow with the rows of a chunk.
# Chunks of 500 rows (at most 128 MB of float64 values, at least 100 rows): at 96 x 96 x 3,
# 0.69 GB and 114 s for 17,092 images, where 8,192 rows took 9.05 GB and 575 s, keeping
# the same variance (bench/pixel_pca.py).
IPCA_ROWS = 10 * PCA_DIMS
IPCA_BLOCK_MB = 128


def pixel_features(data: ImageSet, seed: int = 0, chunk: int | None = None) -> tuple[np.ndarray, dict]:
    """Images as vectors in [0, 1], shape (N, H*W*C), or (N, 50) by PCA when H*W*C > 2,500.

    Returns the features and a record of what was done (for ``params.json``).
    PCA runs on all pixels at once (scikit-learn's randomized solver) when
    they take at most 2 GB as float32 and twice that fits in the memory
    available; otherwise incrementally, a few hundred images at a time
    (``pca_solver`` in the record says which), so that the full pixel matrix
    never sits in memory as floats. ``chunk``: images read at a time for raw
    pixels (default: 64 MB of them as float32).
    """
    n, dim = len(data), int(np.prod(data.image_shape))
    where = str(data.source)
    if dim <= PCA_ABOVE:
        check_memory(n * dim * 4, where, f"the pixels of {n:,} images as float32 ({dim:,} values each)",
                     "use a `subset` of the images, or a space of features (qc's default)")
        X = np.empty((n, dim), dtype=np.float32)
        for start, imgs in data.iter_chunks(chunk or chunk_rows(dim * 4)):
            X[start : start + len(imgs)] = pixel_rows(imgs)
        return X, {"features": "pixels", "dim": dim, "pca": None}
    from sklearn.decomposition import PCA, IncrementalPCA

    # In memory: the pixels as float32, the centred copy scikit-learn makes of them and, from
    # disk, the uint8 images read whole.
    if n * dim * 4 <= PCA_IN_MEMORY_BYTES and fits((8 + data.is_lazy) * n * dim):
        X = pixel_rows(data.to_numpy())
        Y = PCA(PCA_DIMS, svd_solver="randomized", random_state=seed).fit_transform(X).astype(np.float32)
        return Y, {"features": "pixels", "dim": dim, "pca": PCA_DIMS, "pca_solver": "randomized"}
    rows = ipca_rows(dim)
    ipca = IncrementalPCA(PCA_DIMS, batch_size=rows)
    for _, imgs in data.iter_chunks(rows):
        if len(imgs) >= PCA_DIMS:  # a last chunk smaller than the components cannot be fitted
            ipca.partial_fit(pixel_rows(imgs))
    Y = np.empty((n, PCA_DIMS), dtype=np.float32)
    for start, imgs in data.iter_chunks(rows):
        Y[start : start + len(imgs)] = ipca.transform(pixel_rows(imgs))
    return Y, {"features": "pixels", "dim": dim, "pca": PCA_DIMS, "pca_solver": "incremental"}


def ipca_rows(dim: int) -> int:
    """Images per chunk of incremental PCA for images of ``dim`` values (see ``IPCA_ROWS``)."""
    return max(2 * PCA_DIMS, min(IPCA_ROWS, (IPCA_BLOCK_MB << 20) // (8 * dim)))


def pixel_rows(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, H, W[, C]) as float32 rows of their pixels in [0, 1], shape (n, H*W*C)."""
    return images.reshape(len(images), -1) / np.float32(255)


def tsne(X: np.ndarray, seed: int = 0, n_jobs: int | None = None, **params) -> tuple[np.ndarray, dict]:
    """openTSNE with its default settings (perplexity 30, PCA initialisation, FFT gradients).

    Parameters
    ----------
    X : array, shape (N, D)
    seed : int
        ``random_state`` of openTSNE.
    n_jobs : int, optional
        Threads; default all cores.
    **params
        Overrides of openTSNE's defaults (tests use few iterations).

    Returns
    -------
    embedding : ndarray, shape (N, 2), float32
    record : dict
        The openTSNE settings used, for ``params.json``.
    """
    openTSNE = require("openTSNE", "baselines")
    jobs = int(n_jobs or os.cpu_count() or 1)
    Z = openTSNE.TSNE(random_state=seed, n_jobs=jobs, verbose=False, **params).fit(np.asarray(X))
    record = {"tool": "openTSNE", "version": openTSNE.__version__, "random_state": seed, **params}
    return np.asarray(Z, dtype=np.float32), record


def umap(X: np.ndarray, seed: int = 0, **params) -> tuple[np.ndarray, dict]:
    """UMAP (umap-learn, default settings) of ``X``, shape (N, D) -> (N, 2)."""
    umap_mod = require("umap", "umap")
    Z = umap_mod.UMAP(random_state=seed, **params).fit_transform(np.asarray(X))
    record = {"tool": "umap-learn", "version": getattr(umap_mod, "__version__", "?"), "random_state": seed, **params}
    return np.asarray(Z, dtype=np.float32), record
