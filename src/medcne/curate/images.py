"""Pixel-level checks that complement a learned space: colour thumbnails and sharpness.

A contrastive network is trained to ignore what its augmentations change:
brightness, contrast, colour, blur (crops are rescaled), rotation. Its features
are therefore blind, by design, to an over-exposed, colour-shifted or blurred
image, and two different images of one kind of cell can sit as close as an
image and its copy. Two cheap per-image statistics, made in one pass over the
images in chunks (a lazily read PCam store included), fill these gaps:

- a **thumbnail**: the mean colour of each cell of a 7 x 7 grid, in [0, 1].
  Copies (rescaled, re-compressed, shifted by a pixel or two, turned) have
  almost the same thumbnail once turned back; exposure and colour artefacts
  stand far from every other thumbnail.
- **sharpness**: mean squared Laplacian of the gray image over its variance
  (so that a low-contrast image is not taken for a blurred one). Blur lowers
  it, noise raises it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..defaults import chunk_rows
from ..errors import MedcneError

THUMB = 7  # thumbnail side: coarse enough to forgive a 1-2 px shift at 28 px, fine enough to tell cells apart
CHUNK_MB = 16  # uint8 pixels read at a time (their float32 working copies take about 12 times that)


@dataclass(frozen=True)
class ImageChecks:
    """Per-image statistics, in image order.

    Attributes
    ----------
    thumbnails : ndarray (N, 7, 7, C) float32
        Mean colour of each cell of a 7 x 7 grid, in [0, 1].
    sharpness : ndarray (N,) float64
        Mean squared Laplacian of the gray image / its variance (0 for a flat image).
    """

    thumbnails: np.ndarray
    sharpness: np.ndarray

    def __len__(self) -> int:
        return len(self.sharpness)


def image_checks(images, chunk_mb: float = CHUNK_MB) -> ImageChecks:
    """Thumbnails and sharpness of every image.

    Parameters
    ----------
    images : array-like (N, H, W, C) or (N, H, W) uint8
        A numpy array or a lazily read store (anything with ``len`` and slices).
    chunk_mb : float
        Images read and processed at a time, in MB of uint8 pixels (bounds the memory).

    Returns
    -------
    ImageChecks
    """
    import torch

    n = len(images)
    if n == 0:
        raise MedcneError("images is empty; give at least one image")
    thumbs, sharp, rows = None, np.empty(n), 1
    start = 0
    while start < n:
        x = np.asarray(images[start : start + rows])
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or min(x.shape[1:3]) < 3:
            raise MedcneError(f"images must be N x H x W (x C) with H, W >= 3; got shape {x.shape}")
        t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255)  # (B, H, W, C)
        small = torch.nn.functional.adaptive_avg_pool2d(t.permute(0, 3, 1, 2), THUMB).permute(0, 2, 3, 1)
        if thumbs is None:
            thumbs = np.empty((n, *small.shape[1:]), dtype=np.float32)
        thumbs[start : start + len(x)] = small.numpy()
        sharp[start : start + len(x)] = _sharpness(t.mean(3))
        start += len(x)
        rows = chunk_rows(x[0].nbytes, chunk_mb * 2**20)  # the first image told the size
    return ImageChecks(thumbs, sharp)


def _sharpness(gray) -> np.ndarray:
    """Mean squared 4-neighbour Laplacian over the variance, per image (B, H, W) float tensor."""
    lap = 4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:]
    var = gray.double().var(dim=(1, 2), unbiased=False).numpy()
    energy = lap.square().double().mean(dim=(1, 2)).numpy()
    return np.where(var > 1e-8, energy / np.maximum(var, 1e-8), 0.0)


# The 8 turns and flips of a THUMB x THUMB grid, as permutations of its cells
# (turning the candidate or the query gives the same smallest difference).
_GRID = np.arange(THUMB * THUMB).reshape(THUMB, THUMB)
DIHEDRAL = np.stack([np.rot90(g, r).ravel() for g in (_GRID, _GRID[:, ::-1]) for r in range(4)])


def aligned_distances(thumbnails: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """RMS difference of each image's thumbnail to its candidates', after the best of 8 turns and flips.

    Parameters
    ----------
    thumbnails : ndarray (N, 7, 7, C)
    candidates : ndarray (N, k) int
        Indices of the images to compare each image with.

    Returns
    -------
    ndarray (N, k) float32, in [0, 1] intensity units.
    """
    t = np.ascontiguousarray(thumbnails, dtype=np.float32).reshape(len(thumbnails), THUMB * THUMB, -1)
    cand = np.ascontiguousarray(candidates, dtype=np.int64)
    if cand.ndim != 2 or (cand.size and not 0 <= cand.min() <= cand.max() < len(t)):
        raise MedcneError(f"candidates must be (N, k) indices below {len(t)}; got shape {cand.shape}")
    out = np.empty(cand.shape, dtype=np.float32)
    _aligned_kernel()(t, cand, DIHEDRAL, out)
    return out


_KERNEL = None


def _aligned_kernel():
    """The compiled loop (numba, cached on disk): no (N, k, 8, F) temporary, one pass per pair."""
    global _KERNEL
    if _KERNEL is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def aligned(t, cand, perms, out):
            cells, channels = t.shape[1], t.shape[2]
            for i in range(cand.shape[0]):
                for j in range(cand.shape[1]):
                    c = cand[i, j]
                    best = np.inf
                    for g in range(perms.shape[0]):
                        total = 0.0
                        for f in range(cells):
                            pf = perms[g, f]
                            for ch in range(channels):
                                diff = t[c, pf, ch] - t[i, f, ch]
                                total += diff * diff
                        best = min(best, total)
                    out[i, j] = np.sqrt(best / (cells * channels))

        _KERNEL = aligned
    return _KERNEL


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD): standard deviations from typical, insensitive to the outliers themselves."""
    values = np.asarray(values, dtype=np.float64)
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    if not mad > 0:  # more than half the values equal: fall back to the standard deviation
        mad = values.std() or 1.0
    return (values - med) / mad

# Fixed weights of the grid's cells, unlike under every turn and flip: the turn and flip of a thumbnail
# that weighs most under them is its upright one, the same for an image and its turned copies.
_UPRIGHT = ((np.arange(THUMB)[:, None] + 1.0) * 7.31 + (np.arange(THUMB)[None, :] + 1.0) ** 1.7).ravel()


def upright(thumbnails: np.ndarray) -> np.ndarray:
    """Each thumbnail (N, 7, 7, C), in grey and turned or flipped to a fixed orientation, as (N, 49)
    float32 rows: a turned or flipped copy of an image gets (almost) the row of its original, so that a
    search among these rows finds copies whatever the features make of them (grey: a quarter of the
    memory of colour for the search; the colour thumbnails confirm each candidate)."""
    grey = np.ascontiguousarray(thumbnails, dtype=np.float32).reshape(len(thumbnails), THUMB * THUMB, -1).mean(2)
    weights = _UPRIGHT.astype(np.float32)
    for start in range(0, len(grey), 65_536):  # the (rows, 8, 49) turned copies of one block at a time
        block = grey[start : start + 65_536]
        block[:] = np.take_along_axis(block, DIHEDRAL[(block[:, DIHEDRAL] @ weights).argmax(1)], 1)
    return grey
