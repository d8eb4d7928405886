"""Data curation from neighbourhoods: label issues, near-duplicates, outliers, label propagation.

Arrays in, arrays out (like :mod:`medcne.metrics`); :mod:`medcne.runs.curate`
applies them to a run folder and writes ``qc.csv`` / propagated labels.
"""

from .images import ImageChecks, aligned_distances, image_checks
from .neighbours import Neighbours, nearest_neighbours
from .propagate import propagate_labels
from .qc import QCResult, label_issues, near_duplicates, outlier_scores, quality_control

__all__ = [
    "ImageChecks", "Neighbours", "QCResult", "aligned_distances", "image_checks", "label_issues",
    "near_duplicates", "nearest_neighbours", "outlier_scores", "propagate_labels", "quality_control",
]
