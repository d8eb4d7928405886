"""The training progress bar: steady under a time budget, never a negative time left."""

from __future__ import annotations

import time

from medcne.train.progress import Progress, describe
from medcne.train.stages import tsimcne_stages


def test_a_budget_bar_counts_seconds_and_its_total_never_moves(monkeypatch):
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


def test_a_bar_without_budget_counts_steps_from_a_resumed_position():
    stages = tsimcne_stages((2, 1, 1))
    bar = Progress(stages, 1, 0, steps_per_epoch=3)
    assert (bar.bar.total, bar.bar.n) == (12, 6) and bar._left() == {}
    bar.step((1, 4.0), 0.1, last=False)
    assert bar.bar.n == 7
    bar.close()
    assert describe(stages, 3, 0) == "done" and time.monotonic() > 0
