"""A tiny real sweep (2 presets x 2 seeds on the bundled sample): killed mid-way by a signal, resumed without
redoing finished cells, its table checked against the runs' metrics.json; failures and missing data recorded."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import medcne.sweep.run as sweep_run
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH
from sweephelpers import TINY_SWEEP, fake_cells

SRC = Path(__file__).resolve().parents[1] / "src"
CONFIG = TINY_SWEEP
# Runs the sweep in a child process whose cells after the first hang after their first epoch (as a long
# training would), so that the kill lands mid-way through the second cell, never after the whole sweep.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import medcne.runs.tsimcne as tsimcne
    real, first = tsimcne.write_history, []

    def write_history(out, rows):
        path = real(out, rows)
        first.append(Path(out)) if not first else None
        if Path(out) != first[0]:
            time.sleep(600)
        return path

    tsimcne.write_history = write_history
    from medcne.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} never appeared (child exit {proc.poll()})")
        time.sleep(0.1)


@pytest.fixture
def counted(monkeypatch):
    """How many cells the sweep trains (fresh or resumed) in this process."""
    calls = []
    for name in ("fit_run", "resume_run"):
        real = getattr(sweep_run, name)

        def wrapper(*args, _real=real, _name=name, **kwargs):
            folder = Path(args[1] if _name == "fit_run" else args[0])
            calls.append((_name, folder.relative_to(folder.parents[1])))  # METHOD/seedS
            return _real(*args, **kwargs)

        monkeypatch.setattr(sweep_run, name, wrapper)
    return calls


@pytest.mark.slow
def test_killed_sweep_resumes_without_redoing_finished_cells(tmp_path, counted, one_torch_thread, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    out = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "child.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, "sweep", str(config), "--out", str(out), "--quiet"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            # The second cell (seed-major order: rotate, seed 0) has trained one epoch: kill the sweep there.
            wait_for(out / "sample" / "rotate" / "seed0" / "history.csv", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
    first = out / "sample" / "simclr" / "seed0"
    assert sweep_run.is_finished(first)
    assert not sweep_run.is_finished(out / "sample" / "rotate" / "seed0")
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    with open(out / "cells.csv") as fh:
        status = {r["cell"]: r["status"] for r in csv.DictReader(fh)}
    assert status["sample/simclr/seed0"] == "done" and status["sample/rotate/seed1"] == "pending"

    assert main(["sweep", str(config), "--out", str(out), "--quiet"]) == 0
    # Three cells trained again; the finished one untouched.
    assert sorted(str(c) for _, c in counted) == ["rotate/seed0", "rotate/seed1", "simclr/seed1"]
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == stamps
    with open(out / "cells.csv") as fh:
        rows = {r["cell"]: r for r in csv.DictReader(fh)}
    status = {cell: r["status"] for cell, r in rows.items()}
    assert status == {"sample/simclr/seed0": "finished", "sample/rotate/seed0": "done",
                      "sample/simclr/seed1": "done", "sample/rotate/seed1": "done"}
    # A cell finished earlier keeps its time (the run's own, from its metrics.json).
    first_seconds = json.loads((first / "metrics.json").read_text())["seconds"]
    assert float(rows["sample/simclr/seed0"]["seconds"]) == pytest.approx(first_seconds, abs=0.05)
    # The table is the runs' own metrics.json, averaged over seeds.
    with open(out / "report.csv") as fh:
        table = {r["method"]: r for r in csv.DictReader(fh)}
    for method in ("simclr", "rotate"):
        knn = [json.loads((out / "sample" / method / f"seed{s}" / "metrics.json").read_text())["knn_accuracy"]
               for s in (0, 1)]
        assert float(table[method]["knn_mean"]) == pytest.approx(sum(knn) / 2, abs=1e-9)
        assert table[method]["knn_by_seed"] == f"0:{knn[0]!r} 1:{knn[1]!r}"
        params = json.loads((out / "sample" / method / "seed1" / "params.json").read_text())
        assert params["estimator"]["random_state"] == 1 and params["estimator"]["preset"] == method
    # A third run has nothing left to do.
    counted.clear()
    assert main(["sweep", str(config), "--out", str(out), "--quiet"]) == 0
    assert counted == []


@pytest.mark.slow
def test_failed_cells_and_missing_data_are_recorded_and_the_rest_goes_on(tmp_path, counted, one_torch_thread,
                                                                         capsys):
    text = CONFIG.replace("seeds = 2", "seeds = 1") + textwrap.dedent(f"""
        [datasets.cifar10]
        path = "cifar10.npz"
        fetch = "put it into {{dir}}"

        [methods.resnet]
        method = "tsne-resnet18"
        weights = "{tmp_path / 'no-weights.pth'}"
        """)
    config = tmp_path / "c.toml"
    config.write_text(text)
    out = tmp_path / "sweep"
    assert main(["sweep", str(config), "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert f"dataset cifar10: {tmp_path / 'cifar10.npz'} not found; put it into {tmp_path}" in captured.out
    assert "sample/resnet/seed0 failed: " in captured.out
    assert "1 cell(s) failed, 3 without data" in captured.err
    with open(out / "cells.csv") as fh:
        status = {r["cell"]: r["status"] for r in csv.DictReader(fh)}
    assert status == {"sample/simclr/seed0": "done", "sample/rotate/seed0": "done", "sample/resnet/seed0": "failed",
                      "cifar10/simclr/seed0": "no data", "cifar10/rotate/seed0": "no data",
                      "cifar10/resnet/seed0": "no data"}
    assert "sample/resnet/seed0" in (out / "failures.log").read_text()
    assert (out / "report.md").exists()


def test_a_non_empty_folder_that_is_no_sweep_is_refused(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["sweep", str(config), "--out", str(tmp_path / "mine")]) == 2
    assert "holds no sweep.json" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def shorthand_args(out, presets="simclr,rotate", seeds="2", epochs="1,1,1") -> list[str]:
    """`medcne sweep` of the shorthand on 48 sample images (with fake_cells, nothing trains)."""
    return ["sweep", str(SAMPLE_PATH), "--subset", "48", "--presets", presets, "--seeds", seeds, "--epochs", epochs,
            "--width", "4", "--batch-size", "16", "--device", "cpu", "--quiet", "--out", str(out)]


def read_status(out) -> dict[str, dict]:
    with open(out / "cells.csv") as fh:
        return {r["cell"]: r for r in csv.DictReader(fh)}


# Holds the lock of the sweep folder argv[1] until its stdin closes.
HOLDER = "import sys; from medcne.runs.outputs import lock; held = lock(sys.argv[1]); held.__enter__(); " \
         "print('held', flush=True); sys.stdin.read()"


def test_a_second_sweep_into_a_busy_folder_stops_at_once_naming_the_holder(tmp_path, monkeypatch, capsys):
    ran = fake_cells(monkeypatch)
    out = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(shorthand_args(out)) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [f"medcne sweep: error: {out}: another medcne command (pid {holder.pid}) is writing it; "
                       "wait for it to end, or choose another output"]
        assert ran == [] and not out.exists()  # nothing run, nothing written
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert main(shorthand_args(out)) == 0 and len(ran) == 4  # the holder gone: the sweep runs
    assert not (tmp_path / ".sweep.medcne-lock").exists()


def test_list_gives_the_verdict_of_the_sweep_on_cells_made_with_other_settings(tmp_path, monkeypatch, capsys):
    fake_cells(monkeypatch)
    out = tmp_path / "sweep"
    assert main(shorthand_args(out)) == 0
    capsys.readouterr()
    assert main([*shorthand_args(out), "--list"]) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()] == ["finished"] * 4
    assert main([*shorthand_args(out, epochs="2,1,1"), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and "finished" not in "\n".join(lines)
    assert all("made with other settings (options.epochs: [1, 1, 1] then, [2, 1, 1] now)" in line
               for line in lines[:4])
    assert main(shorthand_args(out, epochs="2,1,1")) == 2
    assert "was made with other settings (options.epochs" in capsys.readouterr().err


def test_a_narrower_rerun_keeps_every_cell_in_cells_csv(tmp_path, monkeypatch, capsys):
    fake_cells(monkeypatch, fail={"bloodmnist_sample/rotate/seed1"})
    out = tmp_path / "sweep"
    assert main(shorthand_args(out)) == 1
    assert main(shorthand_args(out, presets="simclr", seeds="1")) == 0  # a failure outside its grid is not its own
    rows = read_status(out)
    assert {cell: r["status"] for cell, r in rows.items()} == {
        "bloodmnist_sample/simclr/seed0": "finished", "bloodmnist_sample/rotate/seed0": "finished",
        "bloodmnist_sample/simclr/seed1": "finished", "bloodmnist_sample/rotate/seed1": "failed"}
    assert rows["bloodmnist_sample/rotate/seed1"]["message"] == "RuntimeError: planned failure"
    assert rows["bloodmnist_sample/simclr/seed1"]["knn_accuracy"] == "61"
    with open(out / "report.csv") as fh:
        report = {r["method"]: r["n_seeds"] for r in csv.DictReader(fh)}
    assert report == {"simclr": "2", "rotate": "1"}  # the same cells as cells.csv's finished ones


def test_the_sweep_holds_its_folder_lock_from_its_first_look_to_its_report(tmp_path, monkeypatch):
    import medcne.sweep as sweep

    fake_cells(monkeypatch)
    out = tmp_path / "sweep"
    held = []

    def check(real):
        def wrapper(*args, **kwargs):
            path = tmp_path / ".sweep.medcne-lock"
            held.append(path.exists() and path.read_text().split() == [str(os.getpid())])
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(sweep, "cells", check(sweep.cells))  # before the sweep looks at its folder
    monkeypatch.setattr(sweep, "run_cells", check(sweep.run_cells))  # between preparing and running
    monkeypatch.setattr(sweep, "write_report", check(sweep.write_report))
    assert main(shorthand_args(out, presets="simclr", seeds="1")) == 0
    # The cells are planned once, before the lock (to refuse an --out inside a dataset before anything, the
    # lock file included, is written); from the sweep's first look at its folder the lock is held.
    assert held == [False, True, True]
    assert not (tmp_path / ".sweep.medcne-lock").exists()


def test_the_cells_are_planned_and_checked_once(tmp_path, monkeypatch):
    """Planning checks each t-SimCNE method on dummy images (and the data options of each dataset); the
    command line planned the cells, and the sweep planned them all again."""
    import medcne.sweep.grid as grid

    fake_cells(monkeypatch)
    checked = []
    real = grid._check_estimator
    monkeypatch.setattr(grid, "_check_estimator", lambda params: checked.append(params) or real(params))
    assert main(shorthand_args(tmp_path / "sweep")) == 0
    assert len(checked) == 2  # simclr and rotate, once each


def test_a_resumed_sweep_says_where_the_whole_sweep_stands(tmp_path, monkeypatch, capsys):
    """Its progress lines count the cells finished before: the fifth cell of six is "cell 5/6", not 1/2."""
    fake_cells(monkeypatch)
    out = tmp_path / "sweep"
    assert main(shorthand_args(out)) == 0
    first = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split(", ")[0] for line in first] == [
        "[....................] cell 1/4", "[#####...............] cell 2/4", "[##########..........] cell 3/4",
        "[###############.....] cell 4/4"]
    assert main(shorthand_args(out, seeds="3")) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split(", ")[0] for line in lines] == ["[#############.......] cell 5/6 (4 finished before)",
                                                     "[################....] cell 6/6 (4 finished before)"]
    assert lines[0].endswith("| bloodmnist_sample/simclr/seed2") and lines[1].endswith("rotate/seed2")


def test_an_interrupted_cell_says_to_rerun_the_sweep(tmp_path, monkeypatch, capsys):
    """Ctrl-C or SIGTERM in a cell: the way on is the same sweep again (it resumes the cell), said once."""
    ran = fake_cells(monkeypatch, interrupt={"bloodmnist_sample/rotate/seed0"})
    out = tmp_path / "sweep"
    assert main(shorthand_args(out)) == 130
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == (
        "bloodmnist_sample/rotate/seed0 interrupted; rerun the same `medcne sweep` command to go on (finished "
        "cells are skipped, this one continues from its checkpoint when it has one)")
    assert "--resume" not in captured.out + captured.err and captured.err == "medcne sweep: interrupted\n"
    assert read_status(out)["bloodmnist_sample/rotate/seed0"]["message"] == "interrupted"
    assert ran == ["bloodmnist_sample/simclr/seed0", "bloodmnist_sample/rotate/seed0"]
    again = fake_cells(monkeypatch)
    assert main(shorthand_args(out)) == 0 and again[0] == "bloodmnist_sample/rotate/seed0" and len(again) == 3


def test_report_rewrites_cells_csv_from_the_cells_on_disk(tmp_path, monkeypatch, capsys):
    """`--report` and cells.csv agree: a cell whose metrics.json was removed since is pending in both; a
    failure stays recorded; while a sweep holds the folder, cells.csv is the sweep's to write."""
    fake_cells(monkeypatch, fail={"bloodmnist_sample/rotate/seed1"})
    out = tmp_path / "sweep"
    assert main(shorthand_args(out)) == 1
    (out / "bloodmnist_sample" / "simclr" / "seed0" / "metrics.json").unlink()
    assert main(["sweep", "--report", str(out)]) == 0
    status = {cell: r["status"] for cell, r in read_status(out).items()}
    assert status == {"bloodmnist_sample/simclr/seed0": "pending", "bloodmnist_sample/rotate/seed0": "finished",
                      "bloodmnist_sample/simclr/seed1": "finished", "bloodmnist_sample/rotate/seed1": "failed"}
    with open(out / "report.csv") as fh:
        assert {r["method"]: r["n_seeds"] for r in csv.DictReader(fh)} == {"simclr": "1", "rotate": "1"}
    before = (out / "cells.csv").read_bytes()
    (out / "bloodmnist_sample" / "rotate" / "seed0" / "metrics.json").unlink()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["sweep", "--report", str(out)]) == 0  # the report is written all the same
        assert (out / "cells.csv").read_bytes() == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_an_interrupted_t_simcne_cell_says_the_sweeps_way_on_not_fits(tmp_path, monkeypatch, capsys, one_torch_thread):
    """fit's own hint (`medcne fit --resume CELL`) would finish that one cell and leave the sweep's others
    undone: inside a sweep only the sweep's line is said; rerunning the sweep resumes the cell."""
    import medcne.runs.tsimcne as tsimcne

    real = tsimcne.write_history

    def interrupted(out, rows):  # after the first epoch, whose checkpoint is written (a stage ends)
        real(out, rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(tsimcne, "write_history", interrupted)
    out = tmp_path / "sweep"
    args = [a for a in shorthand_args(out, presets="simclr", seeds="1") if a != "--quiet"]  # fit's lines on
    assert main(args) == 130
    captured = capsys.readouterr()
    assert "--resume" not in captured.out + captured.err
    assert "bloodmnist_sample/simclr/seed0 interrupted; rerun the same `medcne sweep` command" in captured.out
    assert (out / "bloodmnist_sample" / "simclr" / "seed0" / "checkpoint.pt").is_file()
    monkeypatch.setattr(tsimcne, "write_history", real)
    resumed = []
    monkeypatch.setattr(sweep_run, "resume_run", lambda *a, **k: resumed.append(a) or tsimcne.resume_run(*a, **k))
    assert main(args) == 0 and len(resumed) == 1
