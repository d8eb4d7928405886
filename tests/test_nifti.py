"""The NIfTI reader on volumes written here with nibabel and on nibabel's shipped test data:
canonical orientation, the three axes, windows, segmentation labels, hostile files, `info` and `fit`."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from medcne.cli import main  # noqa: E402
from medcne.datasets import load_dataset  # noqa: E402
from medcne.datasets.nifti import dominant_labels, pair_segmentations, read_nifti  # noqa: E402
from medcne.errors import DataError, EmptyDatasetError, MedcneError, MixedSizeError  # noqa: E402
from medcne.runs import read_run  # noqa: E402

SHAPE = (12, 10, 8)  # x (left -> right), y (posterior -> anterior), z (inferior -> superior)


def volume(seed: int = 0) -> np.ndarray:
    """Values in Hounsfield-like units with one bright voxel at the right, anterior, inferior corner."""
    data = np.random.default_rng(seed).uniform(-1000, 1000, SHAPE).astype(np.float32)
    data[11, 9, 0] = 3000
    return data


def save(data: np.ndarray, path: Path, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def las(data: np.ndarray, path: Path) -> Path:
    """The same anatomy stored with the first axis running right -> left (LAS)."""
    affine = np.diag([-1.0, 1, 1, 1])
    affine[0, 3] = SHAPE[0] - 1  # voxel 0 lies where the RAS copy has voxel 11
    return save(data[::-1].copy(), path, affine)


def test_volumes_are_turned_to_ras_before_cutting(tmp_path):
    data = volume()
    ras = read_nifti(save(data, tmp_path / "ras.nii.gz"), window="4000,1000")
    flipped = read_nifti(las(data, tmp_path / "las.nii"), window="4000,1000")
    assert np.array_equal(ras.images, flipped.images) and ras.images.std() > 0
    # axial slice 0 seen from below: anterior at the top row, the patient's right on the right
    assert ras.image_shape == (10, 12, 1) and len(ras) == 8
    assert ras.images[0, 0, 11, 0] == 255 and (ras.images[0] == 255).sum() == 1


def test_the_three_axes(tmp_path):
    path = save(volume(), tmp_path / "v.nii.gz")
    shapes = {axis: (len(d), d.image_shape[:2]) for axis in ("axial", "coronal", "sagittal")
              for d in [read_nifti(path, axis=axis, window="4000,1000")]}
    assert shapes == {"axial": (8, (10, 12)), "coronal": (10, (8, 12)), "sagittal": (12, (8, 10))}
    coronal = read_nifti(path, axis="coronal", window="4000,1000")
    # the bright voxel: coronal slice y=9, inferior (bottom row), right (last column)
    assert coronal.images[9, 7, 11, 0] == 255
    sagittal = read_nifti(path, axis="sagittal", window="4000,1000")
    assert sagittal.images[11, 7, 9, 0] == 255  # slice x=11, bottom row, anterior on the right
    assert sagittal.ids[11] == "v.nii.gz#11" and sagittal.provenance["slice"][11] == 11
    with pytest.raises(MedcneError, match="`axis` must be one of"):
        read_nifti(path, axis="transverse")


def test_nibabels_shipped_volume_matches_a_manual_reorientation():
    from nibabel.testing import data_path

    path = Path(data_path) / "anatomical.nii"  # stored LAS
    img = nib.load(str(path))
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
    raw = np.asarray(img.dataobj, dtype=np.float32)
    low, high = float(raw.min()), float(raw.max())
    data = read_nifti(path, window=f"{high - low},{(high + low) / 2}")
    assert len(data) == raw.shape[2] and data.image_shape == (raw.shape[1], raw.shape[0], 1)
    for k in (0, raw.shape[2] // 2):
        ras = raw[::-1, :, k]  # LAS -> RAS: the first axis reversed
        want = np.clip(np.rint((ras.T[::-1] - low) * 255 / (high - low)), 0, 255).astype(np.uint8)
        assert np.array_equal(data.images[k, ..., 0], want)


def test_windows_apply_to_the_stored_values(tmp_path):
    data = np.zeros(SHAPE, np.float32)
    data[:, :, 0], data[:, :, 1], data[:, :, 2] = -1000, 40, 500
    path = save(data, tmp_path / "ct.nii.gz")
    brain = read_nifti(path, window="brain").images  # W 80, L 40
    assert brain[0].max() == 0 and (brain[1] == 128).all() and (brain[2] == 255).all()
    # scl_slope/scl_inter are applied first (values stored as int16 with a scale)
    img = nib.Nifti1Image(np.full(SHAPE, 20, np.int16), np.eye(4))
    img.header.set_slope_inter(2.0, 0.0)
    nib.save(img, str(tmp_path / "scaled.nii"))
    assert (read_nifti(tmp_path / "scaled.nii", window="brain").images == 128).all()
    with pytest.raises(MedcneError, match="NIfTI files state no window"):
        read_nifti(path, window="file")


def _labelled_case(root: Path) -> Path:
    seg = np.zeros(SHAPE, np.uint8)
    seg[:4, :4, 3:6] = 2
    seg[0, 0, 3:6] = 1  # fewer voxels: slice 3-5 stay label 2
    seg[:, :, 6:] = 1
    save(volume(), root / "case.nii.gz")
    save(seg, root / "case_seg.nii.gz")
    return root


def test_slices_take_the_dominant_label_of_a_segmentation_beside_them(tmp_path):
    root = _labelled_case(tmp_path / "data")
    data = read_nifti(root)
    assert len(data) == 8  # the segmentation is not read as a volume
    assert [data.class_names[i] for i in data.labels] == ["background"] * 3 + ["2"] * 3 + ["1"] * 2
    assert data.class_names == ["1", "2", "background"]
    dropped = load_dataset(root, drop_background=True)
    assert dropped.ids.tolist() == [f"case.nii.gz#{k}" for k in range(3, 8)]
    assert any("left out 3 slice(s)" in n for n in dropped.notes)
    tie = np.zeros((1, 2, 1))
    tie[0, 0, 0], tie[0, 1, 0] = 5, 3
    assert dominant_labels(tie, 2) == [3]


def test_the_decathlon_layout_pairs_images_and_labels(tmp_path):
    root = tmp_path / "Task"
    save(volume(), root / "imagesTr" / "liver_1_0000.nii.gz")
    seg = np.zeros(SHAPE, np.uint8)
    seg[..., 4:] = 1
    save(seg, root / "labelsTr" / "liver_1.nii.gz")
    vols, segs = pair_segmentations(sorted(root.rglob("*.nii.gz")))
    assert [v.name for v in vols] == ["liver_1_0000.nii.gz"] and len(segs) == 1
    data = read_nifti(root)
    assert data.class_counts() == {"1": 4, "background": 4}
    assert data.provenance["volume"][0] == "imagesTr/liver_1_0000.nii.gz"


def test_labels_from_a_csv_of_volumes_and_slices(tmp_path):
    root = tmp_path / "data"
    save(volume(0), root / "a.nii.gz")
    save(volume(1), root / "b.nii")
    table = tmp_path / "labels.csv"
    table.write_text("volume,slice,label\na.nii.gz,,healthy\nb.nii,2,lesion\nb.nii,3,lesion\nc.nii,,x\n")
    data = read_nifti(root, label_csv=table)
    names = [data.class_names[i] for i in data.labels]
    assert names == ["healthy"] * 8 + ["unlabelled"] * 2 + ["lesion"] * 2 + ["unlabelled"] * 4
    assert any("1 row(s) of labels.csv match no image" in n for n in data.notes)


def test_more_dimensions_give_the_first_volume_and_mixed_sizes_are_refused(tmp_path):
    four = np.stack([volume(0), volume(1)], axis=-1)
    data = read_nifti(save(four, tmp_path / "f.nii.gz"), window="4000,1000")
    assert len(data) == 8 and any("more than three dimensions" in n for n in data.notes)
    assert np.array_equal(data.images, read_nifti(save(volume(0), tmp_path / "g.nii.gz"), window="4000,1000").images)
    mixed = tmp_path / "mixed"
    save(volume(), mixed / "a.nii.gz")
    save(np.zeros((6, 6, 3), np.float32), mixed / "b.nii.gz")
    with pytest.raises(MixedSizeError, match=r"6x6 \(b.nii.gz\), 10x12 \(a.nii.gz\).*`size`"):
        read_nifti(mixed)
    assert read_nifti(mixed, size=(8, 8)).image_shape == (8, 8, 1)


def test_a_corrupt_header_or_truncated_file_is_one_line(tmp_path, capsys):
    root = tmp_path / "data"
    good = save(volume(), root / "good.nii")
    bad = root / "bad.nii"
    blob = bytearray(good.read_bytes())
    blob[70:72] = (999).to_bytes(2, "little")  # no such datatype code
    bad.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="bad.nii: not a readable NIfTI volume"):
        read_nifti(root)
    assert main(["info", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.nii" in err
    assert err.endswith("replace it with a readable copy, or pass --skip-bad to leave it out"), err  # and the fix
    run = tmp_path / "run"  # refused before anything is written
    assert main(["fit", str(root), "--out", str(run), "--epochs", "1,1,1", "--device", "cpu"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not run.exists()
    assert sorted(p.name for p in root.iterdir()) == ["bad.nii", "good.nii"]
    data = read_nifti(root, skip_bad=True)
    assert len(data) == 8 and any("skipped 1 unreadable volume(s): bad.nii" in n for n in data.notes)
    truncated = tmp_path / "t" / "cut.nii.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(gzip.compress(good.read_bytes())[:600])
    with pytest.raises(DataError, match="cut.nii.gz: not a readable NIfTI volume"):
        read_nifti(truncated.parent)
    blob[70:72], blob[344:348] = good.read_bytes()[70:72], b"zzz\0"  # no NIfTI magic
    bad.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="bad.nii: not a readable NIfTI volume"):
        read_nifti(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDatasetError, match="no NIfTI volumes"):
        read_nifti(tmp_path / "empty")


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_info_and_fit_on_a_nifti_folder(tmp_path, capsys):
    root = _labelled_case(tmp_path / "data")
    save(volume(3), root / "other.nii.gz")
    assert main(["info", str(root), "--axis", "coronal"]) == 0
    out = capsys.readouterr().out
    # coronal slices of the case all hold label 1; the other volume has no segmentation
    assert "images:   20" in out and "unlabelled" in out and "background" not in out
    run = tmp_path / "run"
    assert main(["fit", str(root), "--out", str(run), "--axis", "coronal", "--window", "4000,1000", "--size", "16",
                 "--epochs", "1,1,1", "--warmup", "0,0,0", "--width", "4", "--batch-size", "16",
                 "--device", "cpu"]) == 0
    lines = (run / "embedding.csv").read_text().splitlines()
    assert lines[0] == "x,y,label,id,volume,slice" and len(lines) == 21
    assert lines[1].split(",")[3:] == ["case.nii.gz#0", "case.nii.gz", "0"]
    # the run reads its images again from params.json alone (same ids, same order)
    assert np.array_equal(read_run(run).load_images().ids, read_run(run).ids)
    with np.load(run / "embedding.npz") as z:
        assert z["prov_volume"].tolist() == ["case.nii.gz"] * 10 + ["other.nii.gz"] * 10


@pytest.mark.parametrize("option, value, said", [("keep_phi", True, "--keep-phi"), ("label_key", "path", "--label-key")])
def test_a_dicom_option_on_nifti_names_the_one_given(tmp_path, capsys, option, value, said):
    root = tmp_path / "vols"
    save(volume(), root / "a.nii")
    with pytest.raises(MedcneError, match=rf"^`{option}` applies to DICOM files, not to the NIfTI volumes"):
        load_dataset(root, **{option: value})
    argv = ["info", str(root), said] + ([] if value is True else [value])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {said} applies to DICOM files" in err and "`" not in err, err
