"""The viewer's build (sprites, data file, folder swap, CLI); no browser needed.

A stand-in bundle file is used so that these run without npm; the browser
tests in test_viewer_browser.py use the real one.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from medcne.cli import main
from medcne.errors import MedcneError
from medcne.io import write_json
from medcne.runs import write_embedding
from medcne.viewer import build as build_mod
from medcne.viewer import build_viewer, plan_layout, write_sprites
from medcne.viewer.sprites import make_tiles, thumbnail_size


def read_data(folder) -> dict:
    """data.js as JSON: ``window.MEDCNE_DATA = JSON.parse('...');`` with the JS string unescaped."""
    text = (folder / "data.js").read_text()
    prefix, suffix = "window.MEDCNE_DATA = JSON.parse('", "');\n"
    assert text.startswith(prefix) and text.endswith(suffix)
    return json.loads(re.sub(r"\\(.)", r"\1", text[len(prefix):-len(suffix)]))


@pytest.fixture()
def fake_bundle(tmp_path_factory):
    p = tmp_path_factory.mktemp("bundle") / "bundle.js"
    p.write_text("/* stand-in */")
    return p


def make_run(folder, n=50, size=(12, 12, 3), labeled=True, seed=0, dims=2):
    """A run folder over an in-test .npz dataset; returns (folder, images)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *size), dtype=np.uint8)
    labels = rng.integers(0, 3, size=n)
    data = folder / "data.npz"
    folder.mkdir(parents=True, exist_ok=True)
    if labeled:
        np.savez(data, images=images, labels=labels)
    else:
        np.savez(data, images=images)
    emb = rng.normal(size=(n, dims)).astype(np.float32)
    ids = [str(i) for i in range(n)]
    write_embedding(folder, emb, ids, labels if labeled else None, ["a", "b", "c"] if labeled else None)
    write_json(folder / "params.json", {"method": "tsimcne", "data": {"path": str(data)}})
    return folder, images


# -- sprites ---------------------------------------------------------------------
def test_layout_small_set_is_one_square_sheet():
    lay = plan_layout(2000, 28)
    assert lay.n_sheets == 1
    assert lay.cols == 45  # ceil(sqrt(2000))
    width, height = lay.sheet_shape(0)
    assert (width, height) == (45 * 28, 45 * 28)


def test_layout_large_set_uses_several_sheets_within_the_texture_limit():
    lay = plan_layout(300_000, 28, max_side=4096)
    assert lay.n_sheets == 15  # 146 * 146 = 21,316 tiles per sheet
    for s in range(lay.n_sheets):
        assert max(lay.sheet_shape(s)) <= 4096
    assert lay.locate(21_316) == (1, 0, 0)
    assert lay.locate(21_316 + 147) == (1, 1, 1)
    last = lay.sheet_range(lay.n_sheets - 1)
    assert last[1] == 300_000


@pytest.mark.parametrize("channels", [1, 3])
def test_sprite_sheets_hold_each_image_at_its_place(tmp_path, channels):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(23, 8, 8, channels), dtype=np.uint8)
    layout, sheets = write_sprites(images, tmp_path / "sprites", 8, max_side=24)  # 3x3 tiles a sheet
    assert layout.n_sheets == 3 and len(sheets) == 3
    assert sheets[2] == {"file": "sprites/sheet-002.png", "width": 24, "height": 16}
    for i in [0, 4, 9, 17, 22]:
        s, col, row = layout.locate(i)
        sheet = np.asarray(Image.open(tmp_path / sheets[s]["file"]))
        tile = sheet[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8]
        np.testing.assert_array_equal(tile.reshape(images[i].shape), images[i])


def test_large_images_are_shrunk_and_letterboxed():
    images = np.full((2, 96, 48, 3), 200, dtype=np.uint8)
    assert thumbnail_size((96, 48, 3)) == 64
    tiles = make_tiles(images, 64)
    assert tiles.shape == (2, 64, 64, 3)
    assert tiles[0, :, 32].min() == 200  # the image column in the middle
    assert tiles[0, :, 0].max() == 0  # black bars left and right


def test_thumbnail_size_outside_the_sheet_is_refused():
    with pytest.raises(MedcneError, match="thumbnail size"):
        plan_layout(10, 5000)


