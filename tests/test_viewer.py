"""The viewer's build (sprites, data file, QC file, folder safety, CLI); no browser needed.

A stand-in bundle file is used so that these run without npm; the browser
tests in test_viewer_browser.py use the real one.
"""

from __future__ import annotations

import hashlib
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
from medcne.viewer import build_viewer, plan_layout, sprites, write_sprites
from medcne.viewer.pagefolder import MARKER
from medcne.viewer.sprites import make_tiles, thumbnail_sample, thumbnail_size


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


def test_a_thumbnail_sample_stays_within_the_pixel_budget_and_takes_the_given_points_first():
    assert thumbnail_sample(1000, 10, pixels=100 * 1000) is None  # all fit
    keep = thumbnail_sample(1000, 10, first=[999, 3, 3, 500], pixels=100 * 50)
    assert len(keep) == 50 and np.all(np.diff(keep) > 0) and {3, 500, 999} <= set(keep.tolist())
    np.testing.assert_array_equal(keep, thumbnail_sample(1000, 10, first=[999, 3, 500], pixels=100 * 50))
    assert len(set(keep) & set(thumbnail_sample(1000, 10, pixels=100 * 50, seed=1))) < 50  # seeded draw
    assert thumbnail_sample(1000, 10, first=range(100), pixels=100 * 50).tolist() == list(range(50))


@pytest.mark.parametrize("max_side", [24, 80])  # several sheets per block of images read, or one
def test_sprite_sheets_of_a_sample_hold_the_sampled_images_in_order(tmp_path, max_side, monkeypatch):
    monkeypatch.setattr(sprites, "chunk_rows", lambda nbytes: 1000)  # 5 blocks of images read
    images = np.random.default_rng(2).integers(0, 256, size=(5000, 8, 8, 3), dtype=np.uint8)
    keep = np.sort(np.random.default_rng(3).choice(5000, 40, replace=False))
    seen = np.zeros(5000, dtype=int)
    layout, sheets = write_sprites(images, tmp_path / "sprites", 8, max_side=max_side, keep=keep,
                                   on_batch=lambda start, b: seen.__setitem__(slice(start, start + len(b)), 1))
    assert seen.all()  # every image passes on_batch (the page's brightness column needs all of them)
    assert layout.n == 40 and len(sheets) == layout.n_sheets
    for k in [0, 9, 10, 39]:
        s, col, row = layout.locate(k)
        sheet = np.asarray(Image.open(tmp_path / sheets[s]["file"]))
        np.testing.assert_array_equal(sheet[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8], images[keep[k]])


def test_a_page_of_more_images_than_the_budget_holds_a_sample_with_qcs_pairs(tmp_path, fake_bundle, monkeypatch):
    monkeypatch.setattr(sprites, "SPRITE_PIXELS", 5 * 12 * 12)  # 5 thumbnails of 12 px
    run, images = make_run(tmp_path / "run", n=50)
    labels = np.load(run / "embedding.npz")["labels"]
    names = ["a", "b", "c"]
    write_qc(run, [f"{i},{names[labels[i]]},0.1,,0,{dup},0.01,{int(bool(dup))},0.2,0" for i, dup in
                   [(7, "41"), (8, "")]] + [f"41,{names[labels[41]]},0.1,,0,,,0,4.0,1"])
    build_viewer(run, bundle=fake_bundle)
    data = read_data(run / "viewer")
    points = data["sprites"]["points"]
    assert len(points) == 5 and points == sorted(points) and {7, 41} <= set(points)
    bright = images.reshape(50, -1).mean(axis=1) / 255  # still measured on every image
    np.testing.assert_allclose(data["columns"]["brightness"], bright, rtol=1e-5)
    sheet = np.asarray(Image.open(run / "viewer" / data["sprites"]["sheets"][0]["file"]))
    k = points.index(41)
    cols = data["sprites"]["cols"]
    row, col = divmod(k, cols)
    np.testing.assert_array_equal(sheet[row * 12:(row + 1) * 12, col * 12:(col + 1) * 12], images[41])


