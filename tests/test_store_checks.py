"""What a user can check about a store from the command line: every pixel (`medcne info STORE --verify`),
and a store that lost its marker or manifest is called what it is, not "no images found"."""

from __future__ import annotations

import numpy as np
import pytest

from medcne.cli import main
from medcne.datasets import load_dataset
from medcne.datasets.store_read import verify_store
from medcne.datasets.store_write import StoreWriter
from medcne.errors import DataError


def write(path, sizes=(3, 2)):
    with StoreWriter(path, (8, 8, 3)) as w:
        for k, n in enumerate(sizes):
            w.add_part(f"p{k}", np.full((n, 8, 8, 3), k, np.uint8), labels=["a", "b"] * (n // 2) + ["a"] * (n % 2),
                       ids=[f"{k}/{i}" for i in range(n)])
    return path


def flip_middle(pixels):
    raw = bytearray(pixels.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # beyond the first and last MiB, which every open checks
    pixels.write_bytes(bytes(raw))


def test_info_verify_names_the_part_damaged_in_its_middle(tmp_path, capsys):
    store = write(tmp_path / "s", sizes=(3, 40_000, 2))  # the middle part holds 7.7 MB of pixels
    assert main(["info", str(store), "--verify"]) == 0
    assert "intact: every pixel of its 3 part(s) matches" in capsys.readouterr().out
    flip_middle(store / "part-000001" / "images.npy")
    assert main(["info", str(store)]) == 0  # opening checks the ends only: the change is not seen
    capsys.readouterr()
    assert main(["info", str(store), "--verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of its 3 part(s) damaged: part 'p1' (part-000001): the pixels' checksum" in err
    assert "other parts are intact" in err and "backup" in err and "--append --part NAME" in err
    assert [(e.part["name"], e.reason) for e in verify_store(store)] == [("p1", "the pixels' checksum does not match")]


def test_info_verify_counts_every_damaged_part(tmp_path, capsys):
    store = write(tmp_path / "s", sizes=(3, 2, 4))
    (store / "part-000000" / "images.npy").write_bytes(b"short")
    (store / "part-000002" / "meta.npz").unlink()
    assert main(["info", str(store), "--verify"]) == 2
    err = capsys.readouterr().err
    assert "2 of its 3 part(s) damaged: part 'p0' (part-000000): images.npy has 5 bytes" in err
    assert "part 'p2' (part-000002): is missing" in err and "'p1'" not in err


@pytest.mark.parametrize("what", ["npz", "folder", "missing"])
def test_info_verify_refuses_data_that_is_not_a_store_in_one_line(tmp_path, capsys, what):
    data = tmp_path / "d.npz"
    if what == "npz":
        np.savez(data, images=np.zeros((4, 8, 8, 3), np.uint8))
    elif what == "folder":
        data = tmp_path / "cells"
        (data / "a").mkdir(parents=True)
    assert main(["info", str(data), "--verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("no such file or folder" if what == "missing" else "not a medcne store, so --verify has no checksums") in err


def test_a_store_that_lost_its_marker_is_called_so_and_left_as_it_is(tmp_path, capsys):
    store = write(tmp_path / "s")
    (store / "MEDCNE_STORE").unlink()
    before = sorted(p.name for p in store.rglob("*"))
    for read in (lambda: load_dataset(store), lambda: StoreWriter(store, (8, 8, 3))):
        with pytest.raises(DataError, match="a medcne store that lost its MEDCNE_STORE file .*2 part folder.*touch"):
            read()
    assert main(["info", str(store)]) == 2
    assert "no images found" not in capsys.readouterr().err
    np.savez(tmp_path / "more.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
    assert main(["convert", str(tmp_path / "more.npz"), "--out", str(store), "--append"]) == 2
    assert "lost its MEDCNE_STORE file" in capsys.readouterr().err
    assert sorted(p.name for p in store.rglob("*")) == before  # no marker written back, nothing removed
    (store / "MEDCNE_STORE").touch()  # what the message says to do
    assert len(load_dataset(store)) == 5


def test_part_folders_without_marker_or_manifest_are_called_a_stores_parts(tmp_path, capsys):
    store = write(tmp_path / "s")
    (store / "MEDCNE_STORE").unlink()
    (store / "manifest.json").unlink()
    assert main(["info", str(store)]) == 2
    err = capsys.readouterr().err
    assert "2 part folder(s) of a medcne store without its MEDCNE_STORE and manifest.json" in err
    assert "convert the data again" in err and "no images found" not in err
    with pytest.raises(DataError, match="part folder"):
        StoreWriter(store, (8, 8, 3))
    assert sorted(p.name for p in store.iterdir()) == [".lock", "part-000000", "part-000001"]


def test_a_folder_of_images_with_a_manifest_of_its_own_is_still_a_folder_of_images(tmp_path):
    from PIL import Image

    root = tmp_path / "cells"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / name / "x.png")
    (root / "manifest.json").write_text('{"format": "another tool", "files": 2}')
    assert load_dataset(root).class_names == ["a", "b"]


def test_convert_of_a_store_checks_every_pixel_of_it_first(tmp_path, capsys):
    store = write(tmp_path / "s", sizes=(3, 40_000, 2))
    flip_middle(store / "part-000001" / "images.npy")
    assert main(["convert", str(store), "--out", str(tmp_path / "copy")]) == 2
    assert "1 of its 3 part(s) damaged: part 'p1'" in capsys.readouterr().err
    assert not (tmp_path / "copy").exists()  # no copy with fresh checksums over the damage
