"""Adding slides to a tile store: every GeoJSON read first, parts that only share a slide's name,
the store's record of its scale and of each slide's options, an emptied store, flag names in messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openslide")
pytest.importorskip("tifffile")

from medcne.cli import main  # noqa: E402
from medcne.datasets.slides import SlideError, SlideGeometry, choose_scale  # noqa: E402
from medcne.datasets.slides_plan import TileOptions  # noqa: E402
from medcne.datasets.slides_tiling import tile_slides  # noqa: E402
from medcne.datasets.store_read import open_store  # noqa: E402
from slidehelpers import one_line, tile, tissue_blob, write_slide  # noqa: E402


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes: equal snapshots mean nothing was written or removed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def slides(tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    write_slide(folder / "a.tiff", tissue_blob(), mpp=0.25)
    write_slide(folder / "b.tiff", tissue_blob(box=(64, 64, 320, 448)), mpp=0.25)
    return folder


RING = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},
        "properties": {"classification": {"name": "Tumor"}}}


@pytest.mark.parametrize("text, fragment", [
    (json.dumps({"type": "FeatureCollection", "features": [RING]}), "fewer than 3 distinct points"),
    ("{not json", "cannot be read as GeoJSON"),
    (json.dumps([dict(RING, geometry={"type": "Point", "coordinates": [1, 2]})]), "not a polygon"),
    (json.dumps([dict(RING, geometry=None)]), "not a GeoJSON feature with a geometry"),
])
def test_a_bad_geojson_of_a_later_slide_stops_the_run_before_any_slide_is_written(tmp_path, slides, capsys,
                                                                                   text, fragment):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "b.geojson").write_text(text)  # slide a comes first and has no annotations
    out = tmp_path / "tiles"
    assert tile(slides, "--out", out, "--annotations", notes) == 2
    line = one_line(capsys)
    assert "b.geojson" in line and fragment in line
    assert not out.exists()
    assert tile(slides / "a.tiff", "--out", out) == 0  # into an existing store: it is left as it was
    before = snapshot(out)
    assert tile(slides, "--out", out, "--annotations", notes) == 2
    assert snapshot(out) == before


def test_a_part_that_only_shares_a_slide_name_is_refused_not_taken_as_done(tmp_path, capsys):
    images = tmp_path / "imgs.npz"
    np.savez(images, images=np.zeros((4, 28, 28, 3), np.uint8), labels=np.arange(4))
    out = tmp_path / "store"
    assert main(["convert", str(images), "--out", str(out), "--part", "imgs"]) == 0
    clash = tmp_path / "clash"
    clash.mkdir()
    write_slide(clash / "imgs.tiff", tissue_blob(), mpp=0.25)
    before = snapshot(out)
    capsys.readouterr()
    assert tile(clash, "--out", out) == 2
    line = one_line(capsys)
    assert "part named 'imgs'" in line and "not the tiles of slide" in line
    assert "--out" in line and "rename the slide file" in line
    assert snapshot(out) == before


def test_a_store_of_another_scale_is_refused_naming_its_own(tmp_path, slides, capsys):
    out = tmp_path / "tiles"
    assert tile(slides / "a.tiff", "--out", out, "--mpp", "1.0") == 0
    before = snapshot(out)
    capsys.readouterr()
    assert tile(slides / "b.tiff", "--out", out, "--mpp", "0.5") == 2
    assert "the store holds tiles at --mpp 1, not --mpp 0.5; add slides with --mpp 1" in one_line(capsys)
    assert tile(slides / "b.tiff", "--out", out, "--magnification", "10") == 2
    assert "not --magnification 10" in one_line(capsys)
    assert snapshot(out) == before
    assert tile(slides / "b.tiff", "--out", out) == 0  # the default, 1.0, is the store's


def test_a_store_made_before_the_record_is_read_as_before(tmp_path, slides):
    out = tmp_path / "tiles"
    assert tile(slides / "a.tiff", "--out", out, "--mpp", "1.0") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["tiling"]
    for part in manifest["parts"]:
        del part["tiling"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert tile(slides, "--out", out, "--mpp", "0.5", "--min-tissue", "0.2") == 0
    assert set(open_store(out).provenance["slide"].tolist()) == {"a", "b"}


def test_slides_already_there_keep_their_first_tiling_and_a_note_says_so(tmp_path, slides, capsys):
    out = tmp_path / "tiles"
    assert tile(slides / "a.tiff", "--out", out) == 0
    labels = tmp_path / "labels.csv"
    labels.write_text("slide,label\na,tumour\nb,normal\n")
    capsys.readouterr()
    assert tile(slides, "--out", out, "--labels", labels, "--min-tissue", "0.3") == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "keep their first tiling" in line]
    assert len(notes) == 1 and "1 slide(s)" in notes[0] and "(a)" in notes[0]
    assert "--min-tissue and labels" in notes[0] and "new slides only" in notes[0]
    assert "1 already there" in captured.out
    data = open_store(out)
    by_slide = dict(zip(data.provenance["slide"].tolist(), (data.class_names[i] for i in data.labels), strict=False))
    assert by_slide["b"] == "normal" and by_slide["a"] == "unlabelled"  # a keeps its first (unlabelled) tiles
    assert tile(slides, "--out", out, "--labels", labels, "--min-tissue", "0.3") == 0
    assert "keep their first tiling" in capsys.readouterr().err  # a still differs; b does not
    labels.write_text("slide,label\nb,normal\n")
    assert tile(slides / "b.tiff", "--out", out, "--labels", labels, "--min-tissue", "0.3") == 0
    assert "keep their first tiling" not in capsys.readouterr().err


def test_a_tile_store_emptied_by_a_kill_says_to_run_tile_again(tmp_path, slides, capsys, monkeypatch):
    from medcne.datasets import slides_tiling
    from medcne.datasets.store_write import StoreWriter

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as kill -9 in the first slide's part: ...

    monkeypatch.setattr(StoreWriter, "add_part", killed)
    monkeypatch.setattr(slides_tiling._Committer, "close", lambda self: self.writer.close())  # ... no cleanup
    out = tmp_path / "tiles"
    assert tile(slides, "--out", out) != 0
    monkeypatch.undo()
    assert (out / "manifest.json").is_file()
    capsys.readouterr()
    assert main(["info", str(out)]) == 2
    line = one_line(capsys)
    assert "`medcne tile` command again" in line and "medcne convert" not in line
    assert tile(slides, "--out", out) == 0 and len(open_store(out)) > 0


def test_library_messages_name_parameters_and_the_command_line_its_options(tmp_path, slides, capsys):
    geometry = SlideGeometry(dimensions=((1000, 1000),), downsamples=(1.0,), mpp=0.25, objective=40.0)
    with pytest.raises(SlideError, match=r"`mpp` 0.1 is finer"):
        choose_scale(geometry, mpp=0.1)
    with pytest.raises(SlideError, match=r"`magnification` 80"):
        choose_scale(geometry, magnification=80)
    blank = write_slide(tmp_path / "blank.tiff", np.full((256, 256, 3), 255, np.uint8), mpp=0.25)
    report = tile_slides([slides / "a.tiff", blank], tmp_path / "api", TileOptions(tile_size=28))
    assert any("no tissue reaches `min_tissue` 0.5" in note for note in report.notes)
    assert tile(slides / "a.tiff", blank, "--out", tmp_path / "cli") == 0
    assert "no tissue reaches --min-tissue 0.5" in capsys.readouterr().err
    assert tile(slides / "a.tiff", "--out", tmp_path / "fine", "--mpp", "0.1") == 2
    assert "--mpp 0.1 is finer" in one_line(capsys)
