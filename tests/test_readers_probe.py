"""Readers probed where they used to go wrong quietly: file names that are not UTF-8 (ids and class
names must be writable text), class names given twice (labels would be ambiguous), and `split` given
for data that have no splits (it was ignored and every image read)."""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
import pytest
from PIL import Image

from medcne import errors
from medcne.cli import main
from medcne.datasets import load_dataset
from medcne.datasets.imageset import ImageSet
from medcne.embedfile import save_embedding_file


def png(path, seed: int = 0) -> None:
    """A small valid PNG at ``path`` (str or bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    with open(path, "wb") as fh:
        Image.fromarray(pixels).save(fh, format="PNG")


def one_line_error(capsys, *argv: str) -> str:
    """``medcne info ARGV``: exit 2, nothing on stdout, one line on stderr without a traceback."""
    capsys.readouterr()
    rc = main(["info", *argv])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out[-500:], err[-500:])
    assert out == ""
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("medcne info: error: ")
    return lines[0]


def utf8_text(values) -> bool:
    try:
        "\n".join(map(str, values)).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- file names that are not UTF-8 -------------------------------------------------------------

needs_byte_names = pytest.mark.skipif(
    sys.platform in ("win32", "darwin"), reason="file names that are not UTF-8 need a POSIX file system that allows them"
)


def odd_folder(tmp_path) -> str:
    """odd/a/bad<0xe9>name.png, odd/a/ok.png and odd/b<0xff>/x.png; returns the folder as str."""
    root = os.path.join(bytes(tmp_path), b"odd")
    for cls in (b"a", b"b\xff"):
        os.makedirs(os.path.join(root, cls))
    png(os.path.join(root, b"a", b"bad\xe9name.png"), 0)
    png(os.path.join(root, b"a", b"ok.png"), 1)
    png(os.path.join(root, b"b\xff", b"x.png"), 2)
    return os.fsdecode(root)


@needs_byte_names
def test_ids_and_class_names_of_undecodable_names_are_text_and_the_pixels_are_the_files(tmp_path):
    root = odd_folder(tmp_path)
    data = load_dataset(root)
    assert list(data.ids) == ["a/bad\\xe9name.png", "a/ok.png", "b\\xff/x.png"]
    assert data.class_names == ["a", "b\\xff"]
    assert utf8_text(data.ids) and utf8_text(data.class_names)
    assert len(set(data.ids)) == len(data)
    # Each image is read from its real path.
    real = os.path.join(bytes(tmp_path), b"odd", b"a", b"bad\xe9name.png")
    np.testing.assert_array_equal(data.images[0], np.asarray(Image.open(real)))
    assert any("not UTF-8" in n and "\\xNN" in n for n in data.notes)
    # What fit and embed write at the end: embedding.csv, with the ids and the class names.
    out = save_embedding_file(tmp_path / "e.csv", np.zeros((len(data), 2)), data.ids, data.labels, data.class_names)
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == list(data.ids)
    assert [r["label"] for r in rows] == ["a", "a", "b\\xff"]


@needs_byte_names
def test_ordinary_names_keep_their_ids_and_give_no_note(tmp_path):
    for name in ("café é.png", "back\\slash.png", "x.png"):
        (tmp_path / "c").mkdir(exist_ok=True)
        png(tmp_path / "c" / name)
    data = load_dataset(tmp_path)
    assert sorted(data.ids) == ["c/back\\slash.png", "c/café é.png", "c/x.png"]
    assert not any("UTF-8" in n for n in data.notes)


@needs_byte_names
def test_an_escaped_id_that_equals_another_name_is_refused_naming_both(tmp_path, capsys):
    root = os.path.join(bytes(tmp_path), b"odd")
    os.makedirs(os.path.join(root, b"a"))
    png(os.path.join(root, b"a", b"bad\xe9name.png"))
    png(os.path.join(root, b"a", b"bad\\xe9name.png"))  # a literal backslash, x, e, 9
    with pytest.raises(errors.DataError, match=r"would both have the id .*rename one of them"):
        load_dataset(os.fsdecode(root))
    line = one_line_error(capsys, os.fsdecode(root))
    assert "bad\\udce9name.png" in line and "bad\\xe9name.png" in line


@needs_byte_names
def test_cli_info_of_a_folder_with_an_undecodable_name(tmp_path, capsys):
    root = odd_folder(tmp_path)
    capsys.readouterr()
    assert main(["info", root]) == 0
    out, err = capsys.readouterr()
    assert "classes:  2" in out and "b\\xff" in out


# -- class names given twice ---------------------------------------------------------------------

def cndup(tmp_path):
    path = tmp_path / "cndup.npz"
    np.savez(path, images=np.zeros((6, 28, 28, 3), np.uint8), labels=np.array([0, 0, 0, 1, 1, 1]),
             class_names=np.array(["a", "a"]))
    return path


def test_repeated_class_names_in_an_npz_are_refused_naming_file_and_name(tmp_path):
    path = cndup(tmp_path)
    with pytest.raises(errors.LabelMismatchError, match=r"cndup\.npz: class name 'a' is given to class 0 and class 1"):
        load_dataset(path)


def test_repeated_class_names_cli_one_line(tmp_path, capsys):
    line = one_line_error(capsys, str(cndup(tmp_path)))
    assert "cndup.npz" in line and "'a'" in line and "own name" in line


def test_every_reader_passes_the_check_from_array_too():
    from medcne.datasets import from_array

    images = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(errors.MedcneError, match="class name 'x' is given to class 0 and class 2"):
        from_array(images, [0, 1, 2, 2], ["x", "y", "x"])
    with pytest.raises(errors.MedcneError, match="class name '1'"):
        ImageSet(images, np.array([0, 1, 0, 1]), [1, "1"])  # the same once made text
    assert ImageSet(images, np.array([0, 1, 0, 1]), ["a", "b"]).class_counts() == {"a": 2, "b": 2}


# -- `split` for data without splits ---------------------------------------------------------------

def class_folder(root, n: int = 2):
    for k, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            png(root / cls / f"{i}.png", seed=10 * k + i)
    return root


def test_split_for_a_folder_is_refused_naming_split_and_the_formats_with_splits(tmp_path):
    root = class_folder(tmp_path / "imgs")
    with pytest.raises(errors.MedcneError, match=r"`split` applies only to data that record splits \(an npz"):
        load_dataset(root, split="train")
    assert len(load_dataset(root)) == 4  # without it, read as before


def test_split_for_a_csv_is_refused(tmp_path):
    class_folder(tmp_path)
    (tmp_path / "list.csv").write_text("path,label\na/0.png,a\nb/0.png,b\n", encoding="utf-8")
    with pytest.raises(errors.MedcneError, match="read as a CSV of image paths, which has no splits"):
        load_dataset(tmp_path / "list.csv", split="test")


def test_split_for_a_store_is_refused(tmp_path, capsys):
    root = class_folder(tmp_path / "imgs")
    assert main(["convert", str(root), "--out", str(tmp_path / "st")]) == 0
    with pytest.raises(errors.MedcneError, match="`split` applies only.*store"):
        load_dataset(tmp_path / "st", split="train")
    line = one_line_error(capsys, str(tmp_path / "st"), "--split", "train")
    assert "--split applies only" in line and "leave --split unset" in line and "`" not in line


def test_split_cli_folder_one_line(tmp_path, capsys):
    root = class_folder(tmp_path / "imgs")
    line = one_line_error(capsys, str(root), "--split", "train")
    assert "--split applies only" in line and "npz" in line and "PCam" in line and "a folder of images" in line


def test_split_still_works_where_data_have_splits_and_bad_values_are_named(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((6, 8, 8, 3), np.uint8), labels=np.array([0, 1, 0, 1, 0, 1]),
             class_names=np.array(["a", "b"]), split=np.array([0, 0, 1, 2, 2, 2], np.int8))
    assert len(load_dataset(path, split="test")) == 3
    with pytest.raises(errors.MedcneError, match="`split` must be one of 'train', 'val', 'test'"):
        load_dataset(path, split="validation")
    with pytest.raises(errors.MedcneError, match="`split` must be one of"):
        load_dataset(class_folder(tmp_path / "imgs"), split="validation")


def test_split_for_one_pcam_file_must_be_its_split(tmp_path):
    h5py = pytest.importorskip("h5py")
    x = tmp_path / "camelyonpatch_level_2_split_valid_x.h5"
    with h5py.File(x, "w") as f:
        f["x"] = np.zeros((3, 8, 8, 3), np.uint8)
    assert len(load_dataset(x, split="val")) == 3
    with pytest.raises(errors.DataError, match=r"`split` 'train' picks PCam's '\*train_x.h5' file.*the valid split"):
        load_dataset(x, split="train")
