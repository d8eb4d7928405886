"""Windows, label CSVs of scans, scan-folder detection and provenance columns in embedding files:
the pieces the DICOM and NIfTI readers share (need neither pydicom nor nibabel)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medcne.cli import main
from medcne.datasets.load import detect_format
from medcne.datasets.scancommon import read_label_csv, stack_images
from medcne.datasets.scanfiles import scan_format, walk_files
from medcne.datasets.window import PRESETS, Window, auto_window, describe, parse_window
from medcne.embedfile import save_embedding_file
from medcne.errors import DataError, MedcneError, MissingColumnError, UnknownFormatError


def test_window_maps_its_range_onto_0_to_255():
    w = Window(400, 40)  # -160 .. 240
    values = np.array([-1000, -160, 40, 240, 3000, 39.6])
    assert w.apply(values).tolist() == [0, 0, 128, 255, 255, 127]
    assert w.apply(np.zeros((2, 3), np.int16)).shape == (2, 3)


@pytest.mark.parametrize("order", ["C", "F"])  # F: NIfTI's voxel order
def test_a_window_works_on_a_volume_a_slab_at_a_time(monkeypatch, order):
    import tracemalloc

    from medcne import defaults

    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 1)
    values = np.asarray(np.random.default_rng(0).normal(0, 500, (128, 128, 100)), dtype=np.float32, order=order)
    w = Window(400, 40)
    tracemalloc.start()
    try:
        out = w.apply(values)  # 6.25 MB of float32: a whole float32 temporary would be as much
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20, f"{peak / 2**20:.1f} MiB"  # the uint8 result (1.6 MB) and 1 MB slabs; whole: 7.8
    assert out.flags.f_contiguous == (order == "F")  # slabs along the memory order (as fast as whole)
    expected = np.clip(np.rint((values.astype(np.float64) - w.low) * 255 / w.width), 0, 255)
    assert out.dtype == np.uint8 and out.shape == values.shape
    assert np.abs(out.astype(int) - expected).max() <= 1  # float32 arithmetic: a rounding step at most
    assert w.apply(np.float32(40)).shape == ()


@pytest.mark.parametrize("spec, want", [
    (None, "auto"), ("auto", "auto"), ("FILE", "file"), ("lung", Window(1500, -600)),
    ("Soft-Tissue", Window(400, 50)), ("400,40", Window(400, 40)), (" 80 , 40 ", Window(80, 40)),
    ((350, 50), Window(350, 50)), ("1e3,-5e2", Window(1000, -500)),
])
def test_window_specs(spec, want):
    assert parse_window(spec) == want


@pytest.mark.parametrize("spec", ["lungs", "400", "0,40", "-5,40", "nan,1", "400,40,1", "a,b", (1, "x")])
def test_bad_window_specs_name_the_choices(spec):
    with pytest.raises(MedcneError, match="window"):
        parse_window(spec)


def test_auto_window_ignores_extremes_and_constant_images():
    values = np.concatenate([np.linspace(0, 100, 1000), [1e6, -1e6, np.nan]])
    w = auto_window(values)
    assert -1 < w.low < 2 and 98 < w.high < 101
    assert auto_window(np.full(10, 7.0)).apply(np.full(3, 7.0)).tolist() == [128] * 3
    assert describe(Window(*PRESETS["bone"])) == "bone (W 1800, L 400)" and describe("auto") == "auto"


def test_label_csv_keys_and_errors(tmp_path):
    keys = ("SeriesInstanceUID", "path")
    f = tmp_path / "l.csv"
    f.write_text("path,label\na.dcm,x\nb.dcm,y\n")
    assert read_label_csv(f, keys, None, None) == ("path", {"a.dcm": "x", "b.dcm": "y"}, {})
    f.write_text("volume,slice,label\nv.nii,,all\nv.nii,3,one\n")
    assert read_label_csv(f, ("volume",), None, None) == ("volume", {"v.nii": "all"}, {("v.nii", 3): "one"})
    f.write_text("file,label\na,x\n")
    with pytest.raises(MissingColumnError, match="no key column; give exactly one of SeriesInstanceUID, path"):
        read_label_csv(f, keys, None, None)
    f.write_text("path,label\na,x\na,y\n")
    with pytest.raises(DataError, match="line 3: a second, different label"):
        read_label_csv(f, keys, None, None)
    f.write_text("path,label\na,\n")
    with pytest.raises(DataError, match="line 2: empty 'label'"):
        read_label_csv(f, keys, None, None)
    f.write_text("path,kind\na,x\n")
    with pytest.raises(MissingColumnError, match="`label_column`"):
        read_label_csv(f, keys, None, None)
    with pytest.raises(DataError, match="no such file"):
        read_label_csv(tmp_path / "none.csv", keys, None, None)


def test_stack_images_refuses_mixed_sizes_and_promotes_gray():
    a, b = np.zeros((4, 4, 1), np.uint8), np.full((6, 6, 3), 9, np.uint8)
    with pytest.raises(MedcneError, match=r"4x4 \(a\), 6x6 \(b\)"):
        stack_images([a, b], ["a", "b"], size=None, channels="keep", source="s", notes=[])
    notes: list[str] = []
    out = stack_images([a, b], ["a", "b"], size=(5, 5), channels="keep", source="s", notes=notes)
    assert out.shape == (2, 5, 5, 3) and (out[1] == 9).all() and "RGB" in notes[0]


def test_scan_folders_are_detected_and_image_folders_are_not(tmp_path):
    dicom = tmp_path / "d" / "series1"
    dicom.mkdir(parents=True)
    (dicom / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 20)  # marker, no extension
    (tmp_path / "d" / "notes.txt").write_text("x")
    assert scan_format(tmp_path / "d") == "dicom" and detect_format(tmp_path / "d") == "dicom"
    nifti = tmp_path / "n" / "sub"
    nifti.mkdir(parents=True)
    (nifti / "brain.nii.gz").write_bytes(b"")
    assert detect_format(tmp_path / "n") == "nifti" and detect_format(nifti / "brain.nii.gz") == "nifti"
    assert detect_format(dicom / "IM0001") == "dicom"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "d" / "a.png")
    assert scan_format(tmp_path / "d") is None and detect_format(tmp_path / "d") == "folder"
    hidden = tmp_path / "d" / ".cache"
    hidden.mkdir()
    (hidden / "x.dcm").write_bytes(b"")
    found = [p.relative_to(tmp_path / "d").as_posix() for p in walk_files(tmp_path / "d")[0]]
    assert found == ["a.png", "notes.txt", "series1/IM0001"]  # not .cache/x.dcm


def test_scan_options_on_other_data_are_refused(tmp_path, capsys):
    from medcne.datasets import SAMPLE_PATH, load_dataset

    with pytest.raises(UnknownFormatError, match="`window` applies to DICOM and NIfTI data only"):
        load_dataset(SAMPLE_PATH, window="lung")
    assert main(["info", str(SAMPLE_PATH), "--axis", "coronal"]) == 2
    assert "axis applies to DICOM and NIfTI" in capsys.readouterr().err


def test_provenance_columns_go_into_both_embedding_files(tmp_path):
    Z = np.array([[0.5, 1.0], [2.0, 3.0]], np.float32)
    prov = {"series": np.array(["s-1", "s-2"]), "slice": np.array([4, 5]), "x": np.array([10, 20])}
    save_embedding_file(tmp_path / "e.csv", Z, ["a", "b"], np.array([1, 0]), ["n", "m"], prov)
    lines = (tmp_path / "e.csv").read_text().splitlines()
    # a column named like an existing one ("x" of slide tiles) is written as prov_x
    assert lines == ["x,y,label,id,series,slice,prov_x", "0.5,1,m,a,s-1,4,10", "2,3,n,b,s-2,5,20"]
    save_embedding_file(tmp_path / "e.npz", Z, ["a", "b"], provenance=prov)
    with np.load(tmp_path / "e.npz") as z:
        assert sorted(z.files) == ["embedding", "ids", "prov_series", "prov_slice", "prov_x"]
        assert z["prov_series"].tolist() == ["s-1", "s-2"] and z["prov_slice"].dtype.kind == "i"
    save_embedding_file(tmp_path / "plain.csv", Z, ["a", "b"])
    assert (tmp_path / "plain.csv").read_text().splitlines()[0] == "x,y,label,id"


@pytest.mark.parametrize("module, extra, reader", [("pydicom", "dicom", "read_dicom"), ("nibabel", "nifti", "read_nifti")])
def test_a_missing_reader_package_names_its_extra(tmp_path, monkeypatch, module, extra, reader):
    import importlib
    import sys

    from medcne.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    read = getattr(importlib.import_module(f"medcne.datasets.{extra}"), reader)
    with pytest.raises(MissingExtraError, match=rf"pip install 'medcne\[{extra}\]'"):
        read(tmp_path)
