"""Messages state the figures the user has: the channels of the images, and what is wrong with labels."""

from __future__ import annotations

import numpy as np
import pytest

from medcne.datasets import load_dataset
from medcne.errors import DataError, MedcneError
from medcne.plot import new_figure, plot_map


def test_a_huge_size_of_rgb_files_counts_three_channels(class_folder):
    with pytest.raises(DataError, match=r"5 images of 100000x100000x3 "):
        load_dataset(class_folder, size=100000)
    with pytest.raises(DataError, match=r"5 images of 100000x100000x1 "):
        load_dataset(class_folder, size=100000, channels="gray")


def test_negative_labels_of_a_map_are_named_as_such():
    ax = new_figure(3, 3).add_subplot()
    with pytest.raises(MedcneError, match=r"found negative labels \(down to -5\)") as caught:
        plot_map(np.zeros((8, 2)), np.arange(-5, 3), ax=ax)
    assert "class name" not in str(caught.value)


def test_images_of_another_shape_are_told_the_option_that_differs():
    from medcne.datasets.imageset import shape_mismatch as _shape_mismatch
    from medcne.params import for_cli

    assert _shape_mismatch((28, 28, 3), (28, 28, 1)).endswith("read them with `channels` rgb")
    assert for_cli(_shape_mismatch((28, 28, 1), (32, 32, 3))).endswith("read them with --size 28 and --channels gray")
    assert "got 32x32x3" in _shape_mismatch((28, 28, 1), (32, 32, 3))


def test_negative_labels_are_named_as_such():
    from medcne.datasets import ImageSet
    from medcne.errors import LabelMismatchError

    with pytest.raises(LabelMismatchError, match="found negative labels \\(down to -5\\)"):
        ImageSet(np.zeros((3, 4, 4, 1), np.uint8), np.array([-5, 0, 2]))
