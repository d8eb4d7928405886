"""The paper's baselines: maps (arrays) by t-SNE or UMAP of pixels and of features.

:func:`medcne.runs.make_baseline` writes them as run folders shaped like a
t-SimCNE run.

``tsne-pixels``: openTSNE of the pixels (PCA to 50 first above 2,500 values
per image); ``tsne-resnet18`` / ``tsne-resnet152``: of ImageNet ResNet
features; ``tsne-simclr``: of the 512-D features of a SimCLR network trained
by :class:`medcne.TSimCNE` with ``loss='cosine'``; ``umap-pixels``: UMAP of the
pixels (optional, ``medcne[umap]``).
"""

from __future__ import annotations

import numpy as np

from ..datasets import ImageSet
from ..defaults import BASELINE_PARTS, PRESET, SIMCLR_EPOCHS
from ..defaults import BASELINES as METHODS
from ..errors import MedcneError, check_seed
from .resnet import MissingWeightsError, resnet_features
from .tsne import PCA_ABOVE, PCA_DIMS, check_points, pixel_features, tsne, umap

__all__ = [
    "METHODS", "MissingWeightsError", "PCA_ABOVE", "PCA_DIMS", "embed_baseline",
    "pixel_features", "resnet_features", "simclr_features", "tsne", "umap",
]


def simclr_features(data: ImageSet, seed: int = 0, preset: str = PRESET, crop: bool = True, jitter: bool = True,
                    grayscale: bool = True, **simclr) -> tuple[np.ndarray, dict]:
    """Train SimCLR (cosine InfoNCE, temperature 0.5, 128-D head) and return the 512-D backbone features.

    ``preset`` and the switches ``crop``, ``jitter``, ``grayscale`` choose its
    augmentations as for t-SimCNE (the paper's SimCLR rows with rotations use
    ``preset='rotate'``); ``simclr`` holds other :class:`medcne.TSimCNE`
    parameters (``epochs``, ``batch_size``, ``width``, ``device``...);
    ``epochs`` is one number.
    """
    from ..estimator import TSimCNE

    params = dict(simclr, preset=preset, crop=crop, jitter=jitter, grayscale=grayscale)
    epochs = params.pop("epochs", SIMCLR_EPOCHS)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise MedcneError(f"`epochs` of the SimCLR network must be an integer >= 1 (its features untrained are "
                          f"not SimCLR's); got {epochs!r}")
    epochs = int(epochs)
    est = TSimCNE(loss="cosine", epochs=(epochs, 0, 0), random_state=seed, **params)
    H = est.fit(data).features(data)
    record = {"features": "simclr", "dim": int(H.shape[1]), "epochs": epochs, "random_state": seed,
              **{k: v for k, v in params.items() if k != "verbose"}}
    return np.asarray(H, dtype=np.float32), record


def embed_baseline(
    data: ImageSet,
    method: str,
    seed: int = 0,
    n_jobs: int | None = None,
    weights="imagenet",
    download: bool = False,
    tsne_params: dict | None = None,
    simclr: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """The 2D map of one baseline method.

    Parameters
    ----------
    data : ImageSet
    method : one of :data:`METHODS`
    seed : int
        Seed of t-SNE/UMAP (and of PCA and SimCLR training).
    n_jobs : int, optional
        t-SNE threads (default: all cores).
    weights : 'imagenet', path or None
        ResNet weights (see :func:`resnet_features`).
    download : bool
        Let ResNet methods fetch missing ImageNet weights.
    tsne_params : dict, optional
        openTSNE settings overriding its defaults.
    simclr : dict, optional
        :class:`medcne.TSimCNE` settings for ``tsne-simclr``.

    Returns
    -------
    embedding : ndarray, shape (N, 2), float32
    record : dict
        Everything resolved, for ``params.json``.
    """
    if method not in METHODS:
        raise MedcneError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}")
    check_seed(seed)
    kind, reducer = BASELINE_PARTS[method]
    check_points(len(data), "UMAP" if reducer == "umap" else "t-SNE")  # before any features
    if kind == "pixels":
        X, features = pixel_features(data, seed)
    elif kind == "simclr":
        X, features = simclr_features(data, seed, **(simclr or {}))
    else:
        X, features = resnet_features(data, kind, weights, download)
    if reducer == "umap":
        Z, reducer = umap(X, seed)
    else:
        Z, reducer = tsne(X, seed, n_jobs, **(tsne_params or {}))
    return Z, {"features": features, "reducer": reducer}
