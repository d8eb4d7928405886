"""`medcne view --overwrite` replaces a page folder only while all of it, at any depth, is what medcne wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcne.cli import main
from medcne.errors import MedcneError
from medcne.io import write_json
from medcne.runs import write_embedding
from medcne.viewer import build as build_mod
from medcne.viewer import build_viewer
from medcne.viewer.pagefolder import MARKER, remove_leftovers
from test_viewer import _tree, make_run
from test_viewer_provenance import tiles, write_thumbnail


@pytest.fixture()
def fake_bundle(tmp_path_factory):
    p = tmp_path_factory.mktemp("bundle") / "bundle.js"
    p.write_text("/* stand-in */")
    return p


@pytest.fixture()
def page(tmp_path, fake_bundle):
    run, _ = make_run(tmp_path / "run", n=20)
    build_viewer(run, bundle=fake_bundle)
    return run, run / "viewer"


def test_a_users_file_inside_a_subfolder_is_never_replaced(page, fake_bundle):
    run, out = page
    (out / "sprites" / "notes").mkdir()
    (out / "sprites" / "notes" / "mynote.txt").write_text("mine")
    before = _tree(out)
    with pytest.raises(MedcneError, match=r"viewer: holds sprites/notes, which medcne did not write; .*move it"):
        build_viewer(run, bundle=fake_bundle, overwrite=True)
    assert _tree(out) == before


def test_a_users_empty_folder_or_link_inside_is_never_replaced(page, fake_bundle, tmp_path):
    run, out = page
    (tmp_path / "elsewhere.txt").write_text("x")
    (out / "sprites" / "link.png").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(MedcneError, match=r"holds sprites/link.png, which medcne did not write"):
        build_viewer(run, bundle=fake_bundle, overwrite=True)
    (out / "sprites" / "link.png").unlink()
    (out / "sprites" / "empty").mkdir()
    with pytest.raises(MedcneError, match=r"holds sprites/empty, which medcne did not write"):
        build_viewer(run, bundle=fake_bundle, overwrite=True)
    assert (out / "sprites" / "empty").is_dir()


@pytest.mark.parametrize("same_size", [False, True])
def test_an_edited_page_file_is_never_replaced(page, fake_bundle, same_size):
    run, out = page
    index = out / "index.html"
    text = index.read_text()
    edited = text.replace("<title>", "<title>X", 1)[:len(text)] if same_size else text + "<!-- mine -->"
    assert edited != text and (len(edited) == len(text)) == same_size
    index.write_text(edited)
    with pytest.raises(MedcneError, match=r"viewer: index.html was changed since medcne wrote it; .*move it"):
        build_viewer(run, bundle=fake_bundle, overwrite=True)
    assert index.read_text() == edited


def test_a_clean_page_is_rebuilt_with_overwrite_and_a_deleted_file_is_no_obstacle(page, fake_bundle):
    run, out = page
    (out / "data.js").unlink()  # nothing of the user's is lost when it is missing
    build_viewer(run, bundle=fake_bundle, overwrite=True)
    assert (out / "data.js").is_file()
    build_viewer(run, bundle=fake_bundle, overwrite=True)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".viewer")) == []
    listed = json.loads((out / MARKER).read_text())["files"]
    assert sorted(listed) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MARKER)


def test_a_page_with_slide_thumbnails_is_rebuilt_with_overwrite(tmp_path, fake_bundle):
    store, run = tmp_path / "store", tmp_path / "run"
    write_thumbnail(store, "s1")
    write_embedding(run, np.random.default_rng(0).normal(size=(4, 2)), [f"t{i}" for i in range(4)])
    z = dict(np.load(run / "embedding.npz"))
    np.savez(run / "embedding.npz", **z, **{f"prov_{k}": v for k, v in tiles(n=4).items()})
    write_json(run / "params.json", {"method": "tsimcne", "data": {"path": str(store)}})
    images = np.zeros((4, 8, 8, 3), np.uint8)
    index = build_viewer(run, images=images, bundle=fake_bundle)
    assert "slides/00000.png" in json.loads((index.parent / MARKER).read_text())["files"]
    build_viewer(run, images=images, bundle=fake_bundle, overwrite=True)
    (index.parent / "slides" / "00000.png").write_bytes(b"mine")
    with pytest.raises(MedcneError, match=r"slides/00000.png was changed since medcne wrote it"):
        build_viewer(run, images=images, bundle=fake_bundle, overwrite=True)


def test_the_cli_names_the_file_deep_inside_in_one_line(page, fake_bundle, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "BUNDLE", fake_bundle)
    run, out = page
    (out / "sprites" / "mynote.txt").write_text("mine")
    assert main(["view", str(run), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sprites/mynote.txt" in err and "move it" in err
    assert (out / "sprites" / "mynote.txt").read_text() == "mine"
    (out / "sprites" / "mynote.txt").unlink()
    assert main(["view", str(run), "--overwrite"]) == 0


def _make_legacy(out) -> None:
    """A page as an earlier medcne left it: its marker lists no files."""
    (out / MARKER).write_text(json.dumps({"format": "medcne-viewer", "version": 1}) + "\n")


def test_a_page_of_an_earlier_medcne_is_replaced_when_it_holds_only_the_pages_files(page, fake_bundle):
    run, out = page
    _make_legacy(out)
    (out / "slides").mkdir()
    (out / "slides" / "00000.png").write_bytes(b"png")
    build_viewer(run, bundle=fake_bundle, overwrite=True)
    assert "files" in json.loads((out / MARKER).read_text()) and not (out / "slides").exists()


def test_a_page_of_an_earlier_medcne_with_a_users_file_deep_inside_is_refused(page, fake_bundle):
    run, out = page
    _make_legacy(out)
    (out / "sprites" / "mynote.txt").write_text("mine")
    with pytest.raises(MedcneError, match=r"holds sprites/mynote.txt, which medcne did not write"):
        build_viewer(run, bundle=fake_bundle, overwrite=True)
    assert (out / "sprites" / "mynote.txt").read_text() == "mine"


def test_a_leftover_build_holding_a_users_file_deep_inside_is_kept(tmp_path):
    out = tmp_path / "viewer"
    kept, gone = tmp_path / ".viewer.abcd1234", tmp_path / ".viewer.old-123"
    for left in (kept, gone):
        (left / "sprites").mkdir(parents=True)
        (left / "sprites" / "sheet-000.png").write_bytes(b"png")
    (kept / "sprites" / "mine.txt").write_text("mine")
    assert remove_leftovers(out) == [gone]
    assert (kept / "sprites" / "mine.txt").read_text() == "mine"


def test_a_replaced_run_takes_its_page_along_unless_the_page_holds_a_users_file(tmp_path, fake_bundle, capsys):
    # The page shows the run's map: after `fit --overwrite` it would show the replaced one.
    from medcne.runs import fit_run
    from safetyhelpers import make_data
    from safetyhelpers import make_run as make_real_run

    data = make_data(tmp_path / "data" / "data.npz", n=32)
    run = make_real_run(tmp_path / "run", data)
    build_viewer(run, bundle=fake_bundle)
    params = dict(epochs=(1, 0, 1), warmup=(0, 0, 0), batch_size=16, width=2, device="cpu")
    fit_run(data, run, params, overwrite=True, verbose=False)
    assert not (run / "viewer").exists() and (run / "map.png").exists()
    build_viewer(run, bundle=fake_bundle)
    (run / "viewer" / "my-notes.txt").write_text("mine")
    capsys.readouterr()
    fit_run(data, run, params, overwrite=True, verbose=False)
    assert (run / "viewer" / "my-notes.txt").read_text() == "mine" and (run / "viewer" / "index.html").exists()
    # Kept, and said: the page shows the replaced map, and how to build it anew.
    assert (f"note: {run / 'viewer'} still shows the replaced run's map: it holds my-notes.txt, which medcne did "
            f"not write, so it was kept; move that file out and run `medcne view {run} --overwrite`"
            in capsys.readouterr().out)
    (run / "viewer" / "my-notes.txt").unlink()
    assert main(["view", str(run), "--overwrite"]) == 0  # the fix the note gives works
