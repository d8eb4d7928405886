"""The DICOM reader on pydicom's shipped test files: Hounsfield units, windows, MONOCHROME1,
multi-frame, compressed syntaxes, labels, patient identity kept out, and `info`/`fit` on a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.data import get_testdata_file  # noqa: E402

from medcne.cli import main  # noqa: E402
from medcne.datasets import load_dataset  # noqa: E402
from medcne.datasets.dicom import read_dicom, scrub  # noqa: E402
from medcne.errors import BadImageError, EmptyDatasetError, MedcneError, MixedSizeError  # noqa: E402
from medcne.runs import read_run  # noqa: E402

TESTDATA = Path(pydicom.data.__file__).parent / "test_files"


def shipped(name: str) -> Path:
    """A test file shipped inside the pydicom wheel; never downloaded (download=False)."""
    found = get_testdata_file(name, download=False) if "/" not in name else TESTDATA / name
    assert found is not None and Path(found).is_file(), f"{name} is not shipped with pydicom"
    return Path(found)


def copy(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shipped(name), dest)
    return dest


def expected(raw: np.ndarray, slope: float, intercept: float, width: float, level: float) -> np.ndarray:
    """The documented window, written out: values below L - W/2 -> 0, above L + W/2 -> 255."""
    values = raw.astype(np.float64) * slope + intercept
    return np.clip(np.rint((values - (level - width / 2)) * 255 / width), 0, 255).astype(np.uint8)


@pytest.fixture
def scans(tmp_path) -> Path:
    """CT, MR (plain and RLE), a MONOCHROME1 CR without file extension, a 15-frame RT dose,
    a structured report (no pixels), a DICOMDIR and a README, in sub-folders."""
    root = tmp_path / "scans"
    copy("CT_small.dcm", root / "ct" / "CT_small.dcm")
    copy("MR_small.dcm", root / "mr" / "MR_small.dcm")
    copy("MR_small_RLE.dcm", root / "mr" / "MR_small_RLE.dcm")
    copy("dicomdirtests/77654033/CR1/6154", root / "cr" / "6154")
    copy("rtdose.dcm", root / "dose" / "rtdose.dcm")
    copy("reportsi.dcm", root / "reports" / "reportsi.dcm")
    copy("dicomdirtests/DICOMDIR", root / "DICOMDIR")
    (root / "README.txt").write_text("not an image")
    return root


def test_a_folder_is_read_recursively_one_image_per_frame(scans):
    data = read_dicom(scans, size=16)
    # 4 single-frame images and 15 frames of the dose; the report, DICOMDIR and README give none.
    assert len(data) == 19 and data.image_shape == (16, 16, 1)
    ids = list(data.ids)
    assert ids[:3] == ["cr/6154", "ct/CT_small.dcm", "dose/rtdose.dcm#1"] and ids[-1] == "mr/MR_small_RLE.dcm"
    assert [i for i in ids if i.startswith("dose/")] == [f"dose/rtdose.dcm#{k}" for k in range(1, 16)]
    assert data.provenance["slice"][2:17].tolist() == list(range(1, 16))
    assert len(set(data.provenance["series"][2:17])) == 1 and all(s.startswith("s-") for s in data.provenance["series"])
    notes = " | ".join(data.notes)
    assert "(DICOMDIR): DICOMDIR" in notes and "(no pixel data): reports/reportsi.dcm" in notes
    # auto-detected by load_dataset as DICOM: no ordinary image files in it
    assert np.array_equal(load_dataset(scans, size=16).images, data.images)


def test_ct_values_become_hounsfield_units_then_the_window(tmp_path):
    ct = shipped("CT_small.dcm")
    ds = pydicom.dcmread(ct)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    for window, (w, level) in {"lung": (1500, -600), "bone": (1800, 400), "400,50": (400, 50)}.items():
        got = read_dicom(ct, window=window).images[0, ..., 0]
        assert np.array_equal(got, expected(ds.pixel_array, 1, -1024, w, level)), window
    assert np.array_equal(read_dicom(ct, window="soft-tissue").images, read_dicom(ct, window="400,50").images)
    # Without the intercept (raw values 128..2191 taken for HU) the lung window would be almost all white.
    assert (read_dicom(ct, window="lung").images == 255).mean() < 0.5
    assert (expected(ds.pixel_array, 1, 0, 1500, -600) == 255).mean() > 0.99


def test_the_files_own_window_and_the_automatic_one(tmp_path):
    mr = shipped("MR_small.dcm")  # states WindowCenter 600, WindowWidth 1600
    assert np.array_equal(read_dicom(mr, window="file").images, read_dicom(mr, window="1600,600").images)
    assert np.array_equal(read_dicom(mr).images, read_dicom(mr, window="file").images)  # auto uses it
    with pytest.raises(MedcneError, match="CT_small.dcm: the file states no window"):
        read_dicom(shipped("CT_small.dcm"), window="file")
    auto = read_dicom(shipped("CT_small.dcm")).images  # no window stated: 0.5-99.5 percentiles
    assert auto.min() == 0 and auto.max() == 255
    assert 0.003 < (auto == 255).mean() < 0.02
    with pytest.raises(MedcneError, match="`window` must be"):
        read_dicom(mr, window="lungs")


def test_an_invalid_window_in_the_file_is_named_with_its_values(tmp_path, capsys):
    """A width of 0 is a window the file states wrongly, not "no window": the values say which."""
    ds = pydicom.dcmread(shipped("MR_small.dcm"))  # states WindowCenter 600, WindowWidth 1600
    ds.WindowWidth = 0
    ds.save_as(tmp_path / "zero.dcm")
    with pytest.raises(MedcneError, match=r"zero.dcm: the file states an invalid window \(WindowWidth 0(\.0)?, "
                       r"WindowCenter 600(\.0)?; the width must be a positive number\); give `window` as a preset"):
        read_dicom(tmp_path / "zero.dcm", window="file")
    assert main(["info", str(tmp_path), "--window", "file"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "an invalid window" in err and "give --window as a preset" in err
    assert read_dicom(tmp_path / "zero.dcm").images.max() == 255  # auto: the percentiles instead
    del ds.WindowCenter
    ds.WindowWidth = 400
    ds.save_as(tmp_path / "zero.dcm")
    with pytest.raises(MedcneError, match=r"invalid window \(WindowWidth 400(\.0)?, WindowCenter none;"):
        read_dicom(tmp_path / "zero.dcm", window="file")


def test_monochrome1_is_inverted(tmp_path):
    cr = shipped("dicomdirtests/77654033/CR1/6154")
    ds = pydicom.dcmread(cr)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    as_mono2 = tmp_path / "mono2.dcm"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(as_mono2)
    one = read_dicom(cr, window="2000,1000").images.astype(int)
    two = read_dicom(as_mono2, window="2000,1000").images.astype(int)
    assert np.array_equal(one, 255 - two) and one.std() > 0


def test_compressed_files_decode_to_the_same_pixels(tmp_path):
    plain = read_dicom(shipped("MR_small.dcm"), window="1600,600").images
    assert np.array_equal(read_dicom(shipped("MR_small_RLE.dcm"), window="1600,600").images, plain)  # RLE: pydicom
    if pydicom.pixels.get_decoder(pydicom.uid.JPEG2000Lossless).is_available:  # Pillow with OpenJPEG
        assert np.array_equal(read_dicom(shipped("MR_small_jp2klossless.dcm"), window="1600,600").images, plain)
    rgb = read_dicom(shipped("SC_rgb_jpeg_dcmtk.dcm"))  # JPEG baseline through Pillow, YBR -> RGB
    assert rgb.image_shape == (100, 100, 3)
    assert rgb.images[0, 5, 5].tolist() == pytest.approx([255, 0, 0], abs=8)  # the top band is red


def test_a_compressed_file_without_decoder_is_one_line_naming_the_install(scans, capsys):
    if pydicom.pixels.get_decoder(pydicom.uid.JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    copy("MR_small_jpeg_ls_lossless.dcm", scans / "mr" / "jls.dcm")
    with pytest.raises(BadImageError, match=r"mr/jls.dcm \(compressed as 'JPEG-LS Lossless.*medcne\[dicom-codecs\]"):
        read_dicom(scans, size=16)
    assert main(["info", str(scans), "--size", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'medcne[dicom-codecs]'" in err and "--skip-bad" in err
    data = read_dicom(scans, size=16, skip_bad=True)
    assert len(data) == 19 and any("skipped 1 unusable DICOM file(s): mr/jls.dcm" in n for n in data.notes)


def test_a_decoder_failing_without_a_message_is_named_by_its_error(tmp_path, monkeypatch):
    copy("MR_small_RLE.dcm", tmp_path / "rle.dcm")

    def fails(self):
        raise RuntimeError("")  # a decoder may raise with no message at all

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(fails))
    with pytest.raises(BadImageError, match=r"rle.dcm \(compressed as 'RLE Lossless', not decoded \(RuntimeError\)\)"):
        read_dicom(tmp_path)


def test_hostile_files_each_give_one_line(tmp_path, capsys):
    only_report = tmp_path / "report"
    copy("reportsi.dcm", only_report / "sr.dcm")
    with pytest.raises(EmptyDatasetError, match="none of the 1 DICOM file"):
        read_dicom(only_report)
    truncated = tmp_path / "trunc"
    copy("MR_truncated.dcm", truncated / "a.dcm")
    copy("MR_small.dcm", truncated / "b.dcm")
    (truncated / "garbage.dcm").write_bytes(b"\x00\x01not dicom at all" * 3)
    with pytest.raises(BadImageError, match="2 DICOM file") as info:
        read_dicom(truncated)
    assert sorted(info.value.bad_files) == ["a.dcm", "garbage.dcm"]
    # Python users read the parameter, the command line's users the option
    assert str(info.value).endswith("fix or remove them, or pass `skip_bad` to leave them out")
    for folder in (only_report, truncated):
        assert main(["info", str(folder), "--format", "dicom"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.endswith("fix or remove them, or pass --skip-bad to leave them out")
    assert len(read_dicom(truncated, skip_bad=True)) == 1
    run = tmp_path / "run"  # refused before anything is written
    assert main(["fit", str(truncated), "--out", str(run), "--epochs", "1,1,1", "--device", "cpu"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not run.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "trunc"]


def test_mixed_sizes_are_refused_naming_a_file_of_each(scans):
    with pytest.raises(MixedSizeError, match=r"10x10 \(dose/rtdose.dcm\), 16x16 \(cr/6154\).*128x128 \(ct/CT_small.dcm\).*`size`"):
        read_dicom(scans)


def test_labels_from_a_csv_keyed_by_an_attribute(scans, tmp_path):
    series = str(pydicom.dcmread(scans / "dose" / "rtdose.dcm").SeriesInstanceUID)
    table = tmp_path / "labels.csv"
    table.write_text(f"SeriesInstanceUID,label\n{series},dose\n1.2.3.nothing,other\n")
    data = read_dicom(scans, size=16, label_csv=table)
    names = [data.class_names[i] for i in data.labels]
    assert names == ["unlabelled"] * 2 + ["dose"] * 15 + ["unlabelled"] * 2
    assert any("4 image(s) have no label" in n for n in data.notes)
    assert any("1 row(s) of labels.csv match no image" in n for n in data.notes)
    by_path = tmp_path / "paths.csv"
    by_path.write_text("path,kind\nct/CT_small.dcm,ct\ncr/6154,cr\n")
    data = load_dataset(scans, size=16, label_csv=by_path, label_column="kind")
    assert data.class_counts() == {"cr": 1, "ct": 1, "unlabelled": 17}
    both = tmp_path / "both.csv"
    both.write_text("path,PatientID,label\nct/CT_small.dcm,x,a\n")
    with pytest.raises(MedcneError, match="several key columns"):
        read_dicom(scans, size=16, label_csv=both)
    assert read_dicom(scans, size=16, label_csv=both, label_key="path").class_counts()["a"] == 1
    with pytest.raises(MedcneError, match=r"^`label_key` must be one of the key columns"):
        read_dicom(scans, size=16, label_csv=both, label_key="Bogus")


def test_the_nifti_options_name_the_one_given_on_dicom_files(scans, capsys):
    with pytest.raises(MedcneError, match=r"`axis` applies to NIfTI volumes, not to the DICOM files"):
        load_dataset(scans, axis="coronal")
    assert main(["info", str(scans), "--axis", "coronal"]) == 2
    assert "error: --axis applies to NIfTI volumes" in capsys.readouterr().err


def _with_identity(tmp_path: Path) -> Path:
    """A CT file of a patient 'DOE^JANE' (ID MRN12345), stored in a folder named after the ID."""
    root = tmp_path / "phi"
    for i, name in enumerate(["CT_small.dcm", "MR_small.dcm"]):
        ds = pydicom.dcmread(shipped(name))
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "DOE^JANE", "MRN12345", "19700101"
        path = root / "MRN12345" / f"Doe_Jane_{i}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path)
    return root


def test_patient_identity_stays_out_unless_kept(tmp_path):
    root = _with_identity(tmp_path)
    data = read_dicom(root, size=16)
    text = " ".join([*data.ids, *data.notes, *map(str, data.provenance["series"])]).lower()
    assert "mrn12345" not in text and "doe" not in text and "jane" not in text
    assert all(i.count("/") == 1 and i.startswith("x-") for i in data.ids)
    assert np.array_equal(read_dicom(root, size=16).ids, data.ids)  # stable: a run can read its images again
    kept = read_dicom(root, size=16, keep_phi=True)
    assert kept.ids.tolist() == ["MRN12345/Doe_Jane_0.dcm", "MRN12345/Doe_Jane_1.dcm"]
    assert kept.provenance["series"][0] == str(pydicom.dcmread(shipped("CT_small.dcm")).SeriesInstanceUID)
    assert scrub("a/MRN12345_x/b.dcm", {"mrn12345"}).split("/")[1].startswith("x-")
    assert scrub("CT1_0001.dcm", {"ct1"}) != "CT1_0001.dcm" and scrub("ACT10.dcm", {"ct1"}) == "ACT10.dcm"


def test_a_path_label_table_made_from_the_coded_ids_labels_the_same_files(tmp_path):
    # Without keep_phi the ids are coded (x-.../Doe_Jane_0.dcm hides the ID): a table of labels written from
    # a run's ids, whose `path` column then holds coded paths, must label the files they stand for.
    root = _with_identity(tmp_path)
    ids = read_dicom(root, size=16).ids.tolist()
    table = tmp_path / "from_ids.csv"
    table.write_text(f"path,label\n{ids[0]},first\nMRN12345/Doe_Jane_1.dcm,second\n")  # coded, and as stored
    data = read_dicom(root, size=16, label_csv=table)
    assert [data.class_names[i] for i in data.labels] == ["first", "second"]
    assert not any("match no image" in n for n in data.notes)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_info_and_fit_on_a_dicom_folder_keep_identity_out_of_every_file(tmp_path, capsys):
    root = _with_identity(tmp_path)
    copy("rtdose.dcm", root / "dose" / "rtdose.dcm")
    labels = tmp_path / "by_patient.csv"
    labels.write_text("PatientID,label\nMRN12345,patient-a\n")
    assert main(["info", str(root), "--size", "16", "--label-csv", str(labels)]) == 0
    out = capsys.readouterr().out
    assert "images:   17" in out and "patient-a" in out and "MRN12345" not in out
    run = tmp_path / "run"
    assert main(["fit", str(root), "--out", str(run), "--size", "16", "--window", "soft-tissue",
                 "--label-csv", str(labels), "--epochs", "1,1,1", "--warmup", "0,0,0", "--width", "4",
                 "--batch-size", "16", "--device", "cpu"]) == 0
    lines = (run / "embedding.csv").read_text().splitlines()
    assert lines[0] == "x,y,label,id,series,slice" and len(lines) == 18
    last = lines[-1].split(",")
    assert last[3] == "dose/rtdose.dcm#15" and last[4].startswith("s-") and last[5] == "15"
    with np.load(run / "embedding.npz") as z:
        assert z["prov_slice"].tolist()[2:] == list(range(1, 16)) and len(z["prov_series"]) == 17
    # the run reads its images again from params.json alone (same ids, same order)
    assert np.array_equal(read_run(run).load_images().ids, read_run(run).ids)
    params = json.loads((run / "params.json").read_text())
    assert params["data"]["window"] == "soft-tissue" and params["data"]["label_csv"] == str(labels.resolve())
    for f in run.iterdir():
        blob = f.read_bytes()
        for phi in (b"MRN12345", b"Doe_Jane", b"DOE^JANE", b"19700101"):
            assert phi not in blob, (f.name, phi)


def test_a_label_csv_with_slices_is_refused_for_dicom(scans, tmp_path):
    """A file is one DICOM image: rows labelling slices (a NIfTI table) would be dropped unseen."""
    table = tmp_path / "slices.csv"
    table.write_text("path,slice,label\nct/CT_small.dcm,0,ct\n")
    with pytest.raises(MedcneError, match="1 row\\(s\\) fill the column 'slice'"):
        read_dicom(scans, size=16, label_csv=table)
