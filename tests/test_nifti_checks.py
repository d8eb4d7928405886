"""The NIfTI reader's checks of what a file states against what it holds: header sizes, non-finite
values, label CSV slices, the Decathlon folders and a labels map shared across axes."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from medcne.cli import main  # noqa: E402
from medcne.datasets import load_dataset, memory  # noqa: E402
from medcne.datasets.nifti import read_nifti  # noqa: E402
from medcne.errors import DataError, EmptyDatasetError, MedcneError  # noqa: E402

SHAPE = (6, 5, 4)


def save(data: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.eye(4))
    if data.dtype == np.int16:
        img.header.set_slope_inter(1.0, -500.0)
    nib.save(img, str(path))
    return path


def ct(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1500, SHAPE).astype(np.int16)


def huge_dims(blob: bytes) -> bytes:
    """The header's dim[1] and dim[2] set to 30000 (bytes 42-45, little-endian int16)."""
    out = bytearray(blob)
    out[42:46] = (30000).to_bytes(2, "little") * 2
    return bytes(out)


def test_a_header_stating_more_data_than_the_file_holds_is_damaged_and_skippable(tmp_path, capsys):
    root = tmp_path / "niihdr"
    good = save(ct(), root / "a.nii")
    (root / "b.nii").write_bytes(huge_dims(good.read_bytes()))
    with pytest.raises(DataError, match=r"b.nii: damaged or truncated: the header states 7,200,000,352 bytes"):
        read_nifti(root)
    data = read_nifti(root, skip_bad=True)
    assert len(data) == SHAPE[2]
    assert any("skipped 1 unreadable volume(s): b.nii (damaged or truncated" in n for n in data.notes)
    assert main(["info", str(root)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["info", str(root), "--skip-bad"]) == 0


def test_a_compressed_volume_beyond_the_memory_available_is_skippable(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**9)
    root = tmp_path / "gz"
    save(ct(), root / "a.nii.gz")
    plain = save(ct(), tmp_path / "plain.nii")
    (root / "b.nii.gz").write_bytes(gzip.compress(huge_dims(plain.read_bytes())))
    with pytest.raises(DataError, match=r"b.nii.gz: the volume of 30000x30000x4 voxels needs .* of memory"):
        read_nifti(root)
    data = read_nifti(root, skip_bad=True)
    assert len(data) == SHAPE[2] and any("skipped 1 unreadable volume(s): b.nii.gz" in n for n in data.notes)


def test_truncated_volumes_are_named_in_one_line(tmp_path):
    blob = save(ct(), tmp_path / "plain.nii").read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "c.nii").write_bytes(blob[:400])
    with pytest.raises(DataError, match=r"c.nii: damaged or truncated: the header states 592 bytes, the file holds 400"):
        read_nifti(tmp_path / "cut")
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "c.nii.gz").write_bytes(gzip.compress(blob[:400]))  # whole gzip, short contents
    with pytest.raises(DataError, match="c.nii.gz: not a readable NIfTI volume") as caught:
        read_nifti(tmp_path / "gz")
    assert "\n" not in str(caught.value) and "\\n" not in str(caught.value)


