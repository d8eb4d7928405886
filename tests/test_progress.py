"""The training progress bar: steady under a time budget, never a negative time left, on a terminal only."""

from __future__ import annotations

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
