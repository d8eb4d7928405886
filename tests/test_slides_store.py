"""The stand-in tile store: parts committed whole, reopened lazily, shape and foreign folders refused."""

from __future__ import annotations

import numpy as np
import pytest

from medcne.datasets import load_dataset
from medcne.datasets.slides_store import StoreWriter, is_store, open_store
from medcne.errors import DataError


def blocks(n, start=0):
    for i in range(start, start + n, 3):
        yield np.full((min(3, start + n - i), 4, 4, 3), i, np.uint8)


def test_parts_stream_in_and_read_back_with_labels_ids_and_provenance(tmp_path):
    out = tmp_path / "store"
    with StoreWriter(out, (4, 4, 3)) as writer:
        assert writer.add_part("a", blocks(5), labels=["x"] * 5, ids=[f"a/{i}" for i in range(5)],
                               provenance={"slide": np.array(["a"] * 5), "x": np.arange(5)}) == 5
        assert writer.has_part("a") and not writer.has_part("b")
    with StoreWriter(out, (4, 4, 3)) as writer:  # appending
        writer.add_part("b", np.zeros((2, 4, 4, 3), np.uint8), labels=[None, "y"], ids=["b/0", "b/1"],
                        provenance={"slide": np.array(["b", "b"]), "x": np.array([7, 8])})
    data = open_store(out)
    assert is_store(out) and data.is_lazy and len(data) == 7
    assert data.class_names == ["unlabelled", "x", "y"] and data.labels.tolist() == [1] * 5 + [0, 2]
    assert data.provenance["x"].tolist() == [0, 1, 2, 3, 4, 7, 8] and data.ids[5] == "b/0"
    assert np.asarray(data.images[[0, 3, 6]])[:, 0, 0, 0].tolist() == [0, 3, 0]
    assert len(load_dataset(out)) == 7


def test_a_part_that_fails_midway_is_not_listed(tmp_path):
    out = tmp_path / "store"
    writer = StoreWriter(out, (4, 4, 3))

    def broken():
        yield np.zeros((3, 4, 4, 3), np.uint8)
        raise DataError("tile unreadable")

    with pytest.raises(DataError):
        writer.add_part("a", broken(), labels=None, ids=["1", "2", "3", "4"], provenance={})
    assert not writer.has_part("a") and not list((out / "parts").iterdir())


def test_another_shape_and_a_foreign_folder_are_refused(tmp_path):
    out = tmp_path / "store"
    StoreWriter(out, (4, 4, 3))
    with pytest.raises(DataError, match="holds images of"):
        StoreWriter(out, (8, 8, 3))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a medcne store"):
        StoreWriter(foreign, (4, 4, 3))
    assert (foreign / "notes.txt").read_text() == "keep me"
