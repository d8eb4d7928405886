"""DICOM frames decoded a block at a time: a multi-frame file gives the pixels its whole array gave,
whatever the block; a file cut off before or inside its pixel data is damaged, not a report."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid  # noqa: E402

from medcne import defaults  # noqa: E402
from medcne.cli import main  # noqa: E402
from medcne.datasets.dicom import read_dicom  # noqa: E402
from medcne.datasets.scanfiles import short_hash  # noqa: E402
from medcne.datasets.window import Window, auto_window, parse_window  # noqa: E402
from medcne.errors import BadImageError  # noqa: E402

UID_NAMED = "1.2.826.0.1.3680043.8.498.77"  # a folder named like a UID


def multiframe(path: Path, frames: int, side: int = 64, photometric: str = "MONOCHROME2") -> Path:
    """A CT-like multi-frame file: int16 frames, each a ramp plus noise, with a slope and an intercept."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CT"
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.RescaleSlope, ds.RescaleIntercept = "0.7", "-1024.3"
    ds.NumberOfFrames, ds.InstanceNumber = frames, 1
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 3000, side * side).reshape(side, side)
    pixels = np.stack([ramp + 20 * k + rng.normal(0, 40, (side, side)) for k in range(frames)]).astype(np.int16)
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def reference(path: Path, window: str) -> np.ndarray:
    """The frames as the reader made them from the whole ``pixel_array`` (N, H, W, 1)."""
    ds = pydicom.dcmread(path)
    values = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
    w = parse_window(window)
    out = np.stack([(w if isinstance(w, Window) else auto_window(v)).apply(v) for v in values])
    return (255 - out if ds.PhotometricInterpretation == "MONOCHROME1" else out)[..., None]


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_a_multi_frame_file_read_a_block_at_a_time_gives_the_pixels_of_its_whole_array(tmp_path, photometric,
                                                                                       monkeypatch):
    path = multiframe(tmp_path / "mf.dcm", 40, photometric=photometric)  # 320 KiB of pixel data
    for window in ("soft-tissue", "auto"):
        want = reference(path, window)
        whole = read_dicom(path, window=window)
        monkeypatch.setattr(defaults, "READ_CHUNK_MB", 0)  # a frame a block, the pixel data left in the file
        blocks = read_dicom(path, window=window)
        sized = read_dicom(path, window=window, size=16)
        monkeypatch.undo()
        assert np.array_equal(whole.images, want) and np.array_equal(blocks.images, want), window
        assert blocks.ids.tolist() == [f"mf.dcm#{k}" for k in range(1, 41)] == whole.ids.tolist()
        assert blocks.provenance["slice"].tolist() == list(range(1, 41))
        assert np.array_equal(sized.images, read_dicom(path, window=window, size=16).images)


def test_shipped_multi_frame_and_deflated_files_read_alike_whatever_the_block(monkeypatch):
    """A deflated file is read whole: its pixel data's offset is not the file's."""
    names = ["rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm", "SC_rgb_rle_16bit_2frame.dcm",
             "examples_ybr_color.dcm", "image_dfl.dcm"]
    whole = {name: read_dicom(get_testdata_file(name, download=False)) for name in names}
    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 0)
    for name in names:
        blocks = read_dicom(get_testdata_file(name, download=False))
        assert np.array_equal(blocks.images, whole[name].images), name


def test_a_multi_frame_file_that_states_more_frames_than_it_holds_is_damaged(tmp_path, monkeypatch):
    path = multiframe(tmp_path / "mf.dcm", 8)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 9
    ds.save_as(path)
    for chunk in (64, 0):
        monkeypatch.setattr(defaults, "READ_CHUNK_MB", chunk)
        with pytest.raises(BadImageError, match=r"mf.dcm \(pixel data cannot be decoded \(ValueError\)\)"):
            read_dicom(tmp_path)


def cut(source: Path, dest: Path, keep) -> Path:
    """``source`` cut to its first ``keep`` bytes (a callable: of its bytes)."""
    blob = source.read_bytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(blob[: keep(blob)])
    return dest


def test_a_slice_cut_off_before_its_pixel_data_is_damaged_not_a_report(tmp_path, capsys):
    """A CT cut off in its header (an image SOP class, no Rows left) and one cut just before its pixel
    data (Rows and Columns): both named as damaged beside an RT plan, which has no image to lose. The
    first is cut inside its SeriesInstanceUID ("1.3.6.1.4.1.5962.1.3", still a UID) and lies in a folder
    named like a UID: a cut file's last UID may not be its own, so such names are coded."""
    ct = Path(get_testdata_file("CT_small.dcm", download=False))
    root = tmp_path / "series"
    root.mkdir()
    shutil.copyfile(ct, root / "good.dcm")
    cut(ct, root / UID_NAMED / "in_header.dcm", lambda b: b.index(b"\x20\x00\x0e\x00UI") + 8 + 20)
    cut(ct, root / "before_pixels.dcm", lambda b: b.index(b"\xe0\x7f\x10\x00"))  # the Pixel Data tag
    shutil.copyfile(get_testdata_file("rtplan.dcm", download=False), root / "plan.dcm")
    assert "Rows" in pydicom.dcmread(root / "before_pixels.dcm")
    header = pydicom.dcmread(root / UID_NAMED / "in_header.dcm", force=True)
    assert "Rows" not in header and header.SeriesInstanceUID == "1.3.6.1.4.1.5962.1.3"
    in_header = f"{short_hash(UID_NAMED, 'x-')}/in_header.dcm"
    with pytest.raises(BadImageError) as info:
        read_dicom(root)
    assert sorted(info.value.bad_files) == ["before_pixels.dcm", in_header]
    assert f"{in_header} (ends before its pixel data, though its header declares an image (CT Image Storage))" \
        in str(info.value)
    assert "before_pixels.dcm (ends before its pixel data, though its header declares an image (" in str(info.value)
    assert main(["info", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 DICOM file(s) cannot be used" in err and "--skip-bad" in err
    assert UID_NAMED not in err
    data = read_dicom(root, skip_bad=True)
    assert data.ids.tolist() == ["good.dcm"]
    assert any(n.startswith(f"skipped 2 unusable DICOM file(s): {in_header}; before_pixels.dcm") for n in data.notes)
    assert any("without an image (no pixel data): plan.dcm" in n for n in data.notes)
    assert f"{UID_NAMED}/in_header.dcm" in " ".join(read_dicom(root, skip_bad=True, keep_phi=True).notes)


def test_a_file_cut_off_inside_its_pixel_data_says_so(tmp_path, monkeypatch):
    big = multiframe(tmp_path / "whole" / "mf.dcm", 40)
    small = Path(get_testdata_file("CT_small.dcm", download=False))
    cut(big, tmp_path / "cut" / "mf.dcm", lambda b: len(b) - 1000)
    cut(small, tmp_path / "cut" / "ct.dcm", lambda b: len(b) - 1000)
    for chunk in (64, 0):  # pixel data read, or left in the file
        monkeypatch.setattr(defaults, "READ_CHUNK_MB", chunk)
        with pytest.raises(BadImageError) as info:
            read_dicom(tmp_path / "cut")
        assert re.search(r"ct.dcm \(cut off in its pixel data: the file holds 31,[0-9]{3} of its 32,768 bytes\)",
                         str(info.value))
        assert "mf.dcm (cut off in its pixel data: the file holds 326,680 of its 327,680 bytes)" in str(info.value)
