"""Scans read with a `size` are resized as they are read, never all held at full resolution."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

from pydicom.data import get_testdata_file  # noqa: E402

from medcne import defaults  # noqa: E402
from medcne.datasets import load_dataset  # noqa: E402
from medcne.datasets.convert import resize_one  # noqa: E402


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """40 CT files of 512 x 512 (10 MB as uint8) and 10 volumes of 128 x 128 x 40 (6.6 MB of slices)."""
    root = tmp_path_factory.mktemp("scans")
    (root / "ct").mkdir()
    (root / "mr").mkdir()
    rng = np.random.default_rng(0)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.Rows = ds.Columns = 512
    for k in range(40):
        ds.InstanceNumber = k + 1
        ds.PixelData = rng.integers(0, 2000, (512, 512)).astype(np.int16).tobytes()
        ds.save_as(root / "ct" / f"{k:03d}.dcm")
    for k in range(10):
        volume = rng.integers(-1000, 1000, (128, 128, 40)).astype(np.int16)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(root / "mr" / f"v{k}.nii"))
    return root


@pytest.mark.parametrize("folder", ["ct", "mr"])
def test_scans_read_with_a_size_hold_the_resized_slices_not_the_full_ones(scans, folder, monkeypatch):
    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 1)  # DICOM frames resized a megabyte at a time
    tracemalloc.start()
    try:
        small = load_dataset(scans / folder, size=16, window="soft-tissue")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Held at full resolution to the end: 14.2 MiB (CT) and 11.4 MiB (MR); resized as read: 5.5 and 6.5.
    assert peak < 9 << 20, f"{peak / 2**20:.1f} MiB"
    full = load_dataset(scans / folder, window="soft-tissue")
    assert len(small) == len(full) == (400 if folder == "mr" else 40)
    np.testing.assert_array_equal(small.images, np.stack([resize_one(img, (16, 16)) for img in full.images]))
