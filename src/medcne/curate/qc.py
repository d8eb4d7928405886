"""Quality control of a dataset from the neighbourhoods of its images.

Three detectors share one k-nearest-neighbour graph (:func:`nearest_neighbours`)
of the images in some space (the run-level code, :mod:`medcne.runs.curate`,
chooses it: a t-SimCNE run's backbone features by default). All three are
neighbourhood methods; they need no training and no labels beyond the ones
being checked:

- **label issues**: each image's label against a vote of its ``k`` nearest
  neighbours (their labels, the image itself left out: an out-of-sample
  prediction, as confident learning uses). Votes are rank-weighted (nearest
  ``k``, farthest 1) so that ties break towards the nearest images. Score =
  1 - the vote share of the image's own label (0: every neighbour agrees; 1:
  none does); the suggested label is the winner of the vote.
- **near-duplicates**: among the ``k`` nearest neighbours, the image whose
  7 x 7 colour thumbnail, turned or flipped to match, differs least
  (:mod:`medcne.curate.images`). The space proposes (a rotated or shifted copy
  is near in the features of a network trained to ignore rotations and
  shifts), the thumbnails confirm (in a learned space many different images of
  one kind sit as close as a copy). Likely below an RMS difference of
  ``DUPLICATE_RMS``. The thumbnails, turned upright (one fixed orientation
  for all 8 turns and flips), propose ``UPRIGHT_K`` more candidates each: the
  copies a short training has not yet put among the ``k`` nearest. Without
  image checks: the nearest neighbour in the space.
- **outliers / artefacts**: robust z-score (median and MAD) of the log mean
  distance to the ``k`` nearest neighbours; with image checks, the largest of
  that, the same for the thumbnails against those neighbours (exposure and
  colour, which the features ignore by design) and the absolute z-score of the
  log sharpness (blur, noise). A few copies of the same artefact do not hide
  each other while they are fewer than ``k``.

Every "likely" flag is a fixed rule on a score (constants below, chosen on the
bundled sample with its own planted problems, not on the benchmark); the scores
themselves are what to sort by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MedcneError
from .images import THUMB, ImageChecks, aligned_distances, robust_z, upright
from .neighbours import Neighbours, nearest_neighbours

# Likely label error: at most this share of the (rank-weighted) neighbour vote
# supports the image's own label, and another class wins the vote. 0: no neighbour
# shares it (on the bundled sample's planted flips about half the flags were
# flips, against a quarter at 0.2).
LABEL_SHARE_MAX = 0.0
# Duplicate candidates from the thumbnails turned upright (curate.images.upright), beside the space's:
# the copies of an image that the space does not put among its k nearest (a short training).
UPRIGHT_K = 3
# Likely duplicate, in a space alone: nearest other image closer than this times the median nearest distance.
DUPLICATE_RATIO = 0.25
# Likely duplicate, with image checks: RMS thumbnail difference (in [0, 1] intensity) below this
# (on the bundled sample: 16 of 25 planted copies below it, under 1% of the other images).
DUPLICATE_RMS = 0.02
# Likely outlier: robust z-score above this (on the bundled sample: the largest of 2,025 typical
# images' scores was 5.2, its 99.9th percentile 4.9).
OUTLIER_Z = 5.0
OUTLIER_CAP = 1000.0  # a blank image's sharpness is 0: keep its score finite
SHARPNESS_FLOOR = 1e-3


@dataclass
class QCResult:
    """Per-image quality-control scores, in the order of the points given.

    Attributes
    ----------
    label_issue_score : ndarray (N,) float
        1 - own-label share of the neighbour vote; NaN for unlabeled images.
    suggested_label : ndarray (N,) int64
        Winner of the vote (class index); -1 when no neighbour is labeled.
    likely_label_error : ndarray (N,) bool
    duplicate_index : ndarray (N,) int64
        The closest other image (see :func:`near_duplicates`).
    duplicate_distance : ndarray (N,) float
        Its distance: RMS thumbnail difference with image checks, else units of the space.
    likely_duplicate : ndarray (N,) bool
    outlier_score : ndarray (N,) float
        Robust standard deviations from typical (see :func:`outlier_scores`).
    likely_outlier : ndarray (N,) bool
    neighbours : str
        How the neighbours were found: 'exact' or 'approximate (LIBRARY)'.
    """

    label_issue_score: np.ndarray
    suggested_label: np.ndarray
    likely_label_error: np.ndarray
    duplicate_index: np.ndarray
    duplicate_distance: np.ndarray
    likely_duplicate: np.ndarray
    outlier_score: np.ndarray
    likely_outlier: np.ndarray
    neighbours: str = "exact"

    def duplicate_pairs(self) -> np.ndarray:
        """Unordered pairs (i, j), i < j, of the likely duplicates; shape (P, 2)."""
        i = np.flatnonzero(self.likely_duplicate)
        pairs = np.sort(np.c_[i, self.duplicate_index[i]], axis=1)
        return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)

    def summary(self) -> dict:
        """Counts of the flags: label errors, duplicate pairs, outliers."""
        return {
            "label_errors": int(self.likely_label_error.sum()),
            "duplicate_pairs": int(len(self.duplicate_pairs())),
            "outliers": int(self.likely_outlier.sum()),
            "neighbours": self.neighbours,
        }


def check_enough_images(n: int) -> None:
    """Quality control compares each image with its neighbours: it needs at least 3 images."""
    if n < 3:
        raise MedcneError(f"quality control needs at least 3 images; got {n}")


# Per image, beside its points: the search index's graph (hnswlib, measured ~650 B), and afterwards
# its 7 x 7 x 3 float32 thumbnail (588 B); per neighbour an int64 index and a float32 distance.
INDEX_BYTES, THUMB_BYTES, NEIGHBOUR_BYTES = 650, 3 * THUMB * THUMB * 4, 12


def check_labels(labels, n: int) -> np.ndarray:
    """``labels`` as int64 of length ``n`` (-1 = unlabeled), or a one-line error."""
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise MedcneError(f"labels must be {n} integer class indices (-1 for none); got {labels.dtype} {labels.shape}")
    if labels.min(initial=0) < -1:
        raise MedcneError(f"labels must be class indices >= 0 or -1 for none; got {labels.min()}")
    return labels.astype(np.int64)


def vote_shares(nb: Neighbours, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Rank-weighted share of each class among each image's neighbours, (N, n_classes).

    Unlabeled neighbours (-1) do not vote; a row with none labeled is all zero.
    """
    weights = np.arange(nb.k, 0, -1, dtype=np.float64)  # nearest k, farthest 1
    neighbour_labels = labels[nb.indices]
    votes = np.zeros((len(nb), n_classes))
    for r in range(nb.k):
        lab = neighbour_labels[:, r]
        ok = lab >= 0
        np.add.at(votes, (np.flatnonzero(ok), lab[ok]), weights[r])
    total = votes.sum(1, keepdims=True)
    return np.divide(votes, total, out=np.zeros_like(votes), where=total > 0)


