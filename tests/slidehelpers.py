"""Whole-slide images for tests: pyramidal tiled TIFFs written with tifffile, which OpenSlide reads as generic TIFF.

``mosaic`` places real BloodMNIST images (28 x 28, enlarged by repetition) on a
white background at known cells, so tissue detection and tile positions can be
checked exactly.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BLOOD = DATA / "bloodmnist28.npz"


def pyramid(level0: np.ndarray, levels: int) -> list[np.ndarray]:
    """Level 0 and its 2x block means (each dimension must divide by 2 ** (levels - 1))."""
    out = [level0]
    for _ in range(levels - 1):
        a = out[-1].astype(np.float32)
        h, w = a.shape[0] // 2, a.shape[1] // 2
        out.append((a[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3)) + 0.5).astype(np.uint8))
    return out


def write_slide(path, level0: np.ndarray, mpp: float | None = 0.25, levels: int = 3, tile: int = 128) -> Path:
    """A pyramidal tiled RGB TIFF; ``mpp`` goes into the resolution tags (None: no resolution)."""
    tifffile = pytest.importorskip("tifffile")
    path = Path(path)
    with tifffile.TiffWriter(path) as tw:
        for i, image in enumerate(pyramid(level0, levels)):
            extra = {}
            if mpp is not None:
                per_cm = 1e4 / (mpp * 2**i)
                extra = dict(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
            tw.write(image, tile=(tile, tile), photometric="rgb", compression="zlib",
                     subfiletype=0 if i == 0 else 1, **extra)
    return path


@functools.lru_cache(maxsize=1)
def _first_blood(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    with np.load(BLOOD) as data:
        return data["images"][:n], data["labels"][:n].reshape(-1)


def blood_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` BloodMNIST images (28 x 28 x 3) and their labels; the test is skipped without the data."""
    if not BLOOD.is_file():
        pytest.skip(f"{BLOOD} not found (real data for this test)")
    images, labels = _first_blood()
    pick = np.random.default_rng(seed).choice(len(images), n, replace=False)
    return images[pick], labels[pick]


def mosaic(cells: int = 8, enlarge: int = 4, n: int = 20, seed: int = 0):
    """A white ``cells`` x ``cells`` grid with BloodMNIST images in ``n`` random cells.

    Returns
    -------
    level0 : ndarray, (cells * 28 * enlarge) square, RGB uint8
    where : ndarray (n, 2)
        (row, col) of each placed image's cell.
    images, labels : the placed images (28 x 28 x 3) and their classes.
    """
    images, labels = blood_images(n, seed)
    side = 28 * enlarge
    level0 = np.full((cells * side, cells * side, 3), 255, np.uint8)
    flat = np.sort(np.random.default_rng(seed + 1).choice(cells * cells, n, replace=False))
    where = np.stack([flat // cells, flat % cells], axis=1)
    for (r, c), image in zip(where, images, strict=True):
        level0[r * side:(r + 1) * side, c * side:(c + 1) * side] = image.repeat(enlarge, 0).repeat(enlarge, 1)
    return level0, where, images, labels


def tissue_blob(size: int = 512, box=(128, 128, 256, 320)) -> np.ndarray:
    """A white slide with one pink rectangle (top, left, bottom, right) of 'tissue'."""
    level0 = np.full((size, size, 3), 255, np.uint8)
    t, left, b, r = box
    level0[t:b, left:r] = (200, 80, 150)
    return level0


def damage(path, level: int = 1):
    """Garble the second half of one level's tiles: headers intact, those tiles no longer decode."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[level]
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    data = bytearray(path.read_bytes())
    for offset, count in spans[len(spans) // 2:]:
        data[offset: offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    return path


def lowres_damaged(path) -> Path:
    """A 1024-px slide at 0.25 um/px whose level 1 (2x) is damaged and level 0 intact.

    Tiles of 28 px at 0.25 um/px are read from level 0, while tissue detection
    reads its low-resolution image (2 level-0 px per pixel) from level 1: only
    planning meets the damage.
    """
    return damage(write_slide(path, tissue_blob(size=1024, box=(256, 256, 640, 768)), mpp=0.25), level=1)


def tile(*args) -> int:
    """``medcne tile --quiet --tile-size 28 ARGS...``: its exit status."""
    from medcne.cli import main

    return main(["tile", "--quiet", "--tile-size", "28", *map(str, args)])


def one_line(capsys) -> str:
    """What the command said on stderr, which must be one line."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err
