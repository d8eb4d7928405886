"""Nothing in a class folder is dropped silently: a broken link named like an image is an unreadable
file, and files of other extensions are counted in a note."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import random_images
from medcne.cli import main
from medcne.datasets import load_dataset
from medcne.errors import BadImageError


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "dl"
    for i, rel in enumerate(["a/1.png", "a/2.png", "b/3.png"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_images(3, seed=i)[0]).save(root / rel)
    (root / "b" / "broken.png").symlink_to(tmp_path / "nonexistent" / "x.png")
    for rel in ("a/x.webp", "a/y.gif", "b/z.gif"):
        (root / rel).write_bytes(b"GIF89a")
    return root


def test_a_broken_link_is_an_unreadable_image_file(folder, capsys):
    with pytest.raises(BadImageError, match=r"1 unreadable image file\(s\): .*broken\.png \(a broken link"):
        load_dataset(folder)
    assert main(["info", str(folder)]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_with_skip_bad_the_link_is_counted_and_other_extensions_noted(folder):
    data = load_dataset(folder, skip_bad=True)
    assert len(data) == 3 and np.array_equal(data.labels, [0, 0, 1])
    assert "skipped 1 unreadable image file(s)" in data.notes
    assert "skipped 3 file(s) that are not PNG, JPEG, TIFF or BMP: .gif, .webp" in data.notes


def test_a_folder_without_images_says_what_it_holds_instead(tmp_path):
    from medcne.datasets import load_dataset
    from medcne.errors import MedcneError

    for name in ("a.txt", "b.txt", "scan.raw"):
        (tmp_path / name).write_text("x")
    with pytest.raises(MedcneError, match=r"no images found \(skipped 3 file\(s\) that are not PNG, JPEG, TIFF "
                                          r"or BMP: \.raw, \.txt\); expected one sub-folder per class"):
        load_dataset(tmp_path)
