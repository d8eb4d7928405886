"""The one rule for what medcne writes (issue 23, data loss): each case of the hostile probe.

Outputs are never an input of the command or inside one, a path is replaced
only when medcne wrote it (a marker or record, not a name) and only with
--overwrite/--force, one writer per output at a time (a lock naming the
holder's pid), and a symbolic link at a staging name is never followed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medcne.cli import main
from medcne.errors import MedcneError
from medcne.runs.folder import staging_path
from safetyhelpers import TINY, make_data, make_run, refused, snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("wdata") / "data.npz")


@pytest.fixture
def run(data, tmp_path):
    return make_run(tmp_path / "run", data)


def labels_csv(run: Path, path: Path) -> Path:
    ids = np.load(run / "embedding.npz")["ids"][:6]
    path.write_text("id,label\n" + "".join(f"{i},{'ab'[n % 2]}\n" for n, i in enumerate(ids)))
    return path


# -- 1. propagate: never onto the run it reads nor its dataset -------------------------------------
@pytest.mark.parametrize("name", ["params.json", "model.pt", "embedding.csv"])
def test_propagate_never_writes_onto_a_file_of_the_run(run, tmp_path, capsys, name):
    ann = labels_csv(run, tmp_path / "ann.csv")
    before = snapshot(run)
    refused(["propagate", str(run), "--labels", str(ann), "--out", str(run / name), "--overwrite",
             "--space", "map"], capsys, str(run))
    assert snapshot(run) == before


def test_propagate_never_writes_onto_the_runs_dataset(tmp_path, capsys):
    data = make_data(tmp_path / "own" / "data.npz")  # its own copy: the code before this rule replaced it
    run = make_run(tmp_path / "run", data)
    ann = labels_csv(run, tmp_path / "ann.csv")
    before = data.read_bytes()
    refused(["propagate", str(run), "--labels", str(ann), "--out", str(data), "--overwrite", "--space", "map"],
            capsys, "input")
    assert data.read_bytes() == before


def test_propagate_replaces_its_own_output_only_with_overwrite(run, tmp_path, capsys):
    ann = labels_csv(run, tmp_path / "ann.csv")
    from medcne.runs.outputs import written_by_medcne

    argv = ["propagate", str(run), "--labels", str(ann), "--space", "map"]
    assert main(argv) == 0 and written_by_medcne(run / "propagated.csv")
    refused(argv, capsys, "--overwrite")
    assert main([*argv, "--overwrite"]) == 0


# -- 2. single-file outputs: no silent replacement, never a user's file -----------------------------
def _plot(run, out, *extra):
    return ["plot", str(run), "--out", str(out), *extra]


def _compare(run, out, *extra):
    return ["compare", str(run), "--out", str(out.with_suffix("")), *extra]


def _preview(data, out, *extra):
    return ["augment-preview", str(data), "--out", str(out), "--n-images", "2", "--n-views", "2", *extra]


@pytest.mark.parametrize("command", [_plot, _compare, _preview])
def test_a_users_file_is_never_replaced_with_or_without_overwrite(command, run, data, tmp_path, capsys):
    source = data if command is _preview else run
    out = tmp_path / ("fig.md" if command is _compare else "fig.png")
    out.write_text("mine\n")
    refused(command(source, out), capsys, str(out))
    refused(command(source, out, "--overwrite"), capsys, "not written by medcne")
    assert out.read_text() == "mine\n"


@pytest.mark.parametrize("command", [_plot, _preview])
def test_medcne_replaces_its_own_figure_only_with_overwrite(command, run, data, tmp_path, capsys):
    source = data if command is _preview else run
    out = tmp_path / "fig.png"
    assert main(command(source, out)) == 0
    capsys.readouterr()
    refused(command(source, out), capsys, "--overwrite")
    assert main(command(source, out, "--overwrite")) == 0
    out.write_bytes(out.read_bytes() + b"edited")  # changed by the user since: theirs now
    refused(command(source, out, "--overwrite"), capsys, "changed since")


# -- 3. folders medcne did not write ------------------------------------------------------------------
def test_fit_overwrite_refuses_a_folder_medcne_did_not_write(data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("map.png", "history.csv", "metrics.json"):
        (mine / name).write_text(f"my {name}\n")
    before = snapshot(mine)
    refused(["fit", str(data), "--out", str(mine), "--overwrite", *TINY], capsys, "did not write", "map.png")
    assert snapshot(mine) == before


def test_baseline_force_keeps_files_medcne_did_not_write(run, data, capsys):
    (run / "qc.csv").write_text("my qc\n")
    (run / "propagated.csv").write_text("my labels\n")
    assert main(["baseline", str(data), "--method", "tsne-pixels", "--out", str(run), "--force"]) == 0
    assert (run / "qc.csv").read_text() == "my qc\n"
    assert (run / "propagated.csv").read_text() == "my labels\n"
    assert not (run / "model.pt").exists()  # the old run's own files went


# -- 4. a CSV dataset's folder is an input ------------------------------------------------------------
def test_fit_never_writes_into_the_folder_of_a_csv_dataset(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "csv2"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"i{i}.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "map.png")
    (folder / "list.csv").write_text("path,label\n" + "".join(f"i{i}.png,{i % 2}\n" for i in range(8))
                                     + "map.png,0\n")
    before = snapshot(folder)
    refused(["fit", str(folder / "list.csv"), "--out", str(folder), "--overwrite", *TINY], capsys, "input")
    assert snapshot(folder) == before


# -- 5. one writer per output -------------------------------------------------------------------------
def hold_lock(out: Path, shared: bool = False):
    """Another process holding the lock of ``out``, until killed."""
    code = ("import sys, time; from medcne.runs.outputs import lock\n"
            "with lock(sys.argv[1], shared=sys.argv[2] == '1'):\n    print('held', flush=True); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), "1" if shared else "0"], stdout=subprocess.PIPE,
                            env=env, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_stops_at_once_naming_the_holder(run, data, capsys):
    from medcne.runs.outputs import lock_path

    proc = hold_lock(run)
    try:
        before = snapshot(run)
        start = time.perf_counter()
        refused(["fit", str(data), "--out", str(run), "--overwrite", *TINY], capsys, f"pid {proc.pid}")
        assert time.perf_counter() - start < 30 and snapshot(run) == before
    finally:
        proc.kill()
        proc.wait()
    assert not lock_path(run).exists() or main(["plot", str(run), "--out", str(run.parent / "m.png")]) == 0


def test_files_written_into_a_run_share_its_lock_and_exclude_its_replacement(run, data, tmp_path, capsys):
    ann = labels_csv(run, tmp_path / "ann.csv")
    propagate = ["propagate", str(run), "--labels", str(ann), "--space", "map", "--overwrite"]
    proc = hold_lock(run, shared=True)  # e.g. `medcne qc RUN` running
    try:
        assert main(propagate) == 0  # another command writing into the run: fine
        refused(["fit", str(data), "--out", str(run), "--overwrite", *TINY], capsys, f"pid {proc.pid}")
    finally:
        proc.kill()
        proc.wait()
    proc = hold_lock(run)  # the run being replaced
    try:
        refused(propagate, capsys, f"pid {proc.pid}")
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("argv", [
    ["fit", "{data}", "--out", "{run}", *TINY],  # without --overwrite: not told to pass it
    ["fit", "--resume", "{run}"],  # not told that there is nothing to resume
    ["baseline", "{data}", "--method", "tsne-pixels", "--out", "{run}"],
    ["baseline", "{data}", "--method", "tsne-pixels", "--out", "{run}", "--force"],
])
def test_every_writer_of_a_locked_run_names_the_holder_before_any_other_check(run, data, capsys, argv):
    (run / "params.json").write_text('{"method": "tsimcne", "data": {"path": "x"}, "finished": false}')
    before = snapshot(run)
    proc = hold_lock(run)  # a `medcne fit --out RUN` training
    try:
        line = refused([a.format(run=run, data=data) for a in argv], capsys, f"pid {proc.pid}")
    finally:
        proc.kill()
        proc.wait()
    assert "--overwrite" not in line and "--force" not in line and snapshot(run) == before


def test_the_last_holder_removes_the_lock_file_and_none_before(run, capsys):
    from medcne.runs.outputs import lock, lock_path

    ann = labels_csv(run, run.parent / "ann.csv")
    for argv in (["qc", str(run), "--space", "map"], ["view", str(run)],
                 ["propagate", str(run), "--labels", str(ann), "--space", "map"]):
        assert main(argv) == 0
        assert not lock_path(run).exists(), argv  # `qc`, `view` and `propagate` hold the run's lock shared
    proc = hold_lock(run, shared=True)
    try:
        with lock(run, shared=True):
            pass
        assert lock_path(run).exists()  # the other holder still has it: a replacement is still refused
        with pytest.raises(MedcneError, match=f"pid {proc.pid}"), lock(run):
            pass
    finally:
        proc.kill()
        proc.wait()
    with lock(run, shared=True):
        pass
    assert not lock_path(run).exists()


def test_folders_made_for_a_lock_alone_go_with_it_and_those_of_a_written_output_stay(tmp_path):
    from medcne.runs.outputs import lock

    with lock(tmp_path / "new" / "deep" / "run"):
        assert (tmp_path / "new" / "deep").is_dir()  # the lock file lies there
    assert not (tmp_path / "new").exists()  # the output was never written: nothing of the command is left
    with pytest.raises(MedcneError), lock(tmp_path / "new" / "deep" / "run"):
        raise MedcneError("refused after the lock")
    assert not (tmp_path / "new").exists()
    with lock(tmp_path / "new" / "deep" / "run"):
        (tmp_path / "new" / "deep" / "run").mkdir()
    assert (tmp_path / "new" / "deep" / "run").is_dir()


def test_an_output_name_too_long_for_the_files_beside_it_is_refused_naming_the_output(tmp_path):
    from medcne.io import write_text
    from medcne.runs.outputs import lock

    for suffix, overhead in (("", len("..XXXXXXXX.tmp")), (".csv", len("..XXXXXXXX.tmp.csv"))):
        room = os.pathconf(tmp_path, "PC_NAME_MAX") - overhead
        longest = tmp_path / ("r" * (room - len(suffix)) + suffix)
        with lock(longest):  # the longest name that leaves room for the lock and the temporary file
            write_text(longest, "written\n")
        assert longest.read_text() == "written\n"
        longest.unlink()
        for n in (room + 1, 300):
            out = tmp_path / ("r" * (n - len(suffix)) + suffix)
            with pytest.raises(MedcneError) as err, lock(out):
                pass
            assert str(err.value).startswith(f"{out}: the name is too long")
            assert f"at most {room} bytes" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_newcomer_takes_the_new_lock_file_while_the_last_holder_removes_the_old_one(run, monkeypatch):
    from medcne.runs import outputs

    path = outputs.lock_path(run)
    holder = outputs._acquire(path)  # the last holder, letting go: it removes the file, then unlocks
    stale = os.open(path, os.O_RDWR)  # a newcomer opened the file just before
    path.unlink()
    opens, real_open = iter([stale]), os.open
    monkeypatch.setattr(outputs.os, "open", lambda *a, **k: next(opens, None) or real_open(*a, **k))
    try:
        fd = outputs._acquire(path)  # refused on the old file, it takes the new one
        assert outputs._names(path, fd)
        os.close(fd)
    finally:
        os.close(holder)


def test_qc_rewrites_its_own_csv_but_never_one_you_edited(run, capsys):
    qc = ["qc", str(run), "--space", "map"]
    assert main(qc) == 0 and main(qc) == 0  # what medcne wrote, unchanged: rewritten without --overwrite
    with open(run / "qc.csv", "a") as fh:
        fh.write("my note\n")
    before = snapshot(run)
    refused(qc, capsys, str(run / "qc.csv"), "move it away")
    assert snapshot(run) == before


# -- 6. the viewer folder ----------------------------------------------------------------------------
def test_view_overwrite_keeps_a_users_file_in_the_viewer_folder(run, capsys):
    assert main(["view", str(run)]) == 0
    mine = run / "viewer" / "my-annotations.csv"
    mine.write_text("id,new_label\n")
    refused(["view", str(run), "--overwrite"], capsys, "my-annotations.csv")
    assert mine.read_text() == "id,new_label\n"


def test_view_removes_the_leftover_of_a_killed_build(run, capsys):
    leftover = run / ".viewer.abcd1234"
    (leftover / "sprites").mkdir(parents=True)
    (leftover / "data.js").write_text("x")
    assert main(["view", str(run)]) == 0
    assert not leftover.exists()


# -- 7. a symbolic link at the staging name ---------------------------------------------------------
def test_a_symlink_at_the_staging_name_is_never_followed(run, data, tmp_path, capsys):
    outside = make_run(tmp_path / "outside", data)
    staging_path(run).symlink_to(outside)
    before = snapshot(outside), snapshot(run)
    refused(["fit", str(data), "--out", str(run), "--overwrite", *TINY], capsys, "symbolic link")
    assert (snapshot(outside), snapshot(run)) == before


def test_what_a_killed_run_left_does_not_block_a_new_one(data, tmp_path):
    from medcne.runs import staging

    out = tmp_path / "run"
    work, _ = staging.begin(out, False, option="overwrite")  # a fit killed while training in place
    (work / "params.json").write_text('{"method": "tsimcne", "data": {"path": "x"}, "finished": false}')
    (work / "checkpoint.pt").write_bytes(b"partial")
    (work / ".model.pt.abcd1234.tmp.pt").write_bytes(b"half")  # its atomic write of model.pt, killed
    (work / ".qc.csv.medcne-lock").write_text("123\n")
    assert staging.foreign(out) == []
    assert main(["fit", str(data), "--out", str(out), "--overwrite", *TINY]) == 0
    assert not (out / ".model.pt.abcd1234.tmp.pt").exists()


@pytest.mark.slow
def test_a_locked_output_stops_every_process_of_a_run_of_two(run, data, tmp_path):
    # Rank 0 takes the lock; refused, it must stop rank 1 too (not leave it waiting for rank 0).
    proc = hold_lock(run)
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "medcne", "fit", str(data), "--out", str(run), "--overwrite", "--nproc", "2",
               *TINY]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"pid {proc.pid}" in done.stderr


# -- 1b. nothing reading a run writes into the dataset the run was made from ---------------------------
@pytest.fixture(scope="module")
def folder_run(data, tmp_path_factory):
    """A run of a folder of PNG images (one sub-folder per class), as `medcne fit my_images/` makes."""
    from PIL import Image

    z = np.load(data)
    root = tmp_path_factory.mktemp("frun")
    folder = root / "images"
    for i, (img, label) in enumerate(zip(z["images"], z["labels"], strict=True)):
        (folder / str(z["class_names"][label])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / str(z["class_names"][label]) / f"{i:03d}.png")
    return make_run(root / "run", folder), folder


@pytest.mark.parametrize("argv", [
    ["plot", "{run}", "--out", "{data}/map.png"],
    ["plot", "{run}", "--kind", "thumbnails", "--out", "{data}/basophil/thumbs.png"],
    ["compare", "{run}", "--out", "{data}/report"],
    ["embed", "{run}", "{other}", "--out", "{data}/placed.csv"],
])
def test_commands_reading_a_run_never_write_into_its_dataset(folder_run, data, argv, capsys):
    run, folder = folder_run
    before = snapshot(folder)
    refused([a.format(run=run, data=folder, other=data) for a in argv], capsys, "input", str(folder))
    assert snapshot(folder) == before


def test_a_replaced_run_keeps_a_qc_csv_the_user_edited_and_drops_one_medcne_wrote(tmp_path):
    # qc.csv describes the old map and goes with it, but once edited it is the user's (as `medcne qc` says).
    from medcne.runs import fit_run
    from safetyhelpers import make_data, make_run

    data = make_data(tmp_path / "data" / "data.npz", n=32)
    run = make_run(tmp_path / "run", data)
    params = dict(epochs=(1, 0, 1), warmup=(0, 0, 0), batch_size=16, width=2, device="cpu")
    assert main(["qc", str(run), "--space", "map"]) == 0
    fit_run(data, run, params, overwrite=True, verbose=False)
    assert not (run / "qc.csv").exists()  # medcne's, unchanged: it described the replaced map
    assert main(["qc", str(run), "--space", "map"]) == 0
    with open(run / "qc.csv", "a", encoding="utf-8") as fh:
        fh.write("# my review notes\n")
    edited = (run / "qc.csv").read_text()
    fit_run(data, run, params, overwrite=True, verbose=False)
    assert (run / "qc.csv").read_text() == edited
