"""PCA of images too many to hold as floats: a randomized range finder that reads them chunk by chunk.

The algorithm is the one scikit-learn's ``svd_solver='randomized'`` runs in
memory (Halko, Martinsson & Tropp 2011, "Finding structure with
randomness", algorithms 4.3-4.4 and 5.1): a Gaussian test matrix, power
iterations each followed by a QR, then the SVD of the small projected
matrix. Every product with the centred pixel matrix is made a chunk of
images at a time, so memory holds one chunk as float32 and a few
(N, 60) and (values, 60) matrices, never the pixels as floats; the images
are read ``3 + 2 * n_iter`` times (17 with the default 7 iterations, as
scikit-learn chooses for 50 components).
"""

from __future__ import annotations

import numpy as np

from ..datasets import ImageSet
from ..defaults import chunk_rows
from ..errors import check_seed

N_ITER = 7  # scikit-learn's 'auto' for few components
OVERSAMPLE = 10  # scikit-learn's n_oversamples


def pixel_rows(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, H, W[, C]) as float32 rows of their pixels in [0, 1], shape (n, H*W*C)."""
    return images.reshape(len(images), -1) / np.float32(255)


def chunked_pca(data: ImageSet, k: int, seed: int = 0, n_iter: int = N_ITER,
                oversample: int = OVERSAMPLE) -> np.ndarray:
    """The images' first ``k`` principal components, shape (N, k) float32, by decreasing variance
    (fewer when there are fewer images: N images span at most N directions).

    Pixels are taken in [0, 1] (uint8 / 255). The result is deterministic for
    a ``seed``; a component's sign is arbitrary, as for any PCA.
    """
    check_seed(seed)
    n, dim = len(data), int(np.prod(data.image_shape))
    rows = chunk_rows(dim * 4)  # one chunk of float32 pixels
    width = min(k + oversample, n, dim)

    def centred():
        for start, images in data.iter_chunks(rows):
            block = pixel_rows(images)
            block -= mean
            yield start, block

    def times(M: np.ndarray) -> np.ndarray:  # centred pixels @ M: (n, width)
        out = np.empty((n, M.shape[1]), dtype=np.float32)
        for start, block in centred():
            out[start : start + len(block)] = block @ M
        return out

    def transposed_times(Q: np.ndarray) -> np.ndarray:  # centred pixels.T @ Q: (dim, width)
        out = np.zeros((dim, Q.shape[1]), dtype=np.float64)
        for start, block in centred():
            out += block.T @ Q[start : start + len(block)]
        return out

    mean = np.zeros(dim, dtype=np.float64)
    for _, images in data.iter_chunks(rows):
        mean += images.reshape(len(images), -1).sum(0, dtype=np.float64)
    mean = (mean / (255 * n)).astype(np.float32)
    omega = np.random.default_rng(seed).standard_normal((dim, width), dtype=np.float32)
    Y = times(omega)
    for _ in range(n_iter):
        Q = np.linalg.qr(Y)[0]
        Y = times(np.linalg.qr(transposed_times(Q))[0].astype(np.float32))
    Q = np.linalg.qr(Y)[0]
    U, S, _ = np.linalg.svd(transposed_times(Q).T, full_matrices=False)  # (width, dim): small
    return np.ascontiguousarray((Q @ U[:, :k].astype(np.float32)) * S[:k].astype(np.float32))
