"""Provenance for the viewer: prov_* columns of embedding.npz and slide thumbnails copied into the page."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medcne.embedfile import read_columns, read_provenance
from medcne.errors import MedcneError
from medcne.io import write_json
from medcne.runs import write_embedding
from medcne.viewer import build_viewer
from medcne.viewer.provenance import (
    column_values,
    copy_slide_thumbnails,
    data_folder,
)


def tiles(slides=("s1",), n=4) -> dict[str, np.ndarray]:
    """Provenance of n tiles spread over ``slides``, 100 level-0 px apart, 256 px wide."""
    k = np.arange(n)
    return {"slide": np.array([slides[i % len(slides)] for i in k]), "x": k * 100, "y": k * 50,
            "tile_size": np.full(n, 256)}


def write_thumbnail(store, slide, size=(40, 30), record=None) -> None:
    folder = store / "thumbnails"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 100, 50)).save(folder / f"{slide}.png")
    record = {"slide": slide, "width": size[0] * 16, "height": size[1] * 16, "scale": 16} if record is None else record
    (folder / f"{slide}.json").write_text(json.dumps(record))


def test_read_provenance_takes_prov_arrays_only(tmp_path):
    path = tmp_path / "embedding.npz"
    np.savez(path, embedding=np.zeros((3, 2)), ids=np.array(["a", "b", "c"]), prov_slide=np.array(["s", "s", "t"]),
             prov_x=np.arange(3), score=np.ones(3))
    prov = read_provenance(path, 3)
    assert sorted(prov) == ["slide", "x"]
    assert prov["slide"].tolist() == ["s", "s", "t"]
    prov, stored = read_columns(path, 3)  # the viewer's one read: the score is a colour column
    assert sorted(prov) == ["slide", "x"] and list(stored) == ["score"] and stored["score"].tolist() == [1, 1, 1]


def test_a_provenance_column_of_the_wrong_length_is_one_line(tmp_path):
    path = tmp_path / "embedding.npz"
    np.savez(path, embedding=np.zeros((3, 2)), prov_x=np.arange(4))
    with pytest.raises(MedcneError, match=r"embedding.npz: prov_x has shape \(4,\), not one value per point \(3\)"):
        read_provenance(path, 3)


def test_column_values_keep_types_and_large_coordinates():
    assert column_values(np.array([3, 70000123])) == [3, 70000123]
    assert column_values(np.array([1.5, np.nan, 98765432.25])) == [1.5, None, 98765432.25]
    assert column_values(np.array(["c", "a/b.svs", "c"])) == {"names": ["a/b.svs", "c"], "codes": [1, 0, 1]}


def test_thumbnails_of_the_runs_slides_are_copied(tmp_path):
    store, out = tmp_path / "store", tmp_path / "page"
    write_thumbnail(store, "s1", (40, 30))
    write_thumbnail(store, "unused", (10, 10))
    found = copy_slide_thumbnails(tiles(("s1", "s2")), store, out)
    # s2 has no thumbnail: left out; "unused" is no slide of the run: not copied.
    assert found == {"s1": {"file": "slides/00000.png", "width": 40, "height": 30, "scale": 16.0}}
    assert sorted(p.name for p in (out / "slides").iterdir()) == ["00000.png"]
    assert (out / "slides/00000.png").read_bytes() == (store / "thumbnails/s1.png").read_bytes()


def test_no_thumbnails_without_tile_columns_or_folder(tmp_path):
    store = tmp_path / "store"
    write_thumbnail(store, "s1")
    prov = tiles()
    del prov["tile_size"]
    assert copy_slide_thumbnails(prov, store, tmp_path / "page") == {}
    assert copy_slide_thumbnails(tiles(), None, tmp_path / "page") == {}
    assert not (tmp_path / "page").exists()


def test_a_slide_id_with_a_path_never_reads_outside_the_folder(tmp_path):
    store = tmp_path / "store"
    write_thumbnail(tmp_path, "secret")  # tmp_path/thumbnails/secret.png, outside store/thumbnails
    (store / "thumbnails").mkdir(parents=True)
    assert copy_slide_thumbnails(tiles(("../../thumbnails/secret", "..")), store, tmp_path / "page") == {}


@pytest.mark.parametrize("record, problem", [
    ("{not json", "damaged slide thumbnail record"),
    ({"slide": "s1", "width": 10, "height": 10}, "damaged slide thumbnail record.*KeyError"),
    ({"slide": "s1", "width": 10, "height": 10, "scale": 0}, "scale must be a positive number"),
    ({"slide": "s1", "width": 10, "height": 10, "scale": "big"}, "damaged slide thumbnail record"),
    ({"slide": "other", "width": 10, "height": 10, "scale": 2}, "describes slide 'other', not 's1'"),
])
def test_a_damaged_thumbnail_record_is_one_line(tmp_path, record, problem):
    store = tmp_path / "store"
    write_thumbnail(store, "s1", record=record if isinstance(record, dict) else {})
    if isinstance(record, str):
        (store / "thumbnails/s1.json").write_text(record)
    with pytest.raises(MedcneError, match=problem) as e:
        copy_slide_thumbnails(tiles(), store, tmp_path / "page")
    assert "s1.json" in str(e.value) and "medcne tile" in str(e.value) and "\n" not in str(e.value)


def test_an_unreadable_thumbnail_image_is_one_line(tmp_path):
    store = tmp_path / "store"
    write_thumbnail(store, "s1")
    (store / "thumbnails/s1.png").write_bytes(b"not a png")
    with pytest.raises(MedcneError, match="s1.png: not a readable image"):
        copy_slide_thumbnails(tiles(), store, tmp_path / "page")


def test_data_folder_is_the_runs_dataset_folder_or_data(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "data.npz").write_bytes(b"")
    assert data_folder({"data": {"path": str(tmp_path / "store")}}) == tmp_path / "store"
    assert data_folder({"data": {"path": str(tmp_path / "data.npz")}}) is None  # a file holds no thumbnails
    assert data_folder({"data": {}}) is None
    assert data_folder({"data": {"path": "elsewhere"}}, tmp_path / "store") == tmp_path / "store"


def test_a_tile_run_gets_its_slide_in_the_page(tmp_path):
    store, run = tmp_path / "store", tmp_path / "run"
    write_thumbnail(store, "slide 1", (64, 48))
    prov = tiles(("slide 1",), n=5)
    write_embedding(run, np.random.default_rng(0).normal(size=(5, 2)), [f"t{i}" for i in range(5)])
    z = dict(np.load(run / "embedding.npz"))
    np.savez(run / "embedding.npz", **z, **{f"prov_{k}": v for k, v in prov.items()})
    write_json(run / "params.json", {"method": "tsimcne", "data": {"path": str(store)}})
    bundle = tmp_path / "bundle.js"
    bundle.write_text("/* stand-in */")
    index = build_viewer(run, images=np.zeros((5, 8, 8, 3), np.uint8), bundle=bundle)
    text = (index.parent / "data.js").read_text()
    assert '"slides": {"slide 1": {"file": "slides/00000.png", "width": 64, "height": 48, "scale": 16.0}}' in text
    assert (index.parent / "slides/00000.png").is_file()