def test_large_images_are_shrunk_and_letterboxed():
    images = np.full((2, 96, 48, 3), 200, dtype=np.uint8)
    assert thumbnail_size((96, 48, 3)) == 64
    tiles = make_tiles(images, 64)
    assert tiles.shape == (2, 64, 64, 3)
    assert tiles[0, :, 32].min() == 200  # the image column in the middle
    assert tiles[0, :, 0].max() == 0  # black bars left and right


@pytest.mark.parametrize("tile, max_side, got", [(5000, 4096, "5000"), (0, 4096, "0"), (65, 64, "65"),
                                                 (2.5, 4096, "2.5"), (True, 4096, "True")])
def test_thumbnail_size_outside_the_sheet_is_refused(tile, max_side, got):
    # The one check of the side (sprites.check_thumb), as build_viewer gives it: the name, the range, the value.
    message = (f"`thumb` must be a thumbnail side from 1 to {max_side} pixels (the side of a sprite sheet); "
               f"got {got}")
    with pytest.raises(MedcneError) as exc:
        plan_layout(10, tile, max_side=max_side)
    assert str(exc.value) == message
    with pytest.raises(MedcneError) as exc:
        sprites.check_thumb(tile, max_side)
    assert str(exc.value) == message


def test_thumbnail_sides_in_the_range_are_taken():
    assert plan_layout(10, 1).tile == 1
    assert plan_layout(10, 4096).tile == 4096
    assert plan_layout(10, np.int64(64), max_side=64).tile == 64


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
    assert set(data["labels"]) == {0} and data["noLabel"] == 0  # every image is one to suggest a label for
    np.testing.assert_allclose(data["columns"]["score"], score, atol=1e-6)


@pytest.mark.parametrize("names, no_label", [(["a", "b", "c"], -1), (["a", "unlabelled", "c"], 1)])
def test_the_page_knows_the_class_that_means_no_label(tmp_path, fake_bundle, names, no_label):
    """Label suggestion in the page labels only the images of the class 'unlabelled' (the readers'
    class for images without a label); a run without it has none to suggest a label for."""
    run, _ = make_run(tmp_path / "run", n=6)
    emb = np.load(run / "embedding.npz")
    write_embedding(run, emb["embedding"], emb["ids"], emb["labels"], names)
    build_viewer(run, bundle=fake_bundle, images=np.zeros((6, 12, 12, 3), np.uint8))
    data = read_data(run / "viewer")
    assert data["classNames"] == names and data["noLabel"] == no_label


