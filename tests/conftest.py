"""Shared fixtures: tiny datasets written to a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The key of the codes standing in for patient identity: one for the tests and the commands they start,
# so that no test makes a key in the user's ~/.config (tests of the key file set their own folder).
os.environ.setdefault("MEDCNE_IDENTITY_KEY", "medcne-tests")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BLOODMNIST = SHARED_DATA / "bloodmnist28.npz"


def random_images(n: int, size: int = 8, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """Two classes of PNG/JPEG/TIFF/BMP files, 3 + 2 images of 8x8 RGB."""
    root = tmp_path / "cells"
    images = random_images(5)
    files = {"blast/a.png": 0, "blast/b.jpg": 1, "blast/sub/c.tif": 2, "mono/d.bmp": 3, "mono/e.PNG": 4}
    for rel, i in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(path)
    return root


@pytest.fixture
def bloodmnist_path() -> Path:
    if not BLOODMNIST.exists():
        pytest.skip(f"{BLOODMNIST} not present (CI has it beside the clone)")
    return BLOODMNIST


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP spin contention on shared 2-core machines."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=["kernel", "torch"])
def augment_engine(request, monkeypatch):
    """Run a test with each augmentation engine as what ``engine="auto"`` picks on CPU."""
    from medcne.augment import augmenter

    if request.param == "torch":
        monkeypatch.setattr(augmenter, "kernel_available", lambda: False)
    return request.param
