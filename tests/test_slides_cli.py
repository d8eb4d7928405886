"""`medcne tile`: slides into a store with thumbnails and provenance, resume, labels, workers, hostile slides."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openslide")
pytest.importorskip("tifffile")

from medcne.cli import main  # noqa: E402
from medcne.datasets.store_read import open_store  # noqa: E402
from slidehelpers import damage, lowres_damaged, mosaic, one_line, tile, tissue_blob, write_slide  # noqa: E402
from termhelpers import screen  # noqa: E402


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
    line = one_line(capsys)
    assert "--tile-size 28" in line and "--size" not in line.replace("--tile-size", "")


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


def test_label_csv_notes_say_empty_missing_or_matching_no_slide(tmp_path, blood_slide, capsys):
    other = write_slide(tmp_path / "other.tiff", tissue_blob(), mpp=0.25)
    third = write_slide(tmp_path / "third.tiff", tissue_blob(), mpp=0.25)
    labels = tmp_path / "labels.csv"
    labels.write_text("slide,label\nblood,leukaemia\nother,\nslideX,normal\n")
    assert tile(blood_slide[0], other, third, "--out", tmp_path / "tiles", "--labels", labels) == 0
    err = capsys.readouterr().err
    assert "other.tiff: has an empty label in the labels CSV" in err
    assert "third.tiff: not in the labels CSV" in err
    assert "1 row(s) name no slide given ('slideX')" in err
    assert "blood.tiff" not in err


def test_dropping_unlabelled_tiles_says_why_a_slide_gives_none(tmp_path, blood_slide, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("slide,label\nblood,\n")
    assert tile(blood_slide[0], "--out", tmp_path / "tiles", "--labels", labels, "--unlabelled", "drop") == 2
    line = one_line(capsys)
    assert "unlabelled and --unlabelled drop leaves them out" in line and "no tissue" not in line


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


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_a_damaged_low_resolution_level_is_a_bad_slide_not_an_internal_error(tmp_path, capsys, workers):
    bad = lowres_damaged(tmp_path / "low.tiff")  # only tissue detection reads the damaged level
    good = write_slide(tmp_path / "good.tiff", tissue_blob(), mpp=0.25)
    out = tmp_path / "tiles"
    args = ["--out", out, "--mpp", "0.25", "--workers", workers]
    assert tile(bad, good, *args) == 2
    line = one_line(capsys)
    assert "low.tiff: the low-resolution image for tissue detection (level 1) cannot be read (" in line
    assert line.endswith("the file may be truncated or damaged") and "internal error" not in line
    assert not out.exists()
    assert tile(bad, good, *args, "--skip-bad") == 0
    assert f"note: skipped: {bad}: the low-resolution image" in capsys.readouterr().err
    assert set(open_store(out).provenance["slide"].tolist()) == {"good"}
    assert sorted(p.name for p in (out / "thumbnails").iterdir()) == ["good.json", "good.png"]
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert tile(bad, good, *args) == 2  # appending: the store is left as it was
    assert "low.tiff" in one_line(capsys)
    assert tile(bad, good, *args, "--skip-bad") == 0
    captured = capsys.readouterr()
    assert "1 already there" in captured.out and "skipped: " in captured.err
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert not list(tmp_path.glob(".tiles.tiling-*"))


def test_invalid_annotations_are_one_line_and_write_nothing(tmp_path, blood_slide, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "blood.geojson").write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                                         '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, '
                                         '"properties": {"classification": {"name": "Tumor"}}}]}')
    out = tmp_path / "tiles"
    assert tile(blood_slide[0], "--out", out, "--annotations", notes) == 2
    assert "blood.geojson: feature 1 of 1" in one_line(capsys)
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


def test_progress_bars_count_slides_and_tiles_on_a_terminal(tmp_path, blood_slide, capsys, monkeypatch):
    path, where, _ = blood_slide
    monkeypatch.setattr("medcne.cli.tile.on_terminal", lambda: True)
    assert main(["tile", "--tile-size", "28", str(path), "--out", str(tmp_path / "tiles")]) == 0
    shown = screen(capsys.readouterr().err)
    assert shown[0].startswith("slides: 100%") and shown[1].startswith("tiles: 100%")
    assert f"{len(where)}/{len(where)}" in shown[1] and shown[2:] == [""]


def test_on_a_terminal_an_error_follows_the_bars_on_the_next_line(tmp_path, capsys, monkeypatch):
    bad = write_slide(tmp_path / "nores.tiff", tissue_blob(), mpp=None)
    monkeypatch.setattr("medcne.cli.tile.on_terminal", lambda: True)
    assert main(["tile", str(bad), "--out", str(tmp_path / "tiles")]) == 2
    shown = screen(capsys.readouterr().err)
    assert shown[0].startswith("slides:   0%") and shown[1].startswith("tiles: 0tile")
    assert shown[2].startswith("medcne tile: error: ") and shown[3:] == [""]


def test_no_progress_bars_when_stderr_is_not_a_terminal(tmp_path, blood_slide, capsys):
    bad = write_slide(tmp_path / "nores.tiff", tissue_blob(), mpp=None)
    assert main(["tile", "--tile-size", "28", str(blood_slide[0]), "--out", str(tmp_path / "tiles")]) == 0
    assert capsys.readouterr().err == ""
    assert main(["tile", str(bad), "--out", str(tmp_path / "other")]) == 2
    assert one_line(capsys).startswith("medcne tile: error: ")


@pytest.mark.parametrize("out", ["slides/sub", "slides", "slides/blood.tiff", "notes/tiles"])
def test_an_out_inside_or_equal_to_an_input_is_refused(tmp_path, capsys, monkeypatch, out):
    level0, _, _, _ = mosaic()
    (tmp_path / "slides").mkdir()
    (tmp_path / "notes").mkdir()
    write_slide(tmp_path / "slides" / "blood.tiff", level0)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert tile("slides", "--out", out, "--annotations", "notes") == 2
    assert "an input of this command; choose another --out" in one_line(capsys)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_helper_processes_exit_when_the_tiling_process_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    helper = ("import sys, time; from medcne.datasets.slides_tiling import _watch_parent; "
              "_watch_parent(int(sys.argv[1])); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", "import os, subprocess, sys, time; "
                               f"p = subprocess.Popen([sys.executable, '-c', {helper!r}, str(os.getpid())]); "
                               "print(p.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.5)  # the helper's import, and its watch begins
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def running() -> bool:
        try:
            return " Z " not in open(f"/proc/{child}/stat").read()  # a zombie has ended
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    still = running()
    if still:
        os.kill(child, signal.SIGKILL)
    assert not still


def test_a_rerun_removes_the_scratch_a_killed_run_left_and_no_other_folder(tmp_path, blood_slide):
    import os
    import subprocess
    import sys

    from medcne.datasets.slides_scratch import make_scratch

    out = tmp_path / "tiles"
    kill = ("import os, signal, sys; from pathlib import Path; from medcne.datasets.slides_scratch import make_scratch; "
            "s, _ = make_scratch(Path(sys.argv[1])); (s / 'a.npy').write_bytes(b'0' * 1000); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", kill, str(out)], check=False, timeout=60)
    (stale,) = tmp_path.glob(".tiles.tiling-*")
    live, fd = make_scratch(out)  # a run still going: its marker is locked
    look_alikes = [tmp_path / ".tiles.tiling-abcd1234", tmp_path / ".tiles.tiling-mine", tmp_path / ".other.tiling-x1y2z3w4"]
    for folder in look_alikes:
        folder.mkdir()
        (folder / "keep.txt").write_text("the user's")
    (look_alikes[1] / ".medcne-tiling").write_text("")  # named unlike mkdtemp's folders
    try:
        assert tile(blood_slide[0], "--out", out) == 0
        assert not stale.exists() and live.is_dir() and all(f.is_dir() for f in look_alikes)
    finally:
        os.close(fd)


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