def label_issues(nb: Neighbours, labels, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label-issue score, suggested label and the likely-error flag of each image.

    Parameters
    ----------
    nb : Neighbours
        The images' nearest neighbours among themselves.
    labels : array (N,) int
        Class indices, -1 for unlabeled images.
    n_classes : int, optional
        Number of classes (default: largest label + 1).

    Returns
    -------
    score : ndarray (N,) float64
        1 - share of the own label in the neighbour vote; NaN where unlabeled
        or no neighbour is labeled.
    suggested : ndarray (N,) int64
        The vote's winner; -1 where no neighbour is labeled.
    likely : ndarray (N,) bool
        Own share at most ``LABEL_SHARE_MAX`` and another class suggested.
    """
    labels = check_labels(labels, len(nb))
    n_classes = int(labels.max(initial=-1) + 1) if n_classes is None else int(n_classes)
    if labels.max(initial=-1) >= n_classes:
        raise MedcneError(f"`n_classes` is {n_classes}, but the labels hold class {int(labels.max())}; give the "
                          "number of classes (at least the largest label + 1), or leave it out")
    shares = vote_shares(nb, labels, max(n_classes, 1))
    voted = shares.sum(1) > 0
    suggested = np.where(voted, shares.argmax(1), -1)
    own = np.where(labels >= 0, shares[np.arange(len(nb)), np.maximum(labels, 0)], np.nan)
    score = np.where(voted & (labels >= 0), 1.0 - own, np.nan)
    likely = (score >= 1.0 - LABEL_SHARE_MAX) & (suggested != labels) & (labels >= 0)
    return score, suggested.astype(np.int64), likely


def near_duplicates(nb: Neighbours, aligned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest other image, its distance, and whether it is a likely duplicate.

    Without ``aligned``: the nearest neighbour in the space; likely when closer
    than ``DUPLICATE_RATIO`` times the median nearest distance. With
    ``aligned`` (:func:`aligned_distances` of the thumbnails to the
    neighbours, (N, k)): the neighbour whose thumbnail differs least; likely
    below ``DUPLICATE_RMS``.

    Returns
    -------
    index : ndarray (N,) int64
    distance : ndarray (N,) float32
        Space units, or RMS thumbnail difference in [0, 1] with ``aligned``.
    likely : ndarray (N,) bool
    """
    if aligned is not None:
        best = aligned.argmin(1)
        rows = np.arange(len(nb))
        distance = aligned[rows, best]
        return nb.indices[rows, best].copy(), distance, distance < DUPLICATE_RMS
    distance = nb.distances[:, 0]
    scale = float(np.median(distance))
    return nb.indices[:, 0].copy(), distance.copy(), distance < DUPLICATE_RATIO * scale if scale > 0 else distance == 0


def outlier_scores(nb: Neighbours, aligned: np.ndarray | None = None,
                   sharpness: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How far each image stands from typical, in robust standard deviations, and the flag.

    The score is the largest of: the robust z-score of the log mean distance to
    the ``k`` nearest images in the space; with ``aligned`` (thumbnail
    differences to those neighbours, (N, k)), that of their log mean (colour and
    exposure); with ``sharpness`` (N,), the absolute one of its log (blur
    below, noise above).

    Returns
    -------
    score : ndarray (N,) float64
    likely : ndarray (N,) bool
        Score above ``OUTLIER_Z``.
    """
    tiny = np.finfo(np.float32).tiny
    score = robust_z(np.log(nb.distances.astype(np.float64).mean(1) + tiny))
    if aligned is not None:
        score = np.maximum(score, robust_z(np.log(aligned.astype(np.float64).mean(1) + tiny)))
    if sharpness is not None:
        score = np.maximum(score, np.abs(robust_z(np.log(np.asarray(sharpness, dtype=np.float64) + SHARPNESS_FLOOR))))
    score = np.clip(score, -OUTLIER_CAP, OUTLIER_CAP)
    return score, score > OUTLIER_Z


def quality_control(X, labels=None, *, checks: ImageChecks | None = None, k: int = 15,
                    n_classes: int | None = None, device="cpu", neighbours: Neighbours | None = None) -> QCResult:
    """All three detectors on the points ``X`` (one neighbour search).

    Parameters
    ----------
    X : array (N, D) or None
        The images as points (features, map coordinates or pixels); None when
        ``neighbours`` are given.
    labels : array (N,) int, optional
        Class indices (-1: unlabeled); without them the label-issue columns are NaN / -1.
    checks : ImageChecks, optional
        Thumbnails and sharpness of the same images (:func:`image_checks`):
        duplicates are then confirmed on thumbnails, and colour, exposure and
        blur count towards the outlier score. Without them both use ``X`` alone.
    k : int
        Neighbours per image (capped at N - 1).
    n_classes : int, optional
        Number of classes (default: largest label + 1).
    device : str
        Where the neighbour search runs.
    neighbours : Neighbours, optional
        A search already made on ``X`` (skips it).

    Returns
    -------
    QCResult
    """
    if X is None and neighbours is None:
        raise MedcneError("give the points X, or the neighbours already found among them")
    n = len(X) if X is not None else len(neighbours)
    check_enough_images(n)
    if checks is not None and len(checks) != n:
        raise MedcneError(f"checks are for {len(checks)} images but X has {n}; compute them on the same images")
    nb = neighbours if neighbours is not None else nearest_neighbours(X, min(int(k), n - 1), device=device)
    if labels is None:
        score, suggested, likely = np.full(n, np.nan), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool)
    else:
        score, suggested, likely = label_issues(nb, labels, n_classes)
    aligned = None if checks is None else aligned_distances(checks.thumbnails, nb.indices)
    if checks is None:
        dup, dist, dup_flag = near_duplicates(nb, None)
    else:  # candidates from the space and from the upright thumbnails: a turned copy is found by either
        own = nearest_neighbours(upright(checks.thumbnails), min(UPRIGHT_K, n - 1), device=device)
        both = Neighbours(np.hstack([nb.indices, own.indices]), np.hstack([nb.distances, own.distances]), nb.method)
        dup, dist, dup_flag = near_duplicates(both, np.hstack([aligned, aligned_distances(checks.thumbnails,
                                                                                            own.indices)]))
    out_score, out_flag = outlier_scores(nb, aligned, None if checks is None else checks.sharpness)
    return QCResult(score, suggested, likely, dup, dist, dup_flag, out_score, out_flag, nb.method)
