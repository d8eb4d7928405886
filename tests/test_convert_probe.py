"""`medcne convert`: never writes into a CSV dataset's folder, never appends to a damaged store."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medcne.cli import main
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
    from medcne.datasets.store import StoreWriter
    from medcne.errors import DataError

    src = tmp_path / "img.npz"
    np.savez(src, images=np.zeros((4, 8, 8, 3), np.uint8))
    store = tmp_path / "st"
    assert main(["convert", str(src), "--out", str(store)]) == 0
    with open(store / "part-000000" / "meta.npz", "ab") as fh:
        fh.write(b"changed")
    with pytest.raises(DataError, match=r"meta.npz has \d+ bytes, the manifest says \d+; the store is damaged"):
        StoreWriter(store, (8, 8, 3))
