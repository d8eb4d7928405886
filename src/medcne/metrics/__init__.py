"""Quality of a map: kNN accuracy, silhouette, neighbourhood preservation.

Numpy arrays in, floats out; no torch needed (the silhouette uses a GPU through
torch only when asked to and available). The protocol is the paper's: a kNN
classifier with k = 15 trained on a stratified 90 % of the points and scored on
the other 10 %, and the silhouette score of all points with the class labels.
"""

from .knn import knn_accuracy, knn_accuracy_splits, neighbour_preservation
from .silhouette import silhouette, silhouette_samples

__all__ = [
    "knn_accuracy", "knn_accuracy_splits", "neighbour_preservation", "silhouette",
    "silhouette_samples",
]
