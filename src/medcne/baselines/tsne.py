"""t-SNE (openTSNE) and UMAP of feature vectors, and pixels as features."""

from __future__ import annotations

import os

import numpy as np

from ..datasets import ImageSet
from ..datasets.memory import check_memory
from ..defaults import chunk_rows
from ..errors import MedcneError, check_seed, require
from .pca import N_ITER, chunked_pca, pixel_rows

# Pixel vectors longer than this are reduced by PCA first (the paper does so
# for PCam, 96 x 96 x 3 = 27,648). MedMNIST 28 x 28 x 3 = 2,352 stays raw, as
# does 48 x 48 x 1; 64 x 64 x 3 = 12,288 is reduced.
PCA_ABOVE = 2500
PCA_DIMS = 50
# The fewest points t-SNE maps: openTSNE needs a neighbour for every point. umap-learn's spectral
# start fails below n_components + 2 points (4 for a 2D map; it gives zeros for one).
TSNE_MIN = 2


def check_points(n: int, tool: str, n_components: int = 2) -> None:
    """Refuse ``n`` points (images) that ``tool`` ('t-SNE' or 'UMAP') cannot map."""
    least = TSNE_MIN if tool == "t-SNE" else n_components + 2
    if n < least:
        raise MedcneError(f"{tool} needs at least {least} images; got {n}; give more images "
                          "(a larger `subset`, if one was given)")


def pixel_features(data: ImageSet, seed: int = 0, chunk: int | None = None) -> tuple[np.ndarray, dict]:
    """Images as vectors in [0, 1], shape (N, H*W*C), or (N, 50) by PCA when H*W*C > 2,500.

    Returns the features and a record of what was done (for ``params.json``).
    PCA reads the images a chunk at a time (:func:`.pca.chunked_pca`), so the
    pixel matrix never sits in memory as floats, whatever the number of
    images. ``chunk``: images read at a time for raw pixels (default: 64 MB of
    them as float32).
    """
    n, dim = len(data), int(np.prod(data.image_shape))
    if dim > PCA_ABOVE:
        Y = chunked_pca(data, PCA_DIMS, seed)
        return Y, {"features": "pixels", "dim": dim, "pca": int(Y.shape[1]), "pca_solver": "randomized, chunked",
                   "pca_power_iterations": N_ITER}
    check_memory(n * dim * 4, str(data.source), f"the pixels of {n:,} images as float32 ({dim:,} values each)",
                 "use a `subset` of the images, or a space of features (qc's default)")
    X = np.empty((n, dim), dtype=np.float32)
    for start, imgs in data.iter_chunks(chunk or chunk_rows(dim * 4)):
        X[start : start + len(imgs)] = pixel_rows(imgs)
    return X, {"features": "pixels", "dim": dim, "pca": None}


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
    check_points(len(X), "t-SNE")
    check_seed(seed)
    openTSNE = require("openTSNE", "baselines")
    jobs = int(n_jobs or os.cpu_count() or 1)
    Z = np.asarray(openTSNE.TSNE(random_state=seed, n_jobs=jobs, verbose=False, **params).fit(np.asarray(X)))
    if not np.isfinite(Z).all():  # e.g. every image the same: no distance to learn a map from
        raise MedcneError(f"t-SNE gave no finite map of these {len(X):,} points: they are all (nearly) the same; "
                          "check the images (medcne info names blank images and duplicates)")
    record = {"tool": "openTSNE", "version": openTSNE.__version__, "random_state": seed, **params}
    return np.asarray(Z, dtype=np.float32), record


def umap(X: np.ndarray, seed: int = 0, **params) -> tuple[np.ndarray, dict]:
    """UMAP (umap-learn, default settings) of ``X``, shape (N, D) -> (N, 2)."""
    check_points(len(X), "UMAP", params.get("n_components", 2))
    check_seed(seed)
    umap_mod = require("umap", "umap")
    Z = umap_mod.UMAP(random_state=seed, **params).fit_transform(np.asarray(X))
    record = {"tool": "umap-learn", "version": getattr(umap_mod, "__version__", "?"), "random_state": seed, **params}
    return np.asarray(Z, dtype=np.float32), record
