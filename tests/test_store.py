"""The on-disk image store: write, append, reopen, refuse damage, and `medcne convert`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from medcne.cli import main
from medcne.datasets import load_dataset, load_sample
from medcne.datasets.store import StoreWriter, is_store, open_store
from medcne.errors import DataError, MedcneError


def images(n, seed=0, shape=(8, 8, 3)):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write(path, parts):
    with StoreWriter(path, (8, 8, 3)) as w:
        for name, x, labels in parts:
            w.add_part(name, x, labels=labels, ids=[f"{name}/{i}" for i in range(len(x))],
                       provenance={"x": np.arange(len(x)), "slide": np.array([name] * len(x))})
    return path


def test_write_reopen_and_append(tmp_path):
    a, b = images(10, 1), images(7, 2)
    store = write(tmp_path / "s", [("a", a, ["cat", "dog"] * 5)])
    assert is_store(store)
    # Appending: a new part in streamed blocks, a class name first seen here.
    with StoreWriter(store, (8, 8, 3)) as w:
        assert w.has_part("a") and not w.has_part("b")
        added = w.add_part("b", iter([b[:3], b[3:]]), labels=["emu"] * 7, ids=[f"b/{i}" for i in range(7)],
                           provenance={"x": np.arange(7), "slide": np.array(["b"] * 7)})
    assert added == 7
    data = load_dataset(store)
    assert data.is_lazy and len(data) == 17
    np.testing.assert_array_equal(data.to_numpy(), np.concatenate([a, b]))
    assert data.class_names == ["cat", "dog", "emu"]
    assert list(data.labels) == [0, 1] * 5 + [2] * 7
    assert data.ids[10] == "b/0" and list(data.provenance["slide"][9:11]) == ["a", "b"]
    # Random gathers across parts, in the order asked for.
    order = np.array([16, 0, 9, 10, 3, 3])
    np.testing.assert_array_equal(data.images[order], np.concatenate([a, b])[order])


def test_reader_survives_pickling(tmp_path):
    store = write(tmp_path / "s", [("a", images(5), None)])
    data = pickle.loads(pickle.dumps(open_store(store)))
    np.testing.assert_array_equal(data.images[[4, 1]], images(5)[[4, 1]])
    assert data.labels is None


def test_random_access_reader_reads_the_same_images_without_read_ahead(tmp_path, monkeypatch):
    """Training gathers random images through a reader that advises the kernel against read-ahead
    (one page per image from a cold disk); it reads exactly what the plain reader reads, and keeps
    its advice across pickling (worker processes)."""
    import mmap

    from medcne.datasets import store as store_module

    a, b = images(6, 1), images(5, 2)
    store = write(tmp_path / "s", [("a", a, None), ("b", b, None)])
    plain = open_store(store).images._read
    advised = []
    monkeypatch.setattr(store_module, "_advise_random", lambda m: advised.append(m.shape))
    fast = pickle.loads(pickle.dumps(plain.for_random_access()))
    order = np.array([10, 0, 7, 3, 3])
    np.testing.assert_array_equal(fast(order), plain(order))
    assert advised == [(6, 8, 8, 3), (5, 8, 8, 3)] and fast.random_access and not plain.random_access
    if hasattr(mmap, "MADV_RANDOM"):  # the real advice runs on a real map without error
        store_module._advise_random(np.load(store / "part-000000" / "images.npy", mmap_mode="r"))


def test_refuses_other_shape_duplicate_part_and_foreign_folder(tmp_path):
    store = write(tmp_path / "s", [("a", images(4), None)])
    with pytest.raises(MedcneError, match="not \\(9, 9, 3\\)"):
        StoreWriter(store, (9, 9, 3))
    with StoreWriter(store, (8, 8, 3)) as w, pytest.raises(MedcneError, match="already holds a part named 'a'"):
        w.add_part("a", images(2), ids=["x", "y"])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(MedcneError, match="not a medcne store and not empty"):
        StoreWriter(foreign, (8, 8, 3))
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("damage", ["truncate", "flip_edge", "manifest", "meta"])
def test_damaged_store_refused_in_one_line(tmp_path, damage):
    store = write(tmp_path / "s", [("a", images(6), None)])
    pixels, meta = store / "part-000000" / "images.npy", store / "part-000000" / "meta.npz"
    if damage == "truncate":
        pixels.write_bytes(pixels.read_bytes()[:-5])
    elif damage == "flip_edge":
        raw = bytearray(pixels.read_bytes())
        raw[-1] ^= 0xFF
        pixels.write_bytes(bytes(raw))
    elif damage == "manifest":
        (store / "manifest.json").write_text("{ half")
    else:
        raw = bytearray(meta.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        meta.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        load_dataset(store)
    assert "\n" not in str(err.value) and str(store) in str(err.value)


def test_full_verify_finds_a_change_in_the_middle(tmp_path):
    x = np.zeros((40_000, 8, 8, 3), np.uint8)  # > 2 MiB of pixels: the middle is outside the checked edges
    store = write(tmp_path / "s", [("a", x, None)])
    pixels = store / "part-000000" / "images.npy"
    raw = bytearray(pixels.read_bytes())
    raw[len(raw) // 2] = 1
    pixels.write_bytes(bytes(raw))
    assert len(open_store(store)) == 40_000
    with pytest.raises(DataError, match="pixels' checksum"):
        open_store(store, verify=True)


def test_half_written_part_is_never_listed_and_is_cleaned_up(tmp_path, monkeypatch):
    store = write(tmp_path / "s", [("a", images(3), None)])

    def broken():
        yield images(2)
        raise KeyboardInterrupt  # killed in the middle of a part

    with StoreWriter(store, (8, 8, 3)) as w, pytest.raises(KeyboardInterrupt):
        w.add_part("b", broken(), ids=["p", "q"])
    # A writer killed -9 leaves its temporary folder behind: simulate one, and a renamed but unlisted part.
    (store / ".part-000001.tmp").mkdir()
    (store / "part-000001").mkdir()
    (store / "part-000001" / "images.npy").write_bytes(b"x")
    assert len(open_store(store)) == 3
    with StoreWriter(store, (8, 8, 3)):
        pass
    assert sorted(p.name for p in store.iterdir()) == [".lock", "MEDCNE_STORE", "manifest.json", "part-000000"]


def test_store_without_manifest_or_parts_refused(tmp_path):
    store = tmp_path / "s"
    StoreWriter(store, (8, 8, 3)).close()
    with pytest.raises(DataError, match="no complete part"):
        load_dataset(store)
    (store / "manifest.json").unlink()
    with pytest.raises(DataError, match="never completed"):
        open_store(store)


def test_convert_round_trip_equals_source(tmp_path, capsys):
    src = tmp_path / "sample.npz"
    sample = load_sample()
    np.savez(src, images=sample.images[:300], labels=sample.labels[:300])
    out = tmp_path / "store"
    assert main(["convert", str(src), "--out", str(out)]) == 0
    back, orig = load_dataset(out), load_dataset(src)
    np.testing.assert_array_equal(back.to_numpy(), orig.to_numpy())
    np.testing.assert_array_equal(back.labels, orig.labels)
    assert back.class_names == orig.class_names and list(back.ids) == list(orig.ids)
    # A second conversion is refused without --append, skipped with it (same part name), added under a new name.
    assert main(["convert", str(src), "--out", str(out)]) == 2
    assert "pass --append" in capsys.readouterr().err
    assert main(["convert", str(src), "--out", str(out), "--append"]) == 0
    assert "nothing to add" in capsys.readouterr().out
    assert main(["convert", str(out), "--out", str(tmp_path / "copy"), "--subset", "50"]) == 0
    assert main(["convert", str(tmp_path / "copy"), "--out", str(out), "--append", "--part", "more"]) == 0
    both = load_dataset(out)
    assert len(both) == 350 and both.ids[300].startswith("more/") and len(set(both.ids)) == 350


def test_convert_refuses_a_foreign_folder(tmp_path, capsys):
    src = tmp_path / "a.npz"
    np.savez(src, images=images(4), labels=np.arange(4))
    foreign = tmp_path / "f"
    foreign.mkdir()
    (foreign / "x.txt").write_text("x")
    assert main(["convert", str(src), "--out", str(foreign)]) == 2
    assert "medcne did not write" in capsys.readouterr().err


def test_failed_conversion_leaves_no_new_folder(tmp_path, monkeypatch, capsys):
    src = tmp_path / "a.npz"
    np.savez(src, images=images(4), labels=np.arange(4))

    def full(self, path, blocks):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(StoreWriter, "_write_images", full)
    assert main(["convert", str(src), "--out", str(tmp_path / "new")]) == 2
    assert "no space left" in capsys.readouterr().err.lower()
    assert not (tmp_path / "new").exists()


def test_a_store_of_large_images_is_read_a_bounded_chunk_at_a_time(tmp_path, monkeypatch):
    """`medcne info` (find_problems), convert, the border colour and the viewer's sprite sheets
    read a store in chunks of READ_CHUNK_MB, not of a fixed number of images (4,096 of 256 px
    were 805 MB; a sheet of 16 px tiles holds 65,536)."""
    import tracemalloc

    from medcne import defaults
    from medcne.augment import border_colour
    from medcne.datasets.summary import find_problems
    from medcne.viewer.sprites import write_sprites

    with StoreWriter(tmp_path / "s", (128, 128, 3)) as w:  # 49,152 bytes an image, 9.8 MB in all
        w.add_part("a", images(200, shape=(128, 128, 3)), ids=[str(i) for i in range(200)])
    data = load_dataset(tmp_path / "s")
    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 1)  # 21 images a chunk
    assert [len(b) for _, b in data.iter_chunks()][:2] == [21, 21]
    for read in (lambda: find_problems(data), lambda: border_colour(data.images),
                 lambda: write_sprites(data.images, tmp_path / "sheets", 16),  # the viewer's thumbnails
                 lambda: main(["convert", str(tmp_path / "s"), "--out", str(tmp_path / "copy")])):
        tracemalloc.start()
        try:
            read()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 6 << 20, f"{peak / 2**20:.1f} MiB"  # a few 1 MB chunks, not the 9.8 MB store
    np.testing.assert_array_equal(load_dataset(tmp_path / "copy").to_numpy(), data.to_numpy())


def test_chunks_of_reading_hold_64_mb_of_images():
    from medcne.defaults import chunk_rows

    assert chunk_rows(256 * 256 * 3) == 341
    assert chunk_rows(28 * 28 * 3) == 28_532
    assert chunk_rows(100_000 * 100_000 * 3) == 1
