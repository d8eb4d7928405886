"""The on-disk image store: write, append, reopen, refuse damage, and `medcne convert`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from medcne.cli import main
from medcne.datasets import load_dataset, load_sample
from medcne.datasets.store import check_store_folder, is_store
from medcne.datasets.store_read import open_store
from medcne.datasets.store_write import StoreWriter
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

    from medcne.datasets import store_read as store_module

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
    with pytest.raises(MedcneError, match="not a medcne store"):
        StoreWriter(foreign, (8, 8, 3))
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(("shape", "fix"), [((8, 8, 1), "--channels rgb to match"),
                                           ((9, 9, 3), "--size 8 to match"),
                                           ((8, 9, 1), "--size 8 --channels rgb to match")])
def test_appending_other_images_names_the_option_that_differs(tmp_path, shape, fix):
    store = write(tmp_path / "s", [("a", images(4), None)])
    with pytest.raises(MedcneError, match=fix):
        StoreWriter(store, shape)
    StoreWriter(tmp_path / "g", (8, 8, 1)).close()
    with pytest.raises(MedcneError, match="--channels gray to match"):
        StoreWriter(tmp_path / "g", (8, 8, 3))


def test_convert_append_of_other_channels_names_channels(tmp_path, capsys):
    gray, rgb = tmp_path / "gray.npz", tmp_path / "rgb.npz"
    np.savez(gray, images=images(3, shape=(8, 8, 1)))
    np.savez(rgb, images=images(3))
    assert main(["convert", str(rgb), "--out", str(tmp_path / "s")]) == 0
    assert main(["convert", str(gray), "--out", str(tmp_path / "s"), "--append"]) == 2
    assert "read the data with --channels rgb to match" in capsys.readouterr().err
    assert main(["convert", str(gray), "--out", str(tmp_path / "s"), "--append", "--channels", "rgb"]) == 0


def test_unlabelled_images_join_a_class_named_unlabelled(tmp_path):
    """A part without labels added to a store that has a class 'unlabelled' (a converted store's):
    one class of that name, and every image counted in it."""
    store = write(tmp_path / "s", [("a", images(4), ["tumour", "unlabelled", "tissue", "tissue"]),
                                   ("b", images(3), None)])
    data = load_dataset(store)
    assert data.class_names == ["tumour", "unlabelled", "tissue"]
    assert list(data.labels) == [0, 1, 2, 2, 1, 1, 1]
    only_missing = load_dataset(write(tmp_path / "t", [("a", images(2), ["cat", "dog"]), ("b", images(1), None)]))
    assert only_missing.class_names == ["cat", "dog", "unlabelled"] and list(only_missing.labels) == [0, 1, 2]


def test_provenance_of_parts_with_other_columns_is_kept_with_empty_values(tmp_path):
    """Every column of every part is kept: '' (text) or NaN (numbers) in the images of a part without
    it, with a note naming the part; a column of text in one part and numbers in another is text."""
    with StoreWriter(tmp_path / "s", (8, 8, 3)) as w:
        w.add_part("tiles", images(3), ids=["a", "b", "c"], provenance={
            "slide": np.array(["s1"] * 3), "x": np.array([0, 96, 192]), "mpp": np.full(3, 0.5, np.float32)})
        w.add_part("ct", images(2), ids=["d", "e"])
        w.add_part("more", images(2), ids=["f", "g"], provenance={"x": np.array(["left", "right"]),
                                                                 "slice": np.array([4, 5])})
    data = load_dataset(tmp_path / "s")
    prov = data.provenance
    assert list(prov) == ["slide", "x", "mpp", "slice"]
    assert list(prov["slide"]) == ["s1"] * 3 + [""] * 4
    assert list(prov["x"]) == ["0", "96", "192", "", "", "left", "right"]
    assert prov["mpp"].dtype == np.float32 and np.isnan(prov["mpp"][3:]).all() and prov["mpp"][0] == 0.5
    assert np.isnan(prov["slice"][:5]).all() and list(prov["slice"][5:]) == [4, 5]
    assert any("slide, x, mpp" in n and "'ct'" in n for n in data.notes)
    numbers = load_dataset(write_parts(tmp_path / "n", {"a": {"x": np.array([1, 2])}, "b": {}}))
    assert numbers.provenance["x"].dtype.kind == "f" and list(numbers.provenance["x"][:2]) == [1, 2]
    assert np.isnan(numbers.provenance["x"][2:]).all()


def write_parts(path, provenance_of):
    with StoreWriter(path, (8, 8, 3)) as w:
        for name, prov in provenance_of.items():
            w.add_part(name, images(2), ids=[f"{name}{i}" for i in range(2)], provenance=prov)
    return path


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


def test_store_that_lost_its_manifest_is_called_damaged_and_never_emptied(tmp_path):
    """A store whose parts are there but whose manifest.json is gone is still recognised as a store
    (not read as a folder of class folders), refused as damaged, and a writer leaves its parts alone."""
    store = write(tmp_path / "s", [("a", images(3), None), ("b", images(2), None)])
    (store / "manifest.json").unlink()
    for read in (lambda: load_dataset(store), lambda: StoreWriter(store, (8, 8, 3))):
        with pytest.raises(DataError, match="a medcne store whose manifest.json is missing.*2 part folder.*again"):
            read()
    assert (store / "part-000000" / "images.npy").is_file() and (store / "part-000001" / "meta.npz").is_file()


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


def test_store_writer_names_a_run_folder_as_such(tmp_path):
    from medcne.runfiles import RUN_MARKER, RUN_MARKER_FORMAT

    run = tmp_path / "run"
    run.mkdir()
    (run / "params.json").write_text('{"method": "tsimcne", "data": {"path": "x.npz"}}')
    (run / RUN_MARKER).write_text(f'{{"format": "{RUN_MARKER_FORMAT}", "files": ["params.json"]}}')
    with pytest.raises(MedcneError, match="run is a medcne run folder, not a store; choose a new or empty folder"):
        StoreWriter(run, (8, 8, 3))
    with pytest.raises(MedcneError, match="^--out .*run is a medcne run folder"):
        check_store_folder(run, f"--out {run}")
    assert sorted(p.name for p in run.iterdir()) == [RUN_MARKER, "params.json"]


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


def test_convert_append_of_a_part_already_there_counts_that_part(tmp_path, capsys):
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    np.savez(first, images=images(30), labels=np.arange(30) % 3)
    np.savez(second, images=images(7, seed=1), labels=np.arange(7) % 3)
    out = tmp_path / "store"
    assert main(["convert", str(first), "--out", str(out)]) == 0
    assert main(["convert", str(second), "--out", str(out), "--append", "--part", "second"]) == 0
    capsys.readouterr()
    assert main(["convert", str(second), "--out", str(out), "--append", "--part", "second"]) == 0
    assert "already holds part 'second' (7 images); nothing to add" in capsys.readouterr().out
    # Other data under that part's name (another split, say) are not a rerun: refused, not skipped.
    assert main(["convert", str(first), "--out", str(out), "--append", "--part", "second"]) == 2
    assert "its part 'second' holds 7 images, these data 30: they are other data" in capsys.readouterr().err


def test_a_part_folder_the_manifest_lost_is_never_deleted_and_the_store_is_refused(tmp_path):
    import json

    store = write(tmp_path / "s", [("a", images(3), None), ("b", images(2), None), ("c", images(4), None)])
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["parts"] = manifest["parts"][2:]  # an edited manifest: parts a and b lost from it
    manifest["n"] = 4
    (store / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in store.rglob("*"))
    with pytest.raises(DataError, match="part-000000: a part folder that manifest.json does not list"):
        load_dataset(store)
    with pytest.raises(DataError, match="does not list"), StoreWriter(store, (8, 8, 3)):
        pass
    assert main(["convert", str(store), "--out", str(tmp_path / "t")]) == 2
    assert sorted(p.name for p in store.rglob("*")) == before  # every part folder is still there


@pytest.mark.parametrize("name", ["part-000009", "part-000001", ".part-000001.tmp"])
def test_a_folder_of_the_users_named_as_a_part_is_never_deleted(tmp_path, name):
    store = write(tmp_path / "s", [("a", images(3), None)])
    (store / name).mkdir()
    (store / name / "notes.txt").write_text("mine")
    with pytest.raises(MedcneError, match="not medcne's|medcne did not write"), StoreWriter(store, (8, 8, 3)) as w:
        w.add_part("b", images(2), ids=["p", "q"])
    assert (store / name / "notes.txt").read_text() == "mine"


def test_a_run_of_a_store_reads_the_parts_it_was_made_from_after_more_are_appended(tmp_path, capsys):
    import json

    from medcne.runs import read_run

    for k in range(3):
        np.savez(tmp_path / f"p{k}.npz", images=images(24, seed=k), labels=np.arange(24) % 3)
    store = tmp_path / "store"
    assert main(["convert", str(tmp_path / "p0.npz"), "--out", str(store)]) == 0
    assert main(["convert", str(tmp_path / "p1.npz"), "--out", str(store), "--append", "--part", "p1"]) == 0
    fit = ["--epochs", "1,0,1", "--warmup", "0,0,0", "--width", "2", "--batch-size", "16", "--device", "cpu"]
    for run, extra in (("run", []), ("sub", ["--subset", "30"])):
        assert main(["fit", str(store), "--out", str(tmp_path / run), *fit, *extra]) == 0
        assert json.loads((tmp_path / run / "params.json").read_text())["data"]["store_parts"] == [2, 3]
    # The store grows (the documented way to add data): the runs still read their own images.
    np.savez(tmp_path / "p3.npz", images=images(24, seed=3), labels=np.zeros(24, int), class_names=np.array(["x"]))
    assert main(["convert", str(tmp_path / "p3.npz"), "--out", str(store), "--append", "--part", "p3"]) == 0
    capsys.readouterr()
    for run in ("run", "sub"):
        r = read_run(tmp_path / run)
        images_then = r.load_images()
        assert len(images_then) == len(r.ids)
        assert images_then.class_names == ["0", "1", "2"]  # not the class 'x' the later part brought
        assert images_then.fingerprint() == r.params["data_fingerprint"]  # what a resume checks
        assert main(["view", str(tmp_path / run)]) == 0
        assert main(["evaluate", str(tmp_path / run)]) == 0
        assert "cannot be read" not in capsys.readouterr().out


def test_a_run_that_did_not_record_its_stores_parts_is_told_why_its_images_differ(tmp_path, capsys):
    import json

    from medcne.runs import read_run

    np.savez(tmp_path / "p0.npz", images=images(24), labels=np.arange(24) % 3)
    np.savez(tmp_path / "p1.npz", images=images(24, seed=1), labels=np.arange(24) % 3)
    store = tmp_path / "store"
    assert main(["convert", str(tmp_path / "p0.npz"), "--out", str(store)]) == 0
    run = tmp_path / "run"
    assert main(["fit", str(store), "--out", str(run), "--epochs", "1,0,1", "--warmup", "0,0,0", "--width", "2",
                 "--batch-size", "16", "--device", "cpu"]) == 0
    params = json.loads((run / "params.json").read_text())
    del params["data"]["store_parts"]  # a run made by an older medcne
    (run / "params.json").write_text(json.dumps(params))
    assert main(["convert", str(tmp_path / "p1.npz"), "--out", str(store), "--append", "--part", "p1"]) == 0
    with pytest.raises(MedcneError, match="parts appended to the store since the run was made are read with it"):
        read_run(run).load_images()
