"""The run-folder contract: atomic writes, embeddings round-trip, clear errors."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from medcne.errors import MedcneError
from medcne.io import atomic_write, write_json
from medcne.runs import read_run, save_embedding_file, write_embedding


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def fail(p):
        p.write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_gives_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "p.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.json").stat().st_mode) == 0o644


def test_embedding_round_trip_and_csv(tmp_path):
    Z = np.array([[0.5, -1.0], [2.0, 3.25]], dtype=np.float32)
    write_embedding(tmp_path, Z, ["a.png", "b.png"], np.array([1, 0]), ["neg", "pos"])
    write_json(tmp_path / "params.json", {"method": "tsimcne"})
    run = read_run(tmp_path)
    np.testing.assert_array_equal(run.embedding, Z)
    assert list(run.ids) == ["a.png", "b.png"] and run.class_names == ["neg", "pos"]
    assert run.method == "tsimcne"
    lines = (tmp_path / "embedding.csv").read_text().splitlines()
    assert lines == ["x,y,label,id", "0.5,-1,pos,a.png", "2,3.25,neg,b.png"]


def test_embedding_file_needs_a_known_extension(tmp_path):
    with pytest.raises(MedcneError, match=".csv or .npz"):
        save_embedding_file(tmp_path / "e.txt", np.zeros((1, 2)), ["0"])


def test_read_run_errors(tmp_path):
    with pytest.raises(MedcneError, match="no such run folder"):
        read_run(tmp_path / "missing")
    (tmp_path / "placed.csv").write_text("x,y,label,id\n")  # what `medcne embed` writes: there, but no run
    with pytest.raises(MedcneError, match="placed.csv: a file, not a run folder"):
        read_run(tmp_path / "placed.csv")
    with pytest.raises(MedcneError, match="no embedding.npz"):
        read_run(tmp_path)


def test_provenance_cells_leave_a_missing_number_empty_and_whole_numbers_without_a_point(tmp_path):
    """A store whose parts lack a column gives NaN there (float): the CSV shows '' and 96, not nan and 96.0."""
    from medcne.embedfile import save_embedding_file

    prov = {"slide": np.array(["a", "", "b"]), "x": np.array([96.0, np.nan, 192.0]),
            "mpp": np.array([0.2527, 0.5, np.nan], dtype=np.float32), "level": np.array([0, 1, 2])}
    path = save_embedding_file(tmp_path / "e.csv", np.zeros((3, 2)), ["i0", "i1", "i2"], provenance=prov)
    rows = path.read_text().splitlines()
    assert rows[0].split(",")[4:] == ["slide", "prov_x", "mpp", "level"]
    assert [r.split(",")[4:] for r in rows[1:]] == [["a", "96", "0.2527", "0"], ["", "", "0.5", "1"],
                                                    ["b", "192", "", "2"]]