# -- build -----------------------------------------------------------------------------
def test_build_writes_page_data_and_sprites(tmp_path, fake_bundle):
    run, images = make_run(tmp_path / "run")
    index = build_viewer(run, bundle=fake_bundle)
    out = run / "viewer"
    assert index == out / "index.html"
    page = index.read_text()
    assert '<script src="data.js"></script>' in page and 'src="medcne-viewer.js"' in page
    assert (out / "medcne-viewer.js").read_text() == "/* stand-in */"
    data = read_data(out)
    assert data["n"] == 50 and data["ids"] == [str(i) for i in range(50)]
    assert data["classNames"] == ["a", "b", "c"] and len(data["palette"]) == 3
    emb = np.load(run / "embedding.npz")
    np.testing.assert_allclose(data["x"], emb["embedding"][:, 0], rtol=1e-5)
    np.testing.assert_array_equal(data["labels"], emb["labels"])
    bright = images.reshape(50, -1).mean(axis=1) / 255
    np.testing.assert_allclose(data["columns"]["brightness"], bright, rtol=1e-5)
    sheet = Image.open(out / data["sprites"]["sheets"][0]["file"])
    assert sheet.size == (8 * 12, 7 * 12)  # 8 columns, 7 rows of 12 px tiles
    assert not [p for p in tmp_path.joinpath("run").iterdir() if p.name.startswith(".viewer")]


def test_awkward_ids_survive_the_data_file(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", n=4)
    ids = ["it's", 'a "b"', "back\\slash\\n", "é</script>"]
    emb = np.load(run / "embedding.npz")
    write_embedding(run, emb["embedding"], ids, emb["labels"], ["a", "b", "c"])
    build_viewer(run, bundle=fake_bundle, images=np.zeros((4, 12, 12, 3), np.uint8))
    data = read_data(run / "viewer")
    assert data["ids"] == ids
    assert "\n" not in (run / "viewer" / "data.js").read_text()[:-1]  # one line: a JS string literal


def test_unlabeled_run_and_extra_columns(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", labeled=False)
    score = np.linspace(0, 1, 50)
    build_viewer(run, tmp_path / "page", bundle=fake_bundle, columns={"score": score})
    data = read_data(tmp_path / "page")
    assert data["labeled"] is False and data["classNames"] == ["(no label)"]
    assert set(data["labels"]) == {0}
    np.testing.assert_allclose(data["columns"]["score"], score, atol=1e-6)


def test_rebuild_replaces_the_old_page(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "page"
    build_viewer(run, out, bundle=fake_bundle)
    (out / "stale.txt").write_text("old")
    build_viewer(run, out, bundle=fake_bundle)
    assert not (out / "stale.txt").exists() and (out / "index.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page", "run"]


def test_a_folder_that_is_not_a_viewer_is_not_replaced(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    with pytest.raises(MedcneError, match="not a viewer folder"):
        build_viewer(run, out, bundle=fake_bundle)
    assert (out / "thesis.tex").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "run"]  # temp folder gone


def test_missing_bundle_says_how_to_build_it(tmp_path):
    run, _ = make_run(tmp_path / "run")
    with pytest.raises(MedcneError, match="make viewer-assets"):
        build_viewer(run, bundle=tmp_path / "nope.js")


def test_embedding_that_is_not_2d_is_refused(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", dims=3)
    with pytest.raises(MedcneError, match="2-D embedding"):
        build_viewer(run, bundle=fake_bundle)


def test_embedding_with_nan_is_refused(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    z = dict(np.load(run / "embedding.npz"))
    z["embedding"][3, 1] = np.nan
    write_embedding(run, z["embedding"], z["ids"], z["labels"], z["class_names"])
    with pytest.raises(MedcneError, match="1 points .* not finite.*id '3'"):
        build_viewer(run, bundle=fake_bundle)


def test_images_that_do_not_match_are_refused(tmp_path, fake_bundle):
    run, images = make_run(tmp_path / "run")
    with pytest.raises(MedcneError, match="51 images for 50 points"):
        build_viewer(run, images=np.concatenate([images, images[:1]]), bundle=fake_bundle)


# -- command line ---------------------------------------------------------------------------
def test_cli_view_prints_the_page(tmp_path, fake_bundle, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "BUNDLE", fake_bundle)
    run, _ = make_run(tmp_path / "run")
    assert main(["view", str(run), "--out", str(tmp_path / "v"), "--thumb", "6"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "v" / "index.html")
    assert read_data(tmp_path / "v")["sprites"]["tile"] == 6


def test_cli_view_missing_bundle_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "BUNDLE", tmp_path / "missing.js")
    run, _ = make_run(tmp_path / "run")
    assert main(["view", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "make viewer-assets" in err


def test_cli_view_not_a_run(tmp_path, fake_bundle, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "BUNDLE", fake_bundle)
    assert main(["view", str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
