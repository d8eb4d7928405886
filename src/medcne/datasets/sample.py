"""The bundled sample: 2,000 BloodMNIST images (CC BY 4.0), for the offline demo and tests."""

from __future__ import annotations

from pathlib import Path

from .arrays import read_npz
from .imageset import ImageSet

SAMPLE_PATH = Path(__file__).parent / "data" / "bloodmnist_sample.npz"


def load_sample() -> ImageSet:
    """A stratified subset of 2,000 BloodMNIST 28x28 images with 8 classes.

    Made from the joined MedMNIST v2 file by ``scripts/make_sample.py``; ids are
    the row indices in that file. Data: Acevedo et al. (2020), Data in Brief 30,
    105474; Yang et al. (2023), MedMNIST v2, Scientific Data 10, 41. CC BY 4.0.
    """
    return read_npz(SAMPLE_PATH)