def test_non_finite_values_are_refused_naming_the_file(tmp_path):
    root = tmp_path / "niinan"
    values = ct().astype(np.float32)
    values[1, 1, 1], values[2, 2, 2] = np.nan, np.inf
    save(values, root / "v.nii.gz")
    with pytest.raises(DataError, match=r"v.nii.gz: the volume holds 2 non-finite value\(s\) \(NaN or infinity\)"):
        read_nifti(root)
    with pytest.raises(EmptyDatasetError, match="every volume was unreadable, e.g. v.nii.gz .*non-finite"):
        read_nifti(root, skip_bad=True)
    save(ct(), root / "w.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw RuntimeWarning from casting NaN
        data = read_nifti(root, skip_bad=True)
    assert data.ids[0] == "w.nii.gz#0" and any("skipped 1 unreadable volume(s): v.nii.gz" in n for n in data.notes)


def test_a_negative_slice_in_a_label_csv_is_refused(tmp_path):
    root = tmp_path / "data"
    save(ct(), root / "case0.nii.gz")
    table = tmp_path / "labels.csv"
    table.write_text("volume,slice,label\ncase0.nii.gz,-1,x\n")
    with pytest.raises(DataError, match="labels.csv: line 2: slice -1 is negative; slices count from 0"):
        read_nifti(root, label_csv=table)


def _segmented(root: Path, image: str, seg: str) -> None:
    labels = np.zeros(SHAPE, np.uint8)
    labels[:, :, 2:] = 1
    labels[0, 0, 3] = 2  # label 2 never covers most of a slice
    save(ct(), root / image)
    save(labels, root / seg)


def test_the_images_folder_alone_notes_the_labels_beside_it(tmp_path, monkeypatch):
    task = tmp_path / "msd" / "Task01"
    _segmented(task, "imagesTr/case0_0000.nii.gz", "labelsTr/case0.nii.gz")
    assert read_nifti(task).class_counts() == {"1": 2, "background": 2}
    alone = read_nifti(task / "imagesTr")
    assert alone.labels is None
    note = "segmentations lie beside this folder in labelsTr/ but are not read; give the folder above (Task01)"
    assert any(note in n for n in alone.notes)
    monkeypatch.chdir(task / "imagesTr")
    assert any(note in n for n in read_nifti(".").notes)
    assert not any("beside" in n for n in read_nifti(task / "labelsTr").notes)


def test_a_labels_map_may_name_classes_absent_from_the_data(tmp_path):
    root = tmp_path / "seg"
    _segmented(root, "case0.nii.gz", "case0_seg.nii.gz")
    lm = tmp_path / "lm.csv"
    lm.write_text("1,liver\n2,tumour\n")
    data = load_dataset(root, labels_map=lm)
    assert data.class_counts() == {"liver": 2, "background": 2}
    assert any("lm.csv: 1 name(s) are not classes of this data, left unused: '2'" in n for n in data.notes)
    lm.write_text("3,liver\n4,tumour\n")  # none of its names is a class: a map for other data
    with pytest.raises(MedcneError, match=r"'3' is not a class of the data \(nor is any other name it maps\)"):
        load_dataset(root, labels_map=lm)


def test_an_rgb_volume_is_named_as_unsupported_in_one_line(tmp_path, capsys):
    rgb = np.zeros((8, 8, 3), np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]))
    rgb["R"] = 200
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(tmp_path / "colour.nii.gz"))
    save(ct(), tmp_path / "grey.nii.gz")
    with pytest.raises(DataError, match=r"colour.nii.gz: the volume holds colour voxels \(NIfTI datatype RGB\), "
                                        r"which medcne does not read: it reads grey values"):
        read_nifti(tmp_path)
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "DTypePromotionError" not in err and "readable copy" not in err
    assert "convert it to a greyscale volume or to a folder of PNG images, or pass --skip-bad" in err
    data = read_nifti(tmp_path, skip_bad=True)
    assert len(data) == SHAPE[2] and any("skipped 1 unreadable volume(s): colour.nii.gz (the volume holds colour "
                                         "voxels (NIfTI datatype RGB), which medcne does not read" in n
                                         for n in data.notes)


@pytest.mark.parametrize("case", ["int16 scaled, stored LPS", "float32 scaled", "4-D", "uint8 scaled, turned"])
def test_values_are_nibabels_to_the_bit_whatever_the_slab(tmp_path, case, monkeypatch):
    """The stored values are scaled a slab at a time by nibabel's own function: every float32 value is
    the one ``np.asarray(as_closest_canonical(img).dataobj, dtype=np.float32)`` gives."""
    from medcne import defaults
    from medcne.datasets.nifti_volume import load

    rng = np.random.default_rng(3)
    lps = np.diag([-0.8, -0.8, 5.0, 1.0])
    turned = np.array([[0, 0, 1.5, 0], [-0.7, 0, 0, 0], [0, 0.7, 0, 0], [0, 0, 0, 1.0]])
    stored, affine, scale = {
        "int16 scaled, stored LPS": (rng.integers(-2000, 3000, (20, 24, 6)).astype(np.int16), lps, (0.7, -1024.3)),
        "float32 scaled": (rng.normal(0, 100, (12, 10, 5)).astype(np.float32), lps, (1.7, -3.1)),
        "4-D": (rng.integers(0, 1000, (12, 10, 6, 3)).astype(np.int16), lps, (1.5, 2.0)),
        "uint8 scaled, turned": (rng.integers(0, 255, (12, 10, 5)).astype(np.uint8), turned, (0.3333, 7.1)),
    }[case]
    img = nib.Nifti1Image(stored, affine)
    img.header.set_slope_inter(*scale)
    path = tmp_path / "v.nii.gz"
    nib.save(img, str(path))
    want = np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj, dtype=np.float32)
    want = want[..., 0] if want.ndim == 4 else want
    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 0)  # a slice a slab
    volume = load(path, nib, "volume")
    got = np.empty(volume.shape, np.float32)
    for index in volume.slabs():
        got[index] = volume.values(index)
    assert got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_a_scale_factor_beyond_float32_is_refused_as_non_finite(tmp_path):
    img = nib.Nifti1Image(ct(), np.eye(4))
    img.header.set_slope_inter(1e36, 0.0)  # 1,499 x 1e36 does not fit in float32
    nib.save(img, str(tmp_path / "v.nii"))
    with pytest.raises(DataError, match=r"v.nii: the volume holds [0-9,]+ non-finite value\(s\)"):
        read_nifti(tmp_path)
