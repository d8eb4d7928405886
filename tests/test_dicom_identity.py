"""The DICOM reader keeps patient identity out of paths named by UIDs, store part names and the
`--window file` error; non-finite rescale values are bad files. Tiny synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.dataelem import RawDataElement  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.tag import Tag  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian  # noqa: E402

from medcne.cli import main  # noqa: E402
from medcne.datasets.dicom import read_dicom, scrub  # noqa: E402
from medcne.datasets.scanfiles import short_hash  # noqa: E402
from medcne.errors import BadImageError  # noqa: E402

STUDY, SERIES = "1.2.826.0.1.3680043.8.498.111", "1.2.826.0.1.3680043.8.498.222"
PHI = ("MRN12345", "DOE", "JANE")


def write(path: Path, sop: str = "1.2.826.0.1.3680043.8.498.333", series: str = SERIES,
          raw: dict[str, str] | None = None) -> Path:
    """An 8x8 CT slice of patient DOE^JANE (MRN12345); ``raw`` writes DS values as given (e.g. 'nan')."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop
    ds.PatientName, ds.PatientID = "DOE^JANE", "MRN12345"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = (np.arange(64, dtype=np.uint16) * 20).tobytes()
    for keyword, text in (raw or {}).items():
        tag = Tag(keyword)
        ds[tag] = RawDataElement(tag, "DS", len(text), text.encode(), 0, False, True)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def no_phi(text: str) -> bool:
    return not any(p.lower() in text.lower() for p in PHI)


def test_folders_and_files_named_by_uids_are_coded_unless_kept(tmp_path):
    root = tmp_path / "ct5"
    sop = "1.2.826.0.1.3680043.8.498.444"
    write(root / STUDY / SERIES / "IM0.dcm")
    write(root / STUDY / SERIES / f"{sop}.dcm", sop=sop)
    write(root / "plain" / "series2" / "IM0.dcm", sop="1.2.3.44", series="1.2.3.4")
    study, series = short_hash(STUDY, "x-"), short_hash(SERIES, "x-")
    assert read_dicom(root).ids.tolist() == [
        f"{study}/{series}/{short_hash(sop + '.dcm', 'x-')}", f"{study}/{series}/IM0.dcm",
        "plain/series2/IM0.dcm"]  # names that hold no UID stay as they are
    assert read_dicom(root, keep_phi=True).ids.tolist() == [
        f"{STUDY}/{SERIES}/{sop}.dcm", f"{STUDY}/{SERIES}/IM0.dcm", "plain/series2/IM0.dcm"]
    # UIDs are whole values: a longer dotted number, or one part of the UID, is not the UID
    uids = {"1.2.3"}
    assert scrub("1.2.34/IM_1.2.3.dcm/1.2.3", set(), uids) == "1.2.34/" + "/".join(
        short_hash(p, "x-") for p in ("IM_1.2.3.dcm", "1.2.3"))
    assert scrub("ct1/2/3/IM1.dcm/0.1.2.3.4", set(), uids) == "ct1/2/3/IM1.dcm/0.1.2.3.4"


def test_convert_codes_the_default_part_name_of_dicom_data(tmp_path, capsys):
    write(tmp_path / "ct1" / "MRN12345" / "seriesB" / "slice0.dcm")
    store = tmp_path / "ctstore"
    assert main(["convert", str(tmp_path / "ct1"), "--size", "8", "--out", str(store)]) == 0
    assert main(["convert", str(tmp_path / "ct1" / "MRN12345"), "--size", "8", "--out", str(store), "--append"]) == 0
    assert main(["convert", str(tmp_path / "ct1" / "MRN12345"), "--size", "8", "--out", str(store), "--append"]) == 0
    assert "nothing to add" in capsys.readouterr().out  # the same code again: a rerun resumes
    for f in store.rglob("*"):
        assert f.is_dir() or b"MRN12345" not in f.read_bytes(), f
    assert main(["convert", str(tmp_path / "ct1" / "MRN12345"), "--size", "8", "--out", str(store), "--append",
                 "--part", "mine"]) == 0
    kept = tmp_path / "kept"
    assert main(["convert", str(tmp_path / "ct1" / "MRN12345"), "--size", "8", "--out", str(kept), "--keep-phi"]) == 0
    names = [p["name"] for p in json.loads((store / "manifest.json").read_text())["parts"]]
    assert len(names) == 3 and names[2] == "mine" and all(n.startswith("x-") for n in names[:2])
    assert json.loads((kept / "manifest.json").read_text())["parts"][0]["name"] == "MRN12345"


def test_the_no_window_error_names_the_coded_path(tmp_path, capsys):
    write(tmp_path / "ct1" / "MRN12345" / "seriesA" / "IM0000")
    assert main(["info", str(tmp_path / "ct1"), "--window", "file"]) == 2
    err = capsys.readouterr().err.strip()
    assert "x-" in err and "seriesA/IM0000: the file states no window" in err and no_phi(err)
    assert main(["info", str(tmp_path / "ct1"), "--window", "file", "--keep-phi"]) == 2
    assert "MRN12345/seriesA/IM0000: the file states no window" in capsys.readouterr().err


@pytest.mark.parametrize("raw", [{"RescaleSlope": "nan"}, {"RescaleIntercept": "inf"}, {"RescaleSlope": "-inf"}])
def test_a_non_finite_rescale_is_a_bad_file(tmp_path, raw):
    root = tmp_path / "ct"
    write(root / "good.dcm")
    write(root / "bad.dcm", sop="1.2.3.5", raw=raw)
    (attr, value), = raw.items()
    with pytest.raises(BadImageError, match=rf"1 DICOM file\(s\) cannot be used: bad.dcm \({attr} '{value}' is not a"):
        read_dicom(root)
    data = read_dicom(root, skip_bad=True)
    assert data.ids.tolist() == ["good.dcm"] and "skipped 1 unusable DICOM file(s): bad.dcm" in data.notes


def test_a_broken_link_is_counted_in_a_note_without_its_name(tmp_path):
    write(tmp_path / "ct" / "IM0.dcm")
    (tmp_path / "ct" / "MRN12345.dcm").symlink_to(tmp_path / "gone.dcm")
    data = read_dicom(tmp_path / "ct")
    assert len(data) == 1
    assert "skipped 1 broken symbolic link(s) (their targets are missing)" in data.notes
    assert no_phi(" ".join(data.notes))
