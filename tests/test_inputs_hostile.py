"""Hostile inputs (issue 12): every bad dataset is one MedcneError from the API and, through
`medcne info`, exit 2 with one line on stderr naming the file, nothing written.

Each row of CASES builds one bad file the way a careless tool or an attacker would,
names the error class the API must raise and words the line must hold.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from conftest import random_images
from inputhelpers import check_one_line_error, info_answer, npz_with_header, png_bytes, snapshot
from medcne import errors
from medcne.datasets import load_dataset
from medcne.params import for_cli

h5py = pytest.importorskip("h5py")


def _npz(**arrays):
    def build(tmp_path):
        np.savez(tmp_path / "d.npz", **arrays)
        return tmp_path / "d.npz"
    return build


def _medmnist(n_images, n_labels, sizes=(8, 8)):
    def build(tmp_path):
        arrays = {}
        for split, ni, nl, s in zip(("train", "val"), n_images, n_labels, sizes, strict=True):
            arrays[f"{split}_images"] = random_images(ni, s)
            arrays[f"{split}_labels"] = np.zeros((nl, 1), np.uint8)
        np.savez(tmp_path / "bloodmnist.npz", **arrays)
        return tmp_path / "bloodmnist.npz"
    return build


def _corrupt_member(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, images=random_images(50, 16), labels=np.arange(50) % 2)
    raw = bytearray(path.read_bytes())
    raw[300:340] = bytes(40)  # inside the deflated images: a CRC or zlib error when read
    path.write_bytes(bytes(raw))
    return path


def _huge_header(tmp_path):
    npz_with_header(tmp_path / "h.npz", "images", (10**9, 96, 96, 3), bytes(64))
    return tmp_path / "h.npz"


def _bare_npy(tmp_path):
    np.save(tmp_path / "a.npy", random_images(2))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    return tmp_path / "a.npz"


def _h5(x=None, y=None, group=False, y_key="y"):
    def build(tmp_path):
        with h5py.File(tmp_path / "p_x.h5", "w") as f:
            if group:
                f.create_group("x")
            else:
                f["x"] = x
        if y is not None:
            with h5py.File(tmp_path / "p_y.h5", "w") as f:
                f[y_key] = y
        return tmp_path / "p_x.h5"
    return build


def _h5_declares_more(tmp_path):
    # Four images written, then the shape stretched to 10^9 without data: HDF5 would read zeros for hours.
    with h5py.File(tmp_path / "p_x.h5", "w") as f:
        ds = f.create_dataset("x", data=random_images(4), maxshape=(None, 8, 8, 3), chunks=(1, 8, 8, 3))
        ds.resize(10**9, axis=0)
    return tmp_path / "p_x.h5"


def _floats(bad=None, at=-1, n=6):
    x = np.full((n, 8, 8, 3), 0.5, np.float32)
    if bad is not None:
        x[at, 3, 4, 1] = bad
    return x


def _csv(text: bytes | str, name="l.csv", images=("a.png", "b.png")):
    def build(tmp_path):
        from PIL import Image

        for i, rel in enumerate(images):
            Image.fromarray(random_images(1, seed=i)[0]).save(tmp_path / rel)
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        return tmp_path / name
    return build


def _bomb_folder(tmp_path):
    (tmp_path / "d" / "c").mkdir(parents=True)
    (tmp_path / "d" / "c" / "ok.png").write_bytes(png_bytes(8, 8, np.zeros((8, 8), np.uint8)))
    # The header declares 30000 x 30000 pixels: PIL refuses it before decoding.
    (tmp_path / "d" / "c" / "bomb.png").write_bytes(png_bytes(30000, 30000))
    return tmp_path / "d"


CASES = {
    # npz: labels, per-image arrays, headers, damaged members
    "fractional labels": (_npz(images=random_images(4), labels=np.array([0.5, 1.7, 0, 1])),
                          errors.LabelMismatchError, "whole numbers"),
    "NaN label": (_npz(images=random_images(2), labels=np.array([0, np.nan])), errors.LabelMismatchError, "whole"),
    "string labels": (_npz(images=random_images(4), labels=np.array(["a", "b", "a", "b"])),
                      errors.LabelMismatchError, "class_names"),
    "object array": (lambda t: (np.savez(t / "o.npz", images=np.array([None, 1], dtype=object)), t / "o.npz")[1],
                     errors.DataError, "Python objects"),
    "split shorter than images": (_npz(images=random_images(4), split=np.array([0, 0])),
                                  errors.LabelMismatchError, "2 split codes for 4 images"),
    "split longer than images": (_npz(images=random_images(4), split=np.zeros(6, np.int8)),
                                 errors.LabelMismatchError, "6 split codes for 4 images"),
    "split codes not 0-2": (_npz(images=random_images(4), split=np.array([0, 1, 7, 2])), errors.DataError, "0 (train)"),
    "ids shorter than images": (_npz(images=random_images(4), ids=np.array(["a"])),
                                errors.LabelMismatchError, "1 ids for 4 images"),
    "MedMNIST split sizes differ": (_medmnist((4, 3), (3, 4)), errors.LabelMismatchError, "train_labels"),
    "MedMNIST split shapes differ": (_medmnist((2, 2), (2, 2), sizes=(8, 9)), errors.DataError, "different shapes"),
    "images of rank 1": (_npz(images=np.zeros(5, np.uint8)), errors.DataError, "N x H x W"),
    "images of 0x0 pixels": (_npz(images=np.zeros((3, 0, 0, 3), np.uint8)), errors.DataError, "H, W, C >= 1"),
    "corrupt compressed member": (_corrupt_member, errors.DataError, "corrupt"),
    "npy header declares a huge shape": (_huge_header, errors.DataError, "declares shape (1000000000, 96, 96, 3)"),
    "a bare .npy named .npz": (_bare_npy, errors.DataError, "np.savez"),
    # PCam HDF5
    "PCam NaN pixel": (_h5(_floats(np.nan)), errors.PixelRangeError, "image 5"),
    "PCam inf pixel": (_h5(_floats(np.inf, at=2)), errors.PixelRangeError, "image 2"),
    "PCam float pixel above 1": (_h5(_floats(1.5, at=0)), errors.PixelRangeError, "[0, 1]"),
    "PCam int16 pixel above 255": (_h5(np.full((3, 8, 8, 3), 300, np.int16)), errors.PixelRangeError, "0..255"),
    "PCam x of rank 2": (_h5(np.zeros((4, 8), np.uint8)), errors.DataError, "shape (4, 8)"),
    "PCam x of rank 5": (_h5(np.zeros((2, 4, 4, 3, 1), np.uint8)), errors.DataError, "N x H x W x C"),
    "PCam x declares more images than stored": (_h5_declares_more, errors.DataError, "the file stores 4"),
    "PCam x is a group": (_h5(group=True), errors.DataError, "group, not an array"),
    "PCam x of text": (_h5(np.array([b"ab", b"cd"])), errors.DataError, "shape"),
    "PCam y.h5 without y": (_h5(random_images(4), np.zeros(4), y_key="z"), errors.UnknownFormatError, "p_y.h5: no dataset 'y'"),
    "PCam fractional labels": (_h5(random_images(4), np.array([0, 0.5, 1, 1])), errors.LabelMismatchError, "whole"),
    "PCam y too short": (_h5(random_images(4), np.zeros(3, np.uint8)), errors.LabelMismatchError, "3 labels for 4"),
    "not HDF5 at all": (lambda t: (t / "n_x.h5").write_text("hello") and t / "n_x.h5", errors.DataError, "HDF5"),
    # image files
    "decompression bomb": (_bomb_folder, errors.BadImageError, "decompression bomb"),
    # CSV
    "CSV not UTF-8": (_csv(b"path,label\na.png,x\nb.png,caf\xe9\n"), errors.DataError, "line 3 is not UTF-8"),
    "CSV ragged row": (_csv("path,label\na.png,x\nb.png,y,z\n"), errors.DataError, "line 3 has 3 values"),
    "CSV short row": (_csv("path,label\na.png,x\nb.png\n"), errors.DataError, "line 3 has 1 values"),
    "CSV bad quoting": (_csv('path,label\n"a.png"x,y\nb.png,z\n'), errors.DataError, "line 2"),
    "CSV unclosed quote": (_csv('path,label\na.png,"x\nb.png,y\n'), errors.DataError, "quoting"),
    "CSV empty label": (_csv("path,label\na.png,x\nb.png,\n"), errors.DataError, "empty 'label' on line(s) 3"),
    "CSV empty path": (_csv("path,label\na.png,x\n ,y\n"), errors.DataError, "empty image path on line(s) 3"),
    "CSV repeated column": (_csv("path,label,label\na.png,x,y\n"), errors.DataError, "more than once"),
    "CSV path with ..": (_csv("path\na.png\n../outside.png\n"), errors.DataError, "outside the CSV's folder"),
    "CSV absolute path": (_csv("path\na.png\n/etc/passwd\n"), errors.DataError, "--allow-outside"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, capfd):
    build, error, words = CASES[name]
    path = build(tmp_path)
    with pytest.raises(error) as info:
        load_dataset(path)
    message = str(info.value)
    named = [p.name for p in tmp_path.rglob("*") if p.name in message]  # the file at fault (p_y.h5 for p_x.h5)
    # The library names Python parameters (`allow_outside`), the command line its options (--allow-outside).
    assert named and words in for_cli(message) and "\n" not in message
    before = snapshot(tmp_path)
    line = check_one_line_error(*info_answer(capfd, str(path)))
    assert words in line
    assert snapshot(tmp_path) == before


def test_pcam_float_pixels_are_scanned_in_blocks_never_whole(tmp_path, monkeypatch):
    from medcne.datasets import convert, pcam

    x = _floats(np.nan, at=-1, n=40)
    with h5py.File(tmp_path / "p_x.h5", "w") as f:
        f["x"] = x
    blocks = []
    real = pcam.check_pixels
    monkeypatch.setattr(pcam, "check_pixels", lambda b, *a, **k: (blocks.append(len(b)), real(b, *a, **k)))
    monkeypatch.setattr(convert, "_BLOCK_BYTES", 8 * 8 * 3 * 8 * 5)  # five images per block
    monkeypatch.setattr(pcam, "block_rows", lambda nbytes: convert.block_rows(nbytes, convert._BLOCK_BYTES))
    with pytest.raises(errors.PixelRangeError, match="image 39"):
        load_dataset(tmp_path / "p_x.h5")
    assert blocks == [5] * 8
    x[-1] = 0.25  # clean: loads lazily, floats scaled to uint8
    with h5py.File(tmp_path / "p_x.h5", "w") as f:
        f["x"] = x
    data = load_dataset(tmp_path / "p_x.h5")
    assert data.is_lazy and data.images[39].max() == 64 and data.images[0].max() == 128


def test_skip_bad_skips_and_counts_a_decompression_bomb(tmp_path, capfd):
    folder = _bomb_folder(tmp_path)
    data = load_dataset(folder, skip_bad=True)
    assert len(data) == 1 and "skipped 1 unreadable image file(s)" in data.notes
    rc, out, err = info_answer(capfd, str(folder), "--skip-bad")
    assert rc == 0 and err == "" and "skipped 1 unreadable" in out


def test_huge_size_is_refused_with_the_figure_before_allocating(capfd):
    from medcne.datasets import SAMPLE_PATH

    with pytest.raises(errors.DataError, match=r"needs 54\.6 TiB of memory"):
        load_dataset(SAMPLE_PATH, size=100000)
    line = check_one_line_error(*info_answer(capfd, str(SAMPLE_PATH), "--size", "100000"))
    assert "2,000 images" in line and "54.6 TiB" in line and "--size" in line


def test_subset_is_resized_alone(monkeypatch):
    from medcne.datasets import SAMPLE_PATH, memory

    # 2,000 images at 1000 x 1000 x 3 (6 GB) would not fit in 2 GB; the 10 chosen ones (30 MB) do.
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 << 30)
    with pytest.raises(errors.DataError, match="needs"):
        load_dataset(SAMPLE_PATH, size=1000)
    small = load_dataset(SAMPLE_PATH, size=1000, subset=10, seed=3)
    reference = load_dataset(SAMPLE_PATH, subset=10, seed=3)
    assert small.image_shape == (1000, 1000, 3) and list(small.ids) == list(reference.ids)


def test_memory_of_a_file_dataset_is_checked_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    from medcne.datasets import memory

    build = _csv("path\n" + "".join(f"i{i}.png\n" for i in range(20)), images=[f"i{i}.png" for i in range(20)])
    path = build(tmp_path)
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 << 30)
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: (decoded.append(img), real_load(img))[1])
    with pytest.raises(errors.DataError, match=r"20 images of 60000x60000x3 .* needs 402\.3 GiB"):
        load_dataset(path, size=60000)  # RGB files: their channels are read from a header
    assert decoded == []  # refused before any file was decoded


def test_npz_too_large_for_memory_is_refused_before_reading(tmp_path, monkeypatch):
    from medcne.datasets import memory

    np.savez(tmp_path / "d.npz", images=random_images(100, 16))
    monkeypatch.setattr(memory, "available_bytes", lambda: 10_000)
    with pytest.raises(errors.DataError, match=r"d\.npz: reading 100 images .* needs 75\.0 KiB of memory"):
        load_dataset(tmp_path / "d.npz")


def test_available_memory_is_read_from_the_machine():
    from medcne.datasets import memory

    available = memory.available_bytes()
    total = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1]) * 1024
    assert 0 < available <= total
    assert memory.format_bytes(54.6 * 2**40) == "54.6 TiB" and memory.format_bytes(512) == "512 bytes"


def test_zip_member_that_lies_about_its_size(tmp_path):
    # The .npy header is honest, but the data stops early: the zip reports the smaller size.
    npz_with_header(tmp_path / "t.npz", "images", (4, 8, 8, 3), bytes(100))
    with pytest.raises(errors.DataError, match="holds only 100 bytes"):
        load_dataset(tmp_path / "t.npz")


def test_truncated_inside_the_zip_directory(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, images=random_images(4))
    raw = buf.getvalue()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) - 30])
    with pytest.raises(errors.DataError, match="t.npz: cannot read as .npz"):
        load_dataset(tmp_path / "t.npz")
    assert zipfile.is_zipfile(io.BytesIO(raw))
