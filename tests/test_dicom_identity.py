"""The DICOM reader keeps patient identity out of paths named by UIDs, store part names, the
`--window file` error and the messages about files left out; non-finite rescale values are bad
files. Tiny synthetic files, and pydicom's shipped files renamed after their UIDs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataelem import RawDataElement  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.tag import Tag  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian  # noqa: E402

from medcne.cli import main  # noqa: E402
from medcne.datasets.dicom import read_dicom, scrub  # noqa: E402
from medcne.datasets.dicom_identity import code_uid_like  # noqa: E402
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
    write(tmp_path / "ct2" / "MRN12345" / "seriesC" / "slice1.dcm")  # the same patient's other series
    store = tmp_path / "ctstore"
    assert main(["convert", str(tmp_path / "ct1"), "--size", "8", "--out", str(store)]) == 0
    assert main(["convert", str(tmp_path / "ct2" / "MRN12345"), "--size", "8", "--out", str(store), "--append"]) == 0
    assert main(["convert", str(tmp_path / "ct2" / "MRN12345"), "--size", "8", "--out", str(store), "--append"]) == 0
    assert "nothing to add" in capsys.readouterr().out  # the same code again: a rerun resumes
    for f in store.rglob("*"):
        assert f.is_dir() or b"MRN12345" not in f.read_bytes(), f
    assert main(["convert", str(tmp_path / "ct2" / "MRN12345"), "--size", "8", "--out", str(store), "--append",
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


NAN_SOP, GARBAGE, CUT = "1.2.826.0.1.3680043.8.498.942", "1.2.826.0.1.3680043.8.498.999", "1.2.826.0.1.3680043.8.498.777"


def shipped(name: str) -> Path:
    """A test file shipped inside the pydicom wheel; never downloaded."""
    found = get_testdata_file(name, download=False)
    assert found is not None, f"{name} is not shipped with pydicom"
    return Path(found)


def by_uid(root: Path, name: str, ds=None) -> tuple[str, str, str]:
    """Copy shipped file ``name`` (or save ``ds``, read from it) to STUDY/SERIES/SOP.dcm under ``root``;
    the coded path the messages should show."""
    header = ds or pydicom.dcmread(shipped(name), force=True)
    study, series, sop = str(header.StudyInstanceUID), str(header.SeriesInstanceUID), str(header.SOPInstanceUID)
    path = root / study / series / f"{sop}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    if ds is None:
        shutil.copyfile(shipped(name), path)
    else:
        ds.save_as(path)
    return f"{study}/{series}/{sop}.dcm", "/".join(short_hash(p, "x-") for p in (study, series, sop + ".dcm")), sop


@pytest.fixture
def named_by_uids(tmp_path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """The probe's folder: files named after their SOPInstanceUID in folders named after their study
    and series UIDs. Two images (CT, RT dose), a CT with RescaleSlope nan and a truncated MR (bad), a
    structured report (no pixel data); under misc/, a file that is not DICOM and a CT cut off in its
    header (bad: it declares an image), named like UIDs. Returns the folder and {what: (path, coded path)} of the files left out."""
    root = tmp_path / "probe"
    by_uid(root, "CT_small.dcm")
    by_uid(root, "rtdose.dcm")
    nan = pydicom.dcmread(shipped("CT_small.dcm"))
    nan.SOPInstanceUID = nan.file_meta.MediaStorageSOPInstanceUID = NAN_SOP
    tag = Tag("RescaleSlope")
    nan[tag] = RawDataElement(tag, "DS", 4, b"nan ", 0, False, True)
    left_out = {"nan": by_uid(root, "CT_small.dcm", nan)[:2], "truncated": by_uid(root, "MR_truncated.dcm")[:2],
                "report": by_uid(root, "reportsi.dcm")[:2]}
    (root / "misc").mkdir()
    (root / "misc" / f"{GARBAGE}.dcm").write_bytes(b"\x00\x01not dicom" * 3)
    (root / "misc" / f"{CUT}.dcm").write_bytes(shipped("CT_small.dcm").read_bytes()[:400])  # no UIDs left
    for what, uid in (("garbage", GARBAGE), ("cut", CUT)):
        left_out[what] = (f"misc/{uid}.dcm", f"misc/{short_hash(uid + '.dcm', 'x-')}")
    return root, left_out


BAD = ("nan", "truncated", "garbage", "cut")  # the files of named_by_uids that cannot be used


def no_uid(text: str, root: Path) -> bool:
    """No name of a file or folder under ``root`` that holds a UID appears in ``text``."""
    return not any(p.name in text for p in root.rglob("*") if "." in p.stem and p.stem[0].isdigit())


def test_messages_about_files_left_out_code_their_own_uids(named_by_uids, capsys):
    root, left_out = named_by_uids
    assert main(["info", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and no_uid(err, root), err
    assert "4 DICOM file(s) cannot be used" in err and "--skip-bad" in err
    for what in BAD:
        assert left_out[what][1] in err, what
    assert f"{left_out['nan'][1]} (RescaleSlope 'nan' is not a finite number)" in err
    assert main(["info", str(root), "--skip-bad", "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "images:   16" in out and no_uid(out, root), out
    unusable, no_image = (line for line in out.splitlines() if line.strip().startswith("- skipped"))
    assert all(left_out[w][1] in unusable for w in BAD)
    assert "without an image (no pixel data)" in no_image and left_out["report"][1] in no_image
    with pytest.raises(BadImageError) as info:
        read_dicom(root)
    assert sorted(info.value.bad_files) == sorted(left_out[w][1] for w in BAD)


def test_keep_phi_keeps_the_names_of_files_left_out(named_by_uids, capsys):
    root, left_out = named_by_uids
    assert main(["info", str(root), "--keep-phi"]) == 2
    err = capsys.readouterr().err
    assert f"{NAN_SOP}.dcm (RescaleSlope 'nan'" in err and f"misc/{GARBAGE}.dcm (not a DICOM file)" in err
    notes = " ".join(read_dicom(root, skip_bad=True, keep_phi=True, size=16).notes)
    assert f"misc/{CUT}.dcm" in notes and left_out["report"][0][-40:] in notes  # long paths are cut in the middle
    with pytest.raises(BadImageError) as info:
        read_dicom(root, keep_phi=True)
    assert sorted(info.value.bad_files) == sorted(left_out[w][0] for w in BAD)


def test_only_names_like_uids_are_coded_for_a_file_without_its_uids():
    assert code_uid_like("v1.2/scan_2.dcm/1.2.3") == f"v1.2/scan_2.dcm/{short_hash('1.2.3', 'x-')}"
    assert code_uid_like("x-0123456789ab/IM_1.2.840.5.dcm") == f"x-0123456789ab/{short_hash('IM_1.2.840.5.dcm', 'x-')}"


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_fit_notes_the_files_left_out_by_their_codes(named_by_uids, tmp_path, capsys):
    root, left_out = named_by_uids
    run = tmp_path / "run"
    assert main(["fit", str(root), "--skip-bad", "--out", str(run), "--size", "16", "--epochs", "1,1,1",
                 "--warmup", "0,0,0", "--width", "4", "--batch-size", "16", "--device", "cpu"]) == 0
    said = "".join(capsys.readouterr())
    assert no_uid(said, root) and all(coded in said for _, coded in left_out.values())
    for f in run.iterdir():
        assert no_uid(f.read_bytes().decode("latin-1"), root), f.name


def test_a_damaged_header_value_gives_one_line_or_is_passed_over(tmp_path, capsys):
    """pydicom raises as it converts a value of the wrong length: a damaged PatientBirthDate is passed
    over, a damaged InstanceNumber makes the file bad; its name still coded, never a traceback."""
    for attr in ("PatientBirthDate", "InstanceNumber"):
        ds = pydicom.dcmread(shipped("CT_small.dcm"))
        tag = Tag(attr)
        ds[tag] = RawDataElement(tag, "US", 3, b"\x01\x02\x03", 0, False, True)
        coded = by_uid(tmp_path / attr, "CT_small.dcm", ds)[1]
        if attr == "PatientBirthDate":
            assert read_dicom(tmp_path / attr).ids.tolist() == [coded]
            continue
        assert main(["info", str(tmp_path / attr)]) == 2
        err = capsys.readouterr().err.strip()
        assert f"{coded} (a header value cannot be read (BytesLengthException))" in err, err
        assert len(err.splitlines()) == 1 and no_uid(err, tmp_path / attr)
