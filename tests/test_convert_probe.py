"""`medcne convert`: never writes into a CSV dataset's folder, never appends to a damaged store."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medcne.cli import main
from medcne.datasets.store_read import open_store
from safetyhelpers import refused, snapshot


def csv_dataset(folder):
    """A CSV list in ``folder`` whose images lie in ``folder/im``."""
    (folder / "im").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / "im" / f"i{i}.png")
    (folder / "list.csv").write_text("path,label\n" + "".join(f"im/i{i}.png,{'ab'[i % 2]}\n" for i in range(6)))
    return folder / "list.csv"


@pytest.mark.parametrize("out", ["store2", "im/store3"])
def test_convert_never_writes_into_the_folder_of_a_csv_dataset(tmp_path, capsys, out):
    listing = csv_dataset(tmp_path / "csvds")
    before = snapshot(tmp_path / "csvds")
    line = refused(["convert", str(listing), "--out", str(tmp_path / "csvds" / out)], capsys,
                   f"--out {tmp_path / 'csvds' / out}", "an input of this command", "choose another --out")
    assert f"inside {tmp_path / 'csvds'}," in line
    assert snapshot(tmp_path / "csvds") == before
    # Outside the dataset's folder it converts as before.
    assert main(["convert", str(listing), "--out", str(tmp_path / "store")]) == 0


def test_convert_refuses_to_append_to_a_damaged_store(tmp_path, capsys):
    src = tmp_path / "img28.npz"
    rng = np.random.default_rng(1)
    np.savez(src, images=rng.integers(0, 256, (38, 8, 8, 3), dtype=np.uint8), labels=np.arange(38) % 3)
    store = tmp_path / "st_dmg"
    assert main(["convert", str(src), "--out", str(store)]) == 0
    images = store / "part-000000" / "images.npy"
    with open(images, "r+b") as fh:
        fh.truncate(images.stat().st_size - 100)
    capsys.readouterr()
    assert main(["info", str(store)]) == 2
    assert "damaged" in capsys.readouterr().err
    before = snapshot(store)
    refused(["convert", str(src), "--out", str(store), "--append", "--part", "more"], capsys,
            str(store), "images.npy", "damaged")
    assert snapshot(store) == before  # no new part, the manifest unchanged, no temp or lock file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img28.npz", "st_dmg"]


def test_the_store_writer_itself_refuses_a_damaged_store(tmp_path, capsys):
    # `medcne tile` appends through StoreWriter without convert's early check: the writer holds the rule.
    from medcne.datasets.store_write import StoreWriter
    from medcne.errors import DataError

    src = tmp_path / "img.npz"
    np.savez(src, images=np.zeros((4, 8, 8, 3), np.uint8))
    store = tmp_path / "st"
    assert main(["convert", str(src), "--out", str(store)]) == 0
    with open(store / "part-000000" / "meta.npz", "ab") as fh:
        fh.write(b"changed")
    with pytest.raises(DataError, match=r"meta.npz has \d+ bytes, the manifest says \d+; the store is damaged"):
        StoreWriter(store, (8, 8, 3))


def class_folders(root, classes, n=3, seed=0):
    """PNG images in ``root/CLASS/sI.png``: the same file names in every class folder."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / c / f"s{i}.png")
    return root


def test_an_appended_part_whose_ids_are_taken_is_refused_before_it_is_written(tmp_path, capsys):
    # The first part keeps its ids (basophil/s0.png...); an appended folder named "basophil" would give
    # its s0.png the same id, and a label CSV or the viewer would then match two images.
    first = class_folders(tmp_path / "folder", ["basophil", "platelet"])
    other = class_folders(tmp_path / "more", ["basophil"], seed=1) / "basophil"
    store = tmp_path / "store"
    assert main(["convert", str(first), "--out", str(store)]) == 0
    before = snapshot(store)
    refused(["convert", str(other), "--out", str(store), "--append"], capsys,
            "--part basophil: the new part's id 'basophil/s0.png' is an id of", "give the part another name with --part")
    assert snapshot(store) == before
    assert main(["convert", str(other), "--out", str(store), "--append", "--part", "more"]) == 0
    assert len(set(open_store(store).ids)) == 9


def test_a_store_whose_ids_repeat_is_refused_by_its_reader_and_its_writer(tmp_path, capsys):
    from medcne.datasets.store_write import StoreWriter
    from medcne.errors import MedcneError

    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    store = tmp_path / "store"
    with StoreWriter(store, (8, 8, 3)) as writer:
        with pytest.raises(MedcneError, match="in part 'a', the id 'x' is given to 2 images; give every image its own id"):
            writer.add_part("a", images, ids=["x", "x"])
        writer.add_part("a", images, ids=["x", "y"])
        writer.add_part("b", images, ids=["y", "z"])  # across parts: the reader's check
    assert not list(store.glob(".part-*"))
    refused(["info", str(store)], capsys, f"{store}: the id 'y' is given to 2 images; ids must be unique",
            "write the store again")