def test_rebuild_replaces_the_old_page_with_overwrite(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "page"
    build_viewer(run, out, bundle=fake_bundle)
    marker = json.loads((out / MARKER).read_text())
    assert marker["format"] == "medcne-viewer" and marker["version"] == 2
    index = (out / "index.html").read_bytes()
    assert marker["files"]["index.html"] == {"size": len(index), "sha256": hashlib.sha256(index).hexdigest()}
    assert set(marker["files"]) == {"index.html", "data.js", "medcne-viewer.js", "sprites/sheet-000.png"}
    build_viewer(run, out, bundle=fake_bundle, overwrite=True)
    assert (out / "index.html").exists() and (out / MARKER).exists()
    (out / "stale.txt").write_text("old")  # a file medcne did not write: never deleted with the page
    with pytest.raises(MedcneError, match="stale.txt"):
        build_viewer(run, out, bundle=fake_bundle, overwrite=True)
    assert (out / "stale.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page", "run"]


def test_a_viewer_folder_is_not_replaced_without_overwrite(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    build_viewer(run, bundle=fake_bundle)  # the default folder, RUN/viewer
    page = (run / "viewer" / "index.html").read_text()
    (run / "viewer" / "mine.txt").write_text("kept")
    with pytest.raises(MedcneError, match=r"viewer: holds a viewer built before; pass `overwrite`"):
        build_viewer(run, bundle=fake_bundle)
    assert (run / "viewer" / "mine.txt").read_text() == "kept"
    assert (run / "viewer" / "index.html").read_text() == page
    assert not [p for p in run.iterdir() if p.name.startswith(".viewer")]  # temp folder gone


def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_folder_with_an_index_html_is_never_replaced(tmp_path, fake_bundle, overwrite):
    # What happened once: a folder with index.html, notes.txt and photos/ lost notes and photos.
    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "site"
    (out / "photos").mkdir(parents=True)
    (out / "index.html").write_text("<h1>my page</h1>")
    (out / "notes.txt").write_text("notes")
    (out / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    before = _tree(out)
    with pytest.raises(MedcneError, match=r"site: exists and is not a viewer folder .*never replaced"):
        build_viewer(run, out, bundle=fake_bundle, overwrite=overwrite)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "site"]


def test_an_empty_folder_is_used(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    assert build_viewer(run, tmp_path / "empty", bundle=fake_bundle) == tmp_path / "empty" / "index.html"


def test_a_file_as_out_is_refused(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    (tmp_path / "page").write_text("x")
    with pytest.raises(MedcneError, match="exists and is not a folder"):
        build_viewer(run, tmp_path / "page", bundle=fake_bundle, overwrite=True)
    assert (tmp_path / "page").read_text() == "x"


def test_a_folder_that_is_not_a_viewer_is_not_replaced(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    with pytest.raises(MedcneError, match="not a viewer folder"):
        build_viewer(run, out, bundle=fake_bundle)
    assert (out / "thesis.tex").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "run"]  # temp folder gone


def test_run_key_names_the_run_and_its_ids(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", n=5)
    build_viewer(run, bundle=fake_bundle, images=np.zeros((5, 12, 12, 3), np.uint8))
    digest = hashlib.sha256(b"0\n1\n2\n3\n4").hexdigest()[:16]
    assert read_data(run / "viewer")["runKey"] == f"run|tsimcne|5|{digest}"
    # Other ids (or the same ids in another order): another key, so stored annotations stay apart.
    emb = np.load(run / "embedding.npz")
    write_embedding(run, emb["embedding"], ["1", "0", "2", "3", "4"], emb["labels"], ["a", "b", "c"])
    build_viewer(run, bundle=fake_bundle, images=np.zeros((5, 12, 12, 3), np.uint8), overwrite=True)
    assert read_data(run / "viewer")["runKey"] != f"run|tsimcne|5|{digest}"


# -- qc.csv --------------------------------------------------------------------------------
QC_HEADER = ("id,label,label_issue_score,suggested_label,likely_label_error,duplicate_id,"
             "duplicate_distance,likely_duplicate,outlier_score,likely_outlier")


def write_qc(run, rows, header=QC_HEADER):
    (run / "qc.csv").write_text("\n".join([header, *rows]) + "\n")


def test_qc_csv_reaches_the_page(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", n=6)  # labels of make_run(seed 0), by id: see below
    labels = np.load(run / "embedding.npz")["labels"]
    names = ["a", "b", "c"]
    other = names[(labels[1] + 1) % 3]
    write_qc(run, [
        # extra column at the end is ignored; rows in any order; id 5 has no row
        f"1,{names[labels[1]]},0.9,{other},1,4,0.01,1,0.2,0,x",
        f"0,{names[labels[0]]},0.1,{names[labels[0]]},0,,,0,3.5,1,x",
        f"2,{names[labels[2]]},0.3,,0,1,0.5,0,0.1,0,x",
        f"3,{names[labels[3]]},,,0,,0.7,0,0.0,0,x",
        f"4,{names[labels[4]]},0.2,,0,1,0.01,1,0.4,0,x",
    ], header=QC_HEADER + ",notes")
    build_viewer(run, bundle=fake_bundle, images=np.zeros((6, 12, 12, 3), np.uint8))
    data = read_data(run / "viewer")
    cols = data["columns"]
    assert cols["label_issue_score"] == [0.1, 0.9, 0.3, None, 0.2, None]
    assert cols["duplicate_distance"] == [None, 0.01, 0.5, 0.7, 0.01, None]
    assert cols["outlier_score"] == [3.5, 0.2, 0.1, 0.0, 0.4, None]
    assert "notes" not in cols and "label" not in cols
    qc = data["qc"]
    assert qc["flags"] == {"likely_label_error": [1], "likely_duplicate": [1, 4], "likely_outlier": [0]}
    # Only a suggestion that differs from the run's label is kept (id 0's equals its label).
    assert qc["suggestedNames"] == [other]
    assert qc["suggested"] == [-1, 0, -1, -1, -1, -1]
    # The nearest image is named only where qc.csv flags a likely duplicate: id 2's nearest
    # (id 1, at 0.5) is not one, so it gets none.
    assert qc["duplicate"] == [-1, 4, -1, -1, 1, -1]


def test_qc_csv_of_ids_and_classes_with_spaces_reaches_the_page(tmp_path, fake_bundle):
    """qc.csv as medcne writes it, for ids and class names that begin or end with a space (a folder's
    name can): the page matches them as written, and a suggestion equal to the label is no suggestion."""
    from types import SimpleNamespace

    from medcne.runs import read_run
    from medcne.runs.curate import write_qc

    run, _ = make_run(tmp_path / "run", n=4)
    emb = np.load(run / "embedding.npz")
    labels = np.array([0, 1, 0, 1])
    ids = [" b/0.png", " b/1.png", "\t=2+2", "c /3.png"]
    write_embedding(run, emb["embedding"], ids, labels, [" basophil", "lymphocyte "])
    flag = np.array([0, 0, 1, 1])
    write_qc(read_run(run, finished=False), SimpleNamespace(
        label_issue_score=np.zeros(4), suggested_label=np.array([0, 0, 0, 1]), likely_label_error=np.zeros(4, int),
        duplicate_index=np.array([1, 0, 3, 2]), duplicate_distance=np.zeros(4), likely_duplicate=flag,
        outlier_score=np.zeros(4), likely_outlier=np.zeros(4, int)))
    build_viewer(run, bundle=fake_bundle, images=np.zeros((4, 12, 12, 3), np.uint8))
    qc = read_data(run / "viewer")["qc"]
    assert qc["duplicate"] == [-1, -1, 3, 2]
    assert qc["suggestedNames"] == [" basophil"] and qc["suggested"] == [-1, 0, -1, -1]  # only id 1's differs


def test_no_qc_csv_no_qc(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run")
    build_viewer(run, bundle=fake_bundle)
    data = read_data(run / "viewer")
    assert data["qc"] is None and "outlier_score" not in data["columns"]


@pytest.mark.parametrize("rows, header, problem", [
    (["0,a,0.1,,0,,0.2,0,0.3,0"], "id,label,label_issue_score,likely_label_error",
     r"qc.csv: missing columns suggested_label, duplicate_id, duplicate_distance, likely_duplicate"),
    (["0,a,high,,0,,0.2,0,0.3,0"], QC_HEADER, r"qc.csv, line 2: label_issue_score 'high' is not a number"),
    (["0,a,0.1,,0,,0.2,0,0.3,0", "1,a,0.1,,0,,0.2,0,0.3,yes"], QC_HEADER,
     r"qc.csv, line 3: likely_outlier must be 0 or 1; got 'yes'"),
    (["999,a,0.1,,0,,0.2,0,0.3,0"], QC_HEADER, r"qc.csv, line 2: id '999' is not in this run"),
    (["0,a,0.1,,0,,0.2,0,0.3,0", "0,a,0.1,,0,,0.2,0,0.3,0"], QC_HEADER, r"line 3: id '0' appears twice"),
    (["0,a,0.1,,0,77,0.2,1,0.3,0"], QC_HEADER, r"line 2: duplicate_id '77' is not an id of this run"),
])
def test_bad_qc_csv_is_one_clear_line(tmp_path, fake_bundle, rows, header, problem):
    run, _ = make_run(tmp_path / "run")
    write_qc(run, rows, header)
    with pytest.raises(MedcneError, match=problem) as e:
        build_viewer(run, bundle=fake_bundle)
    assert str(run / "qc.csv") in str(e.value) and "\n" not in str(e.value)
    assert not (run / "viewer").exists()


def test_missing_bundle_says_how_to_build_it(tmp_path):
    run, _ = make_run(tmp_path / "run")
    with pytest.raises(MedcneError, match="make viewer-assets"):
        build_viewer(run, bundle=tmp_path / "nope.js")


def test_embedding_of_4_dimensions_is_refused(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", dims=4)
    with pytest.raises(MedcneError, match="2-D or 3-D embedding.*shape \\(50, 4\\)"):
        build_viewer(run, bundle=fake_bundle)


def test_3d_embedding_reaches_the_page_with_its_z(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", n=7, dims=3)
    build_viewer(run, bundle=fake_bundle)
    data = read_data(run / "viewer")
    emb = np.load(run / "embedding.npz")["embedding"]
    assert data["dim"] == 3
    for k, axis in enumerate("xyz"):
        np.testing.assert_allclose(data[axis], emb[:, k], rtol=1e-5)


def test_2d_embedding_has_no_z(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", n=7)
    build_viewer(run, bundle=fake_bundle)
    data = read_data(run / "viewer")
    assert data["dim"] == 2 and "z" not in data
    assert data["source"] == {"columns": {}, "slides": {}}  # no provenance, nothing to show


def test_provenance_columns_reach_the_page_as_text_not_colours(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", n=4)
    z = dict(np.load(run / "embedding.npz"))
    z.update(prov_series=np.array(["CT 1", "CT 1", "MR 2", "MR 2"]), prov_slice=np.arange(4),
             prov_x=np.array([0.0, 123456789.0, np.nan, 2.5]), quality=np.arange(4.0))
    np.savez(run / "embedding.npz", **z)
    build_viewer(run, bundle=fake_bundle)
    data = read_data(run / "viewer")
    assert data["source"]["columns"] == {"series": {"names": ["CT 1", "MR 2"], "codes": [0, 0, 1, 1]},
                                         "slice": [0, 1, 2, 3],
                                         "x": [0.0, 123456789.0, None, 2.5]}
    assert set(data["columns"]) == {"brightness", "quality"}  # prov_* are not colour columns


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


def test_cli_view_refuses_a_users_folder_in_one_line(tmp_path, fake_bundle, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "BUNDLE", fake_bundle)
    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "site"
    (out / "photos").mkdir(parents=True)
    (out / "index.html").write_text("<h1>my page</h1>")
    (out / "notes.txt").write_text("notes")
    before = _tree(out)
    for extra in ([], ["--overwrite"]):
        assert main(["view", str(run), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(out) in err and "choose another --out" in err
    assert _tree(out) == before


def test_cli_view_overwrite_replaces_its_own_viewer(tmp_path, fake_bundle, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "BUNDLE", fake_bundle)
    run, _ = make_run(tmp_path / "run")
    assert main(["view", str(run)]) == 0
    (run / "viewer" / "stale.txt").write_text("old")
    capsys.readouterr()
    assert main(["view", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and str(run / "viewer") in err
    assert (run / "viewer" / "stale.txt").exists()
    assert main(["view", str(run), "--overwrite"]) == 2  # stale.txt is not medcne's: never deleted
    assert "stale.txt" in capsys.readouterr().err and (run / "viewer" / "stale.txt").exists()
    (run / "viewer" / "stale.txt").unlink()
    assert main(["view", str(run), "--overwrite"]) == 0


def test_cli_view_bad_qc_csv_is_one_line(tmp_path, fake_bundle, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "BUNDLE", fake_bundle)
    run, _ = make_run(tmp_path / "run")
    write_qc(run, ["0,a,0.1,,0,,0.2,0,not-a-number,0"])
    assert main(["view", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outlier_score 'not-a-number' is not a number" in err


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
