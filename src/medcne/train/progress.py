"""The progress of training: steps, stage and epoch, loss, learning rate, speed.

A bar (tqdm) is drawn on a terminal only. Elsewhere (stderr a log file or a pipe,
a Jupyter notebook) a plain line is printed at the end of each stage and each
tenth of the training, to stdout with the run's other messages: a log stays
short, and a notebook shows progress without widgets. tqdm is imported only to
draw a bar (tqdm.auto is never imported: in a notebook without ipywidgets it warns).
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line imports this module, and must not load torch
    from .stages import Stage


def on_terminal() -> bool:
    """Whether progress bars are drawn: stderr is a terminal, not a file or a pipe."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def width_options() -> dict:
    """tqdm's size options: follow the terminal, or 80 x 24 on one that states no size (where tqdm would
    draw empty lines)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):
        size = os.terminal_size((0, 0))
    return {"dynamic_ncols": True} if min(size) > 0 else {"ncols": 80, "nrows": 24}


def clock(seconds: float) -> str:
    """'1:05' (minutes and seconds), or '2:03:10' from an hour on."""
    m, sec = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{sec:02d}" if m >= 60 else f"{m}:{sec:02d}"


def describe(stages: tuple[Stage, ...], si: int, epoch: int) -> str:
    """'stage 2/3 head ep 1/50', or 'done' past the last stage."""
    if si >= len(stages):
        return "done"
    return f"stage {si + 1}/{len(stages)} {stages[si].name} ep {epoch}/{stages[si].epochs}"


PLAIN_NAMES = {"views_s": "views/s", "budget_left": "budget left"}  # the bar's names, in a line of text


class Progress:
    """One bar over every step of every stage, starting at ``(stage, epoch)`` when resuming.

    Under a time budget (``deadline``, a ``time.monotonic()`` value) the bar counts
    seconds towards the deadline instead of steps: the budget's plan is re-chosen at
    each epoch's end, and a bar of steps would change its total every time. The plan
    being run is shown beside it (``plan=12,1,6``).

    Without a terminal there is no bar (``bar`` is None): the same figures are printed
    as one line at the end of each stage and when another tenth of the total is done.
    """

    def __init__(self, stages: tuple[Stage, ...], stage: int, epoch: int, steps_per_epoch: int,
                 deadline: float | None = None):
        self.stages = stages
        self.deadline = deadline
        self.steps_per_epoch = steps_per_epoch
        self.started = time.monotonic()
        if deadline is None:
            total = sum(s.epochs for s in stages) * steps_per_epoch
            done = (sum(s.epochs for s in stages[:stage]) + epoch) * steps_per_epoch
            unit = "step"
        else:
            total, done, unit = max(1, round(deadline - self.started)), 0, "s"
        self.total, self.n = total, done
        self.description = describe(stages, stage, epoch)
        self.next_tenth = math.floor(10 * done / max(1, total)) + 1  # the next tenth a plain line marks
        self.bar = None
        if on_terminal():
            from tqdm import tqdm  # not tqdm.auto: a bar is drawn on a terminal only

            self.bar = tqdm(total=total, initial=done, desc=self.description, unit=unit, smoothing=0.1,
                            mininterval=0.1, **width_options(),
                            bar_format=None if deadline is None else "{l_bar}{bar}| {n_fmt}/{total_fmt} s{postfix}")

    def restage(self, stages: tuple[Stage, ...]) -> None:
        """A time budget re-chose the epochs: the plan shown follows (the bar counts seconds)."""
        self.stages = stages

    def _advance(self) -> None:
        if self.deadline is None:
            n = self.n + 1
        else:  # seconds since the start, never past the budget's total
            n = max(self.n, min(self.total, round(time.monotonic() - self.started)))
        if self.bar is not None:
            self.bar.update(n - self.n)
        self.n = n

    def step(self, seen: tuple[int, float], lr: float, last: bool, dim: int | None = None) -> None:
        """One step done; ``seen`` is (steps, summed loss) of the epoch as far as the host knows
        it without waiting for the device (:class:`~.loop.LossWatch`); ``dim``: the output
        dimensions the loss sees (dimension annealing), else None."""
        self._advance()
        steps, total = seen
        if self.bar is None:
            # The last step of an epoch is said by epoch(), with the epoch's figures (one line, not two).
            if steps and not last and self._tenths():
                self._line(loss=f"{total / steps:.3f}", lr=f"{lr:.2g}", **({} if dim is None else {"dim": dim}))
            return
        if steps and (last or self.bar.n % 10 == 0):
            shown = {} if dim is None else {"dim": dim}
            self.bar.set_postfix(loss=f"{total / steps:.3f}", lr=f"{lr:.2g}", **shown, **self._left(),
                                 refresh=False)

    def epoch(self, si: int, row: dict) -> None:
        self.description = describe(self.stages, si, row["epoch"])
        shown = {"dim": row["dim"]} if "dim" in row else {}
        shown.update({k: f"{row[k]:.3g}" for k in ("temperature", "dof") if k in row})  # learned ones
        figures = {"loss": f"{row['loss']:.3f}", "lr": f"{row['lr']:.2g}", **shown,
                   "views_s": f"{row['views_per_s']:.0f}"}
        if self.bar is None:
            stage_end = si < len(self.stages) and row["epoch"] >= self.stages[si].epochs
            if self._tenths() or stage_end:
                self._line(**figures)
            if stage_end:  # the lines until the next epoch's end are of the next stage
                self.description = describe(self.stages, si + 1, 0)
            return
        self.bar.set_description(self.description)
        self.bar.set_postfix(**figures, **self._left())

    def _tenths(self) -> bool:
        """Whether another tenth of the total was reached since the last plain line (and count it)."""
        tenth = math.floor(10 * self.n / max(1, self.total))
        if tenth < self.next_tenth:
            return False
        self.next_tenth = tenth + 1
        return True

    def _line(self, **figures) -> None:
        """The plain line that stands for the bar where there is none."""
        figures.update(self._left())
        done = min(100, round(100 * self.n / max(1, self.total)))
        unit = "of the time budget" if self.deadline is not None else "of training"
        shown = ", ".join(f"{PLAIN_NAMES.get(k, k)} {v}" for k, v in figures.items())
        print(f"{self.description}: {done}% {unit}, {clock(time.monotonic() - self.started)} elapsed, {shown}",
              flush=True)

    def _left(self) -> dict:
        """The plan and the time left against the budget's deadline (0:00 once past it)."""
        if self.deadline is None:
            return {}
        left = max(0.0, self.deadline - time.monotonic())
        return {"plan": ",".join(str(s.epochs) for s in self.stages),
                "budget_left": f"{int(left // 60)}:{int(left % 60):02d}"}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def end_progress_bars() -> None:
    """Close the progress bars an exception left open, so that the next line starts on a line of its own.

    The top bar first: each then leaves its last state on its own line, the next line below them.
    """
    tqdm = sys.modules.get("tqdm")
    for bar in sorted(getattr(getattr(tqdm, "tqdm", None), "_instances", ()), key=lambda b: abs(b.pos)):
        bar.close()
