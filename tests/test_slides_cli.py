"""`medcne tile`: slides into a store with thumbnails and provenance, resume, labels, workers, hostile slides."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openslide")
pytest.importorskip("tifffile")

from medcne.cli import main  # noqa: E402
from medcne.datasets.store import open_store  # noqa: E402
from slidehelpers import mosaic, tissue_blob, write_slide  # noqa: E402


def tile(*args) -> int:
    return main(["tile", "--quiet", "--tile-size", "28", *map(str, args)])


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture()
def blood_slide(tmp_path):
    level0, where, images, labels = mosaic()
    return write_slide(tmp_path / "blood.tiff", level0, mpp=0.25), where, images


def test_a_mosaic_becomes_a_store_of_its_blood_cells_with_provenance_and_thumbnail(tmp_path, blood_slide):
    path, where, images = blood_slide
    out = tmp_path / "tiles"
    assert tile(path, "--out", out, "--mpp", "1.0") == 0
    data = open_store(out)
    assert len(data) == len(where) and data.image_shape == (28, 28, 3) and data.labels is None
    prov = data.provenance
    assert set(prov) >= {"slide", "level", "x", "y", "mpp", "tile_size"}
    cells = (prov["y"] // 112 * 8 + prov["x"] // 112).tolist()
    order = (where[:, 0] * 8 + where[:, 1]).tolist()
    np.testing.assert_array_equal(np.asarray(data.images), images[[order.index(c) for c in cells]])
    assert set(prov["slide"].tolist()) == {"blood"} and data.ids[0].startswith("blood/")
    info = json.loads((out / "thumbnails" / "blood.json").read_text())
    assert info == {"slide": "blood", "width": 896, "height": 896, "scale": info["scale"]}
    from PIL import Image

    with Image.open(out / "thumbnails" / "blood.png") as thumb:
        assert max(thumb.size) <= 1024 and thumb.size[0] * info["scale"] == pytest.approx(896)


def test_a_rerun_resumes_and_a_new_slide_is_appended(tmp_path, blood_slide, capsys):
    path = blood_slide[0]
    out = tmp_path / "tiles"
    assert tile(path, "--out", out) == 0
    manifest = (out / "manifest.json").stat().st_mtime_ns if (out / "manifest.json").exists() else None
    capsys.readouterr()
    assert tile(path, "--out", out) == 0
    assert "1 already there" in capsys.readouterr().out
    if manifest is not None:
        assert (out / "manifest.json").stat().st_mtime_ns == manifest
    other = write_slide(tmp_path / "other.tiff", tissue_blob(), mpp=0.25)
    assert tile(path, other, "--out", out) == 0
    slides = set(open_store(out).provenance["slide"].tolist())
    assert slides == {"blood", "other"}
    assert tile(path, "--out", out, "--tile-size", "32") == 2  # the store holds 28-pixel tiles
    one_line(capsys)


def test_region_annotations_label_tiles_and_outside_ones_are_dropped(tmp_path, blood_slide):
    path, where, _ = blood_slide
    r, c = (int(v) for v in where[0])
    box = [[c * 112, r * 112], [c * 112 + 112, r * 112], [c * 112 + 112, r * 112 + 112], [c * 112, r * 112 + 112]]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "blood.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [box + box[:1]]},
         "properties": {"classification": {"name": "Tumor"}}}]}))
    out = tmp_path / "tiles"
    assert tile(path, "--out", out, "--annotations", notes, "--unlabelled", "drop") == 0
    data = open_store(out)
    assert len(data) == 1 and data.class_names == ["Tumor"]
    assert (data.provenance["x"][0], data.provenance["y"][0]) == (c * 112, r * 112)


def test_slide_labels_from_a_csv(tmp_path, blood_slide):
    labels = tmp_path / "labels.csv"
    labels.write_text("slide,label\nblood,leukaemia\n")
    out = tmp_path / "tiles"
    assert tile(blood_slide[0], "--out", out, "--labels", labels) == 0
    data = open_store(out)
    assert data.class_names == ["leukaemia"] and (data.labels == 0).all()


def damage(path, level: int = 1):
    """Garble the second half of one level's tiles: headers intact, those tiles no longer decode."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[level]
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    data = bytearray(path.read_bytes())
    for offset, count in spans[len(spans) // 2:]:
        data[offset: offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    return path


def truncate(path):
    """Keep the first 3000 bytes, as an interrupted copy does."""
    path.write_bytes(path.read_bytes()[:3000])
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda d: damage(write_slide(d / "bad.tiff", mosaic(n=40)[0])), "bad.tiff"),
    (lambda d: truncate(write_slide(d / "bad.tiff", tissue_blob())), "bad.tiff"),
    (lambda d: write_slide(d / "bad.tiff", np.full((256, 256, 3), 255, np.uint8)), "no tissue"),
    (lambda d: write_slide(d / "bad.tiff", tissue_blob(), mpp=None), "states no resolution"),
])
def test_a_hostile_slide_is_one_line_and_writes_nothing(tmp_path, capsys, make, fragment):
    bad = make(tmp_path)
    out = tmp_path / "tiles"
    assert tile(bad, "--out", out, "--mpp", "0.5") == 2
    assert fragment in one_line(capsys)
    assert not out.exists()


