"""A `size` too large for memory is refused for DICOM and NIfTI before any slice is resized, with
the figures counted from the files' headers (as an npz is refused before it is resized); library
messages name parameters, the command line names options."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

from pydicom.data import get_testdata_file  # noqa: E402

from medcne.cli import main  # noqa: E402
from medcne.datasets import load_dataset, memory, scancommon  # noqa: E402
from medcne.errors import DataError  # noqa: E402

MIB = 1 << 20


def _copy(name: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(get_testdata_file(name, download=False), dest)


@pytest.fixture
def dicom(tmp_path) -> Path:
    """Two one-frame files (CT, MR), a 15-frame RT dose and a structured report (no image): 17 frames."""
    root = tmp_path / "dicom"
    for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "reportsi.dcm"):
        _copy(name, root / name)
    return root


@pytest.fixture
def nifti(tmp_path) -> Path:
    """Three volumes of 16 x 16 x 8 (axial: 24 slices; sagittal: 48), the last stored left-right flipped."""
    root = tmp_path / "nifti"
    root.mkdir()
    for k in range(3):
        data = np.random.default_rng(k).integers(-500, 500, (16, 16, 8)).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.diag([-1.0 if k == 2 else 1.0, 1, 1, 1])), str(root / f"v{k}.nii"))
    return root


@pytest.fixture
def never_resized(monkeypatch):
    """Fail the test if a slice is resized: the refusal must come before the first one."""
    def refuse(*args, **kwargs):
        raise AssertionError("a slice was resized before the memory it needs was checked")

    monkeypatch.setattr(scancommon, "resize_one", refuse)


@pytest.mark.parametrize("fmt, count", [("dicom", "17 image(s)"), ("nifti", "24 slice(s)")])
def test_a_size_too_large_is_refused_before_any_slice_is_resized(fmt, count, dicom, nifti, never_resized,
                                                                 monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * MIB)
    folder = dicom if fmt == "dicom" else nifti
    with pytest.raises(DataError) as info:
        load_dataset(folder, size=2000, window="soft-tissue")
    message = str(info.value)
    assert message.startswith(f"{folder}: {count} of 2000x2000x1 (resized, then stacked into one array) needs")
    assert "about 64.0 MiB is available" in message and "choose a smaller `size`" in message and "--" not in message
    assert main(["info", str(folder), "--size", "2000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "choose a smaller --size" in err and "`" not in err


def test_the_count_follows_the_axis_and_the_channels(nifti, dicom, never_resized, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * MIB)
    with pytest.raises(DataError, match=r": 48 slice\(s\) of 2000x2000x3 "):
        load_dataset(nifti, size=2000, axis="sagittal", channels="rgb")
    with pytest.raises(DataError, match=r": 17 image\(s\) of 2000x2000x3 "):
        load_dataset(dicom, size=2000, channels="rgb")


def test_what_fits_is_read_as_before(nifti, dicom, monkeypatch):
    # 24 slices of 64 x 64, twice: 192 KiB, within 80% of 1 MiB (a volume and its float32 copy: 12 KiB).
    monkeypatch.setattr(memory, "available_bytes", lambda: MIB)
    assert load_dataset(nifti, size=64).images.shape == (24, 64, 64, 1)
    assert load_dataset(dicom, size=64).images.shape == (17, 64, 64, 1)


def test_with_drop_background_only_the_slices_kept_count(tmp_path, never_resized, monkeypatch):
    """The slices kept are known only once the segmentation is read: at least one is checked up front,
    so that all 8 slices of a size that fits only the kept one are not refused."""
    data = np.random.default_rng(0).integers(-500, 500, (16, 16, 8)).astype(np.int16)
    seg = np.zeros((16, 16, 8), np.uint8)
    seg[4:8, 4:8, 3] = 1  # one labelled axial slice
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "case.nii"))
    nib.save(nib.Nifti1Image(seg, np.eye(4)), str(tmp_path / "case_seg.nii"))
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * MIB)
    with pytest.raises(DataError, match=r": at least 1 slice\(s\) of 6000x6000x1 "):
        load_dataset(tmp_path, size=6000, drop_background=True)
    monkeypatch.undo()
    # 8 slices of 300 x 300, twice: 1.4 MiB, more than 80% of 1 MiB; the one kept: 176 KiB.
    monkeypatch.setattr(memory, "available_bytes", lambda: MIB)
    kept = load_dataset(tmp_path, size=300, drop_background=True)
    assert kept.images.shape == (1, 300, 300, 1) and list(kept.provenance["slice"]) == [3]


def test_a_header_that_lies_about_its_frames_does_not_refuse_the_folder(dicom, monkeypatch):
    """A file cannot hold more frames than it has bytes for: its stated count is capped by its size,
    so that it is named as unusable (or skipped) instead of making the whole folder 'too large'."""
    ds = pydicom.dcmread(dicom / "MR_small.dcm")
    ds.NumberOfFrames = 10**9
    ds.save_as(dicom / "lying.dcm")
    monkeypatch.setattr(memory, "available_bytes", lambda: MIB)
    data = load_dataset(dicom, size=16, skip_bad=True)
    assert len(data) == 17 and any("skipped 1 unusable DICOM file(s): lying.dcm" in n for n in data.notes)


def test_the_stacking_check_names_the_parameter(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    images = [np.zeros((40, 40, 1), np.uint8)] * 2
    with pytest.raises(DataError, match=r"2 images of 40x40x1 needs .*; choose a smaller `size`, or read a folder"):
        scancommon.stack_images(images, ["a", "b"], size=None, channels="keep", source="scans", notes=[])
