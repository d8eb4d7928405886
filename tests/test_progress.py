"""The training progress bar: steady under a time budget, never a negative time left, on a terminal only;
elsewhere (a log file, a pipe, Jupyter) a few plain lines, and no tqdm.auto (which warns in a notebook)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from medcne.train.progress import Progress, describe, end_progress_bars
from medcne.train.stages import tsimcne_stages
from termhelpers import screen


@pytest.fixture()
def terminal(monkeypatch):
    """stderr taken for a terminal (pytest captures it into a file)."""
    monkeypatch.setattr("medcne.train.progress.on_terminal", lambda: True)


def test_no_bar_when_stderr_is_not_a_terminal(capsys):
    bar = Progress(tsimcne_stages((2, 1, 1)), 0, 0, steps_per_epoch=3)
    bar.step((1, 4.0), 0.1, last=False)
    bar.epoch(0, {"epoch": 1, "loss": 4.0, "lr": 0.1, "views_per_s": 10.0})
    bar.close()
    assert capsys.readouterr().err == ""


def test_open_bars_are_closed_top_first_so_each_keeps_its_line(capsys, monkeypatch):
    from tqdm import tqdm

    outer = tqdm(total=2, desc="outer", position=0, ncols=60, nrows=24)
    inner = tqdm(total=2, desc="inner", position=1, ncols=60, nrows=24)
    monkeypatch.setattr(tqdm, "_instances", [inner, outer])  # the inner one met first, as a set may give it
    end_progress_bars()
    assert [line.split(":")[0] for line in screen(capsys.readouterr().err)] == ["outer", "inner", ""]


def test_a_budget_bar_counts_seconds_and_its_total_never_moves(monkeypatch, terminal):
    clock = [100.0]
    monkeypatch.setattr("medcne.train.progress.time.monotonic", lambda: clock[0])
    stages = tsimcne_stages((12, 1, 6))
    bar = Progress(stages, 0, 0, steps_per_epoch=5, deadline=160.0)
    assert bar.bar.total == 60
    clock[0] = 110.0
    bar.step((1, 5.0), 0.1, last=False)
    assert bar.bar.n == 10
    bar.restage(tsimcne_stages((8, 1, 4)))  # the plan changed: the total did not, the plan shown did
    assert bar.bar.total == 60 and bar._left()["plan"] == "8,1,4"
    clock[0] = 200.0  # past the deadline: no negative time, the bar full and no further
    bar.step((2, 9.0), 0.1, last=True)
    assert bar._left()["budget_left"] == "0:00" and bar.bar.n == bar.bar.total == 60
    bar.close()


def test_a_bar_without_budget_counts_steps_from_a_resumed_position(terminal):
    stages = tsimcne_stages((2, 1, 1))
    bar = Progress(stages, 1, 0, steps_per_epoch=3)
    assert (bar.bar.total, bar.bar.n) == (12, 6) and bar._left() == {}
    bar.step((1, 4.0), 0.1, last=False)
    assert bar.bar.n == 7
    bar.close()
    assert describe(stages, 3, 0) == "done" and time.monotonic() > 0


def test_a_terminal_that_states_no_size_still_shows_the_bar(monkeypatch):
    import os
    import select
    import sys

    master, slave = os.openpty()  # a new pseudo-terminal has 0 x 0 cells until told otherwise
    try:
        with open(slave, "w", encoding="utf-8") as tty:
            monkeypatch.setattr(sys, "stderr", tty)
            bar = Progress(tsimcne_stages((2, 1, 1)), 0, 0, steps_per_epoch=3)
            bar.close()
            tty.flush()
            shown = b""
            while select.select([master], [], [], 0.2)[0]:
                shown += os.read(master, 65536)
    finally:
        os.close(master)
    assert "stage 1/3 pretrain ep 0/2:   0%|" in shown.decode() and "0/12" in shown.decode()


def run_through(bar: Progress, stages, steps_per_epoch: int) -> None:
    """Every step and epoch end of ``stages``, as the training loop reports them."""
    for si, stage in enumerate(stages):
        for epoch in range(stage.epochs):
            for s in range(steps_per_epoch):
                bar.step((s + 1, 4.0 * (s + 1)), 0.1, last=s == steps_per_epoch - 1)
            bar.epoch(si, {"epoch": epoch + 1, "loss": 4.0, "lr": 0.1, "views_per_s": 100.0})
    bar.close()


def test_without_a_terminal_a_line_marks_each_tenth_and_each_stage_end(capsys):
    stages = tsimcne_stages((4, 1, 2))
    run_through(Progress(stages, 0, 0, steps_per_epoch=5), stages, 5)
    said = capsys.readouterr()
    lines = said.out.splitlines()
    assert said.err == ""  # no bar, and the lines go with the run's other messages (stdout)
    done = [int(re.search(r": (\d+)% of training, \d+:\d\d elapsed, loss ", line)[1]) for line in lines]
    assert done == sorted(done) and done[-1] == 100 and 10 <= len(lines) <= 10 + len(stages)
    for name, epochs in (("pretrain", 4), ("head", 1), ("finetune", 2)):  # each stage's end is said
        assert any(f"{name} ep {epochs}/{epochs}: " in line and "views/s 100" in line for line in lines), lines
    assert lines[-1].startswith("stage 3/3 finetune ep 2/2: 100% of training")


def test_a_long_run_in_a_log_file_stays_a_few_lines(capsys):
    # The paper's schedule at 100 steps an epoch: 150,000 steps, and still about a dozen lines.
    stages = tsimcne_stages((1000, 50, 450))
    bar = Progress(stages, 0, 0, steps_per_epoch=100)
    run_through(bar, stages, 100)
    assert 10 <= len(capsys.readouterr().out.splitlines()) <= 13


def test_a_resumed_run_says_only_what_is_left(capsys):
    stages = tsimcne_stages((8, 1, 1))
    bar = Progress(stages, 0, 6, steps_per_epoch=2)  # 12 of 20 steps done: the next line is at 70%
    bar.step((1, 4.0), 0.1, last=False)
    assert capsys.readouterr().out == ""
    bar.step((2, 8.0), 0.1, last=True)
    bar.epoch(0, {"epoch": 7, "loss": 4.0, "lr": 0.1, "views_per_s": 10.0})
    assert capsys.readouterr().out.startswith("stage 1/3 pretrain ep 7/8: 70% of training")


def test_without_a_terminal_a_budget_says_its_tenths_of_the_time(monkeypatch, capsys):
    clock = [100.0]
    monkeypatch.setattr("medcne.train.progress.time.monotonic", lambda: clock[0])
    stages = tsimcne_stages((12, 1, 6))
    bar = Progress(stages, 0, 0, steps_per_epoch=5, deadline=200.0)
    clock[0] = 105.0
    bar.step((1, 4.0), 0.1, last=False)  # 5% of the budget: nothing yet
    assert capsys.readouterr().out == ""
    clock[0] = 125.0
    bar.step((2, 8.0), 0.1, last=False)
    line = capsys.readouterr().out
    assert line.startswith("stage 1/3 pretrain ep 0/12: 25% of the time budget, 0:25 elapsed, loss 4.000, lr 0.1")
    assert line.rstrip().endswith("plan 12,1,6, budget left 1:15")


def test_no_bar_imports_neither_tqdm_auto_nor_its_notebook_part():
    # In Jupyter (stderr not a terminal) tqdm.auto would pick its notebook bar and warn
    # "IProgress not found" without ipywidgets, where no bar is drawn anyway.
    code = ("import sys\n"
            "from medcne.train.progress import Progress\n"
            "from medcne.train.stages import tsimcne_stages\n"
            "bar = Progress(tsimcne_stages((2, 1, 1)), 0, 0, steps_per_epoch=3)\n"
            "bar.step((1, 4.0), 0.1, last=False)\n"
            "bar.close()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[-1] in ('auto', 'autonotebook', 'notebook')"
            " and m.startswith('tqdm')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" and "Warning" not in done.stderr


def test_on_a_terminal_the_bar_is_tqdms_terminal_bar(terminal):
    bar = Progress(tsimcne_stages((2, 1, 1)), 0, 0, steps_per_epoch=3)
    assert type(bar.bar).__module__ == "tqdm.std"
    bar.close()