def test_skip_bad_notes_the_slide_and_keeps_the_others(tmp_path, blood_slide, capsys):
    bad = damage(write_slide(tmp_path / "bad.tiff", mosaic(n=40)[0]))
    out = tmp_path / "tiles"
    assert tile(bad, blood_slide[0], "--out", out, "--mpp", "0.5", "--skip-bad") == 0
    assert "skipped: " in capsys.readouterr().err
    assert set(open_store(out).provenance["slide"].tolist()) == {"blood"}
    assert sorted(p.name for p in (out / "thumbnails").iterdir()) == ["blood.json", "blood.png"]


def test_invalid_annotations_are_one_line_and_write_nothing(tmp_path, blood_slide, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "blood.geojson").write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                                         '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, '
                                         '"properties": {"classification": {"name": "Tumor"}}}]}')
    out = tmp_path / "tiles"
    assert tile(blood_slide[0], "--out", out, "--annotations", notes) == 2
    assert "blood.geojson: feature 0" in one_line(capsys)
    assert not out.exists()


def test_without_openslide_one_line_names_the_extra(tmp_path, blood_slide, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openslide", None)
    assert tile(blood_slide[0], "--out", tmp_path / "tiles") == 2
    assert "medcne[slides]" in one_line(capsys)


@pytest.mark.slow
def test_workers_give_the_same_store_as_one_process(tmp_path, blood_slide):
    other = write_slide(tmp_path / "other.tiff", mosaic(seed=5)[0], mpp=0.25)
    one, two = tmp_path / "one", tmp_path / "two"
    assert tile(blood_slide[0], other, "--out", one) == 0
    assert tile(blood_slide[0], other, "--out", two, "--workers", "2") == 0
    a, b = open_store(one), open_store(two)
    key = lambda d: np.argsort(d.ids)  # noqa: E731 - parts may be committed in either order
    np.testing.assert_array_equal(np.asarray(a.images)[key(a)], np.asarray(b.images)[key(b)])
    assert sorted(a.ids) == sorted(b.ids)
    assert not list(tmp_path.glob(".two.tiling-*"))  # the scratch folder is gone


def test_progress_bars_count_slides_and_tiles(tmp_path, blood_slide, capsys):
    path, where, _ = blood_slide
    assert main(["tile", "--tile-size", "28", str(path), "--out", str(tmp_path / "tiles")]) == 0
    err = capsys.readouterr().err
    assert "slides: 100%" in err and f"{len(where)}/{len(where)}" in err


@pytest.mark.slow
def test_workers_report_a_bad_slide_in_one_line_or_skip_it(tmp_path, blood_slide, capsys):
    bad = damage(write_slide(tmp_path / "bad.tiff", mosaic(n=40)[0]))
    out = tmp_path / "tiles"
    assert tile(bad, blood_slide[0], "--out", out, "--mpp", "0.5", "--workers", "2") == 2
    assert "bad.tiff" in one_line(capsys)
    assert tile(bad, blood_slide[0], "--out", out, "--mpp", "0.5", "--workers", "2", "--skip-bad") == 0
    assert "skipped: " in capsys.readouterr().err
    assert set(open_store(out).provenance["slide"].tolist()) == {"blood"}
    assert not list(tmp_path.glob(".tiles.tiling-*"))


@pytest.mark.slow
def test_tiles_go_through_info_fit_qc_and_view(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    a = write_slide(tmp_path / "a.tiff", mosaic(seed=1)[0])
    b = write_slide(tmp_path / "b.tiff", mosaic(seed=2)[0])
    labels = tmp_path / "labels.csv"
    labels.write_text("slide,label\na,left\nb,right\n")
    tiles, run = tmp_path / "tiles", tmp_path / "run"
    assert tile(a, b, "--out", tiles, "--labels", labels) == 0
    n_tiles = int(capsys.readouterr().out.split()[0])
    assert main(["info", str(tiles)]) == 0
    assert f"images:   {n_tiles}" in capsys.readouterr().out
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["fit", str(tiles), "--out", str(run), "--size", "16", "--epochs", "1,1,1", "--warmup", "0,0,0",
                     "--width", "4", "--batch-size", "16", "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(n)
    assert main(["qc", str(run)]) == 0
    assert main(["view", str(run), "--out", str(tmp_path / "view"), "--thumb", "6"]) == 0
    with np.load(run / "embedding.npz") as emb:
        assert len(emb["embedding"] if "embedding" in emb.files else emb[emb.files[0]]) == n_tiles
        assert set(np.unique(emb["prov_slide"])) == {"a", "b"}  # every tile keeps where it came from
    qc_header = (run / "qc.csv").read_text().splitlines()[0].split(",")
    assert {"slide", "level", "mpp", "tile_size"} <= set(qc_header)
    # The page carries each tile's slide and position, and a copy of both slides' thumbnails for the box.
    assert len(list((tmp_path / "view" / "slides").glob("*.png"))) == 2


def test_magnification_on_a_slide_stating_only_mpp_is_noted(tmp_path, blood_slide, capsys):
    out = tmp_path / "tiles"
    assert tile(blood_slide[0], "--out", out, "--magnification", "10") == 0
    assert "10x taken as 1 um/px" in capsys.readouterr().err
    assert open_store(out).provenance["mpp"][0] == 1.0
