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
from medcne.datasets.window import Window  # noqa: E402


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


def _peak(read) -> tuple[object, int]:
    tracemalloc.start()
    try:
        out = read()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_multi_frame_file_is_decoded_a_block_at_a_time(tmp_path, monkeypatch):
    """96 frames of 128 x 128 int16 (3 MiB of pixel data). Decoded whole, the file was held five times
    over (its bytes, their array, the rescaled float64 copy: 19 MiB); a block of frames at a time,
    the peak stays below the file's own size."""
    from test_dicom_frames import multiframe, reference

    path = multiframe(tmp_path / "mf.dcm", 96, side=128)
    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 1)
    small, peak = _peak(lambda: load_dataset(path, size=16, window="soft-tissue"))
    assert peak < 3 << 20, f"{peak / 2**20:.1f} MiB"
    full, peak = _peak(lambda: load_dataset(path, window="soft-tissue"))
    assert peak < (3 << 20) + 2 * full.images.nbytes, f"{peak / 2**20:.1f} MiB"  # + the frames and their stack
    assert np.array_equal(full.images, reference(path, "soft-tissue"))
    np.testing.assert_array_equal(small.images, np.stack([resize_one(img, (16, 16)) for img in full.images]))


def test_a_volume_holds_its_stored_values_and_one_float32_copy_scaled_or_not(tmp_path, monkeypatch):
    """128 x 128 x 64 int16 (1 Mi voxels). nibabel scaled a volume through float64 beside its float32
    copy (16 MiB scaled against 7 unscaled with a window given, 2 MiB of stored values), and the
    automatic window copied the values twice more (13 MiB unscaled). Now a volume holds its stored values and one float32 copy
    at most (the figure the size check counts) plus slabs of READ_CHUNK_MB, scaled or not; its values
    are nibabel's, to the bit."""
    from medcne.datasets.nifti_volume import BYTES_BEYOND_STORED

    stored = np.random.default_rng(0).integers(0, 3000, (128, 128, 64)).astype(np.int16)
    for name, scale in (("plain", None), ("scaled", (0.7, -1024.3))):
        img = nib.Nifti1Image(stored, np.diag([-0.7, 0.7, 1.5, 1]))  # stored left-right flipped
        if scale:
            img.header.set_slope_inter(*scale)
        nib.save(img, str(tmp_path / f"{name}.nii.gz"))
    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 1)
    peaks = {}
    for name in ("plain", "scaled"):
        for window in ("auto", "soft-tissue"):
            path = tmp_path / f"{name}.nii.gz"
            peaks[name, window] = _peak(lambda p=path, w=window: load_dataset(p, window=w, size=16))[1]
    shown = {k: f"{v / 2**20:.1f} MiB" for k, v in peaks.items()}
    assert max(peaks.values()) < stored.size * (2 + BYTES_BEYOND_STORED) + (4 << 20), shown
    # the scaled slab's float64 values: 1 MiB more
    assert all(peaks["scaled", w] < peaks["plain", w] + (2 << 20) for w in ("auto", "soft-tissue")), shown
    values = np.asarray(nib.as_closest_canonical(nib.load(str(tmp_path / "scaled.nii.gz"))).dataobj, dtype=np.float32)
    low, high = np.percentile(values, (0.5, 99.5))
    want = Window(float(high - low), float((high + low) / 2)).apply(values)
    got = load_dataset(tmp_path / "scaled.nii.gz", window="auto")
    np.testing.assert_array_equal(got.images[..., 0], np.ascontiguousarray(want.transpose(2, 1, 0)[:, ::-1, :]))
