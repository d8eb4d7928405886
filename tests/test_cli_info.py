"""`medcne info`: what it prints on the bundled sample and the real BloodMNIST copy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from conftest import random_images
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH, from_array
from medcne.datasets.summary import find_problems


def test_info_on_sample(capsys):
    assert main(["info", str(SAMPLE_PATH)]) == 0
    out = capsys.readouterr().out
    assert "images:   2,000" in out and "28x28 pixels, 3 channels" in out
    assert "classes:  8" in out and "platelet" in out


def test_info_finds_duplicates_blank_images_and_rare_classes():
    images = random_images(30)
    images[5] = images[2]
    images[7] = 0
    labels = np.array([0] * 25 + [1] * 5)
    problems = find_problems(from_array(images, labels, ["common", "rare"]))
    text = " | ".join(problems)
    assert "1 exact duplicate" in text and "1 blank" in text and "rare (5)" in text


def test_info_on_real_bloodmnist_as_a_user_runs_it(bloodmnist_path):
    out = subprocess.run(
        [sys.executable, "-m", "medcne", "info", str(bloodmnist_path)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "images:   17,092" in out and "classes:  8" in out
    for name, count in [("basophil", "1,218"), ("neutrophil", "3,329"), ("platelet", "2,348")]:
        line = next(line for line in out.splitlines() if name in line)
        assert count in line


def test_info_lists_ten_rare_classes_and_says_when_labels_cannot_score_a_map():
    """A user probe: 3,000 classes of one image each were one line naming all 3,000, and `info` did not
    say what `fit` then says: every image is a class of its own, so no kNN accuracy or silhouette."""
    images = random_images(30, 16, seed=1)
    problems = find_problems(from_array(images, np.arange(30)))
    rare = next(p for p in problems if "fewer than 15 images" in p)
    assert rare.startswith("30 classes with fewer than 15 images: 0 (1), 1 (1)") and rare.endswith("and 20 more")
    assert any(p.startswith("every labeled image is a class of its own (30 classes for 30 images") for p in problems)
    assert not any("of its own" in p for p in find_problems(from_array(images, np.arange(30) % 3)))
