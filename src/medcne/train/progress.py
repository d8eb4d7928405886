"""The progress bar of training (tqdm): steps, stage and epoch, loss, learning rate, speed."""

from __future__ import annotations

import sys
import time

from .stages import Stage


def describe(stages: tuple[Stage, ...], si: int, epoch: int) -> str:
    """'stage 2/3 head ep 1/50', or 'done' past the last stage."""
    if si >= len(stages):
        return "done"
    return f"stage {si + 1}/{len(stages)} {stages[si].name} ep {epoch}/{stages[si].epochs}"


class Progress:
    """One bar over every step of every stage, starting at ``(stage, epoch)`` when resuming."""

    def __init__(self, stages: tuple[Stage, ...], stage: int, epoch: int, steps_per_epoch: int,
                 deadline: float | None = None):
        from tqdm.auto import tqdm

        self.stages = stages
        self.deadline = deadline
        self.steps_per_epoch = steps_per_epoch
        total = sum(s.epochs for s in stages) * steps_per_epoch
        done = (sum(s.epochs for s in stages[:stage]) + epoch) * steps_per_epoch
        # In a log file (not a terminal) every refresh is a new line: refresh rarely there.
        interval = 0.1 if sys.stderr.isatty() else 30.0
        self.bar = tqdm(total=total, initial=done, desc=describe(stages, stage, epoch), unit="step",
                        dynamic_ncols=True, smoothing=0.1, mininterval=interval)

    def restage(self, stages: tuple[Stage, ...]) -> None:
        """A time budget re-chose the epochs: the bar's total follows."""
        self.stages = stages
        self.bar.total = sum(s.epochs for s in stages) * self.steps_per_epoch

    def step(self, seen: tuple[int, float], lr: float, last: bool, dim: int | None = None) -> None:
        """One step done; ``seen`` is (steps, summed loss) of the epoch as far as the host knows
        it without waiting for the device (:class:`~.loop.LossWatch`); ``dim``: the output
        dimensions the loss sees (dimension annealing), else None."""
        self.bar.update(1)
        steps, total = seen
        if steps and (last or self.bar.n % 10 == 0):
            shown = {} if dim is None else {"dim": dim}
            self.bar.set_postfix(loss=f"{total / steps:.3f}", lr=f"{lr:.2g}", **shown, **self._left(),
                                 refresh=False)

    def epoch(self, si: int, row: dict) -> None:
        self.bar.set_description(describe(self.stages, si, row["epoch"]))
        shown = {"dim": row["dim"]} if "dim" in row else {}
        self.bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2g}", **shown,
                             views_s=f"{row['views_per_s']:.0f}", **self._left())

    def _left(self) -> dict:
        """Time left against the budget's deadline (negative: over it)."""
        if self.deadline is None:
            return {}
        left = self.deadline - time.monotonic()
        sign, left = ("-" if left < 0 else ""), abs(left)
        return {"budget_left": f"{sign}{int(left // 60)}:{int(left % 60):02d}"}

    def close(self) -> None:
        self.bar.close()
