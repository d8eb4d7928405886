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
- **near-duplicates**: the nearest other image and its distance. An image is
  a likely duplicate when that distance is below ``DUPLICATE_RATIO`` times
  the median nearest-neighbour distance of the dataset: copies sit far closer
  than two different images usually do.
- **outliers / artefacts**: the mean distance to the ``k`` nearest neighbours,
  divided by its median over the dataset (1 = typical). An image far from every
  other (blank, burnt, another kind of image) scores high; a few copies of the
  same artefact do not hide each other while they are fewer than ``k``.

Every "likely" flag is a fixed rule on a score (constants below, chosen on the
bundled sample with its own planted problems, not on the benchmark); the scores
themselves are what to sort by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MedcneError
from .neighbours import Neighbours, nearest_neighbours

# Likely label error: at most this share of the (rank-weighted) neighbour vote
# supports the image's own label, and another class wins the vote.
LABEL_SHARE_MAX = 0.2
# Likely duplicate: nearest other image closer than this times the median nearest distance.
DUPLICATE_RATIO = 0.25
# Likely outlier: score above the upper quartile plus this many interquartile ranges.
OUTLIER_FENCE = 3.0


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
        The nearest other image.
    duplicate_distance : ndarray (N,) float
        Its distance (units of the space).
    likely_duplicate : ndarray (N,) bool
    outlier_score : ndarray (N,) float
        Mean distance to the ``k`` nearest images / its median over the dataset.
    likely_outlier : ndarray (N,) bool
    """

    label_issue_score: np.ndarray
    suggested_label: np.ndarray
    likely_label_error: np.ndarray
    duplicate_index: np.ndarray
    duplicate_distance: np.ndarray
    likely_duplicate: np.ndarray
    outlier_score: np.ndarray
    likely_outlier: np.ndarray

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
        }


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
    shares = vote_shares(nb, labels, max(n_classes, 1))
    voted = shares.sum(1) > 0
    suggested = np.where(voted, shares.argmax(1), -1)
    own = np.where(labels >= 0, shares[np.arange(len(nb)), np.maximum(labels, 0)], np.nan)
    score = np.where(voted & (labels >= 0), 1.0 - own, np.nan)
    likely = (score >= 1.0 - LABEL_SHARE_MAX) & (suggested != labels) & (labels >= 0)
    return score, suggested.astype(np.int64), np.nan_to_num(likely).astype(bool)


def near_duplicates(nb: Neighbours) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest other image, its distance, and whether it is a likely duplicate.

    Returns
    -------
    index : ndarray (N,) int64
    distance : ndarray (N,) float32
    likely : ndarray (N,) bool
        ``distance < DUPLICATE_RATIO * median(distance)``, or 0 when the median is 0.
    """
    distance = nb.distances[:, 0]
    scale = float(np.median(distance))
    return nb.indices[:, 0].copy(), distance.copy(), distance < DUPLICATE_RATIO * scale if scale > 0 else distance == 0


def outlier_scores(nb: Neighbours) -> tuple[np.ndarray, np.ndarray]:
    """Mean distance to the ``k`` nearest images over its median (1 = typical), and the flag.

    Returns
    -------
    score : ndarray (N,) float64
    likely : ndarray (N,) bool
        Score above the upper quartile + ``OUTLIER_FENCE`` interquartile ranges.
    """
    mean = nb.distances.astype(np.float64).mean(1)
    median = float(np.median(mean))
    score = mean / median if median > 0 else mean
    q1, q3 = np.percentile(score, [25, 75])
    return score, score > q3 + OUTLIER_FENCE * (q3 - q1)


def quality_control(X, labels=None, *, k: int = 15, n_classes: int | None = None, device="cpu",
                    neighbours: Neighbours | None = None) -> QCResult:
    """All three detectors on the points ``X`` (one neighbour search).

    Parameters
    ----------
    X : array (N, D)
        The images as points (features, map coordinates or pixels).
    labels : array (N,) int, optional
        Class indices (-1: unlabeled); without them the label-issue columns are NaN / -1.
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
    n = len(X)
    if n < 3:
        raise MedcneError(f"quality control needs at least 3 images; got {n}")
    nb = neighbours if neighbours is not None else nearest_neighbours(X, min(int(k), n - 1), device=device)
    if labels is None:
        score, suggested, likely = np.full(n, np.nan), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool)
    else:
        score, suggested, likely = label_issues(nb, labels, n_classes)
    dup, dist, dup_flag = near_duplicates(nb)
    out_score, out_flag = outlier_scores(nb)
    return QCResult(score, suggested, likely, dup, dist, dup_flag, out_score, out_flag)
