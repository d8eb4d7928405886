"""Schedules that fit a time budget: the first choice from timed steps, re-chosen at each epoch's end."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..durations import format_duration
from ..errors import MedcneError
from .loop import steps_per_epoch
from .stages import Stage
from .timing import StepTiming, embedding_seconds, stage_cost

# What a budget keeps back for after training: placing all images on the map is
# timed from the steps; evaluation, the map figure and the files take a few seconds.
RESERVE_SECONDS = 10.0
RESERVE_SHARE = 0.02


def training_seconds(budget: float, timing: StepTiming, n: int, batch_size: int, spent: float) -> float:
    """Of a ``budget`` with ``spent`` seconds gone already, the seconds left for training itself."""
    reserve = RESERVE_SECONDS + RESERVE_SHARE * budget + embedding_seconds(timing, n, batch_size)
    return budget - reserve - spent


def budget_stages(template: tuple[Stage, ...], timing: StepTiming, n: int, batch_size: int,
                  seconds: float) -> tuple[Stage, ...]:
    """``template``'s stages with epochs (and warm-ups) scaled to train in about ``seconds``.

    The proportions between the stages are the template's; every stage the
    template runs keeps at least one epoch. Rounds down, so the run ends
    within the budget rather than after it.
    """
    spe = steps_per_epoch(n, batch_size)
    cost = [timing.step * spe * stage_cost(s) for s in template]
    available = seconds - timing.warmup
    scale = available / sum(c * s.epochs for c, s in zip(cost, template, strict=True))
    epochs = [max(1, math.floor(scale * s.epochs)) if s.epochs else 0 for s in template]
    needed = sum(c * e for c, e in zip(cost, epochs, strict=True))
    if needed > available:
        one = sum(c for c, s in zip(cost, template, strict=True) if s.epochs) + timing.warmup
        raise MedcneError(
            f"the time budget is too short: {format_duration(seconds)} of it are left to train (the rest is "
            f"kept for placing the images and writing the run), and one epoch of each stage takes about "
            f"{format_duration(one)} here ({spe} steps of {timing.step:.2f} s per epoch, and "
            f"{timing.warmup:.1f} s to start); give a longer `budget`, a smaller `batch_size` or `width`, "
            "or fewer images"
        )
    return tuple(replace(s, epochs=e, warmup_epochs=scaled_warmup(s, e)) for s, e in zip(template, epochs, strict=True))


def scaled_warmup(template: Stage, epochs: int) -> int:
    """The warm-up of ``template``'s stage when it runs ``epochs``: in the same proportion when the
    template warms up for part of the stage; a warm-up as long as the template's stage or longer (the
    paper's 10 epochs, given with a few epochs as proportions) is a number of epochs, kept as it is
    (else a long budget would warm up throughout and never anneal). Always shorter than the stage,
    so that its learning rate reaches its peak and anneals (0 for a stage of one epoch)."""
    if not template.epochs or epochs < 1:
        return 0
    if template.warmup_epochs >= template.epochs:
        return min(epochs - 1, template.warmup_epochs)
    return min(epochs - 1, round(template.warmup_epochs * epochs / template.epochs))


def replan_stages(template: tuple[Stage, ...], stages: tuple[Stage, ...], stage: int, done: int,
                  step: float, spe: int, seconds: float) -> tuple[Stage, ...]:
    """``stages`` with the epochs not yet committed chosen again to train in about ``seconds`` more.

    At the end of epoch ``done`` of stage ``stage``, with full steps now taking
    ``step`` seconds: the stages not begun are open, and so is the current one
    while it is still warming up (its learning rate so far does not depend on its
    length). Open stages get the epochs of ``template`` (the budget's first choice)
    times one factor; the others keep theirs. Rounds down, as :func:`budget_stages`.
    """
    cost = [step * spe * stage_cost(s) for s in stages]
    is_open = [i > stage or (i == stage and done < s.warmup_epochs) for i, s in enumerate(stages)]
    base = sum(c * t.epochs for c, t, o in zip(cost, template, is_open, strict=True) if o)
    if base <= 0:
        return stages
    fixed = 0.0 if is_open[stage] else cost[stage] * (stages[stage].epochs - done)
    paid = cost[stage] * done if is_open[stage] else 0.0  # the open stage's epochs already run
    scale = max(0.0, seconds - fixed + paid) / base
    out = []
    for i, (s, t) in enumerate(zip(stages, template, strict=True)):
        if not is_open[i] or t.epochs == 0:
            out.append(s)
        elif i == stage:  # warming up: keep the warm-up, at least as many epochs
            out.append(replace(s, epochs=max(s.warmup_epochs, math.floor(scale * t.epochs))))
        else:
            e = max(1, math.floor(scale * t.epochs))
            out.append(replace(s, epochs=e, warmup_epochs=scaled_warmup(t, e)))
    return tuple(out)


@dataclass
class BudgetPlan:
    """Keeps a budget run on time: at each epoch's end, re-chooses the epochs still open
    (:func:`replan_stages`) from the speed just measured, so that training ends at
    ``deadline`` (a ``time.monotonic()`` value) however well the first timed steps
    predicted the run. ``agree`` makes all processes of a run follow rank 0's choice.
    """

    template: tuple[Stage, ...]
    deadline: float
    steps_per_epoch: int
    views_per_step: int  # both views of the global batch
    agree: Callable[[tuple[Stage, ...]], tuple[Stage, ...]] = lambda stages: stages
    step: float | None = None  # seconds per full training step, as last measured

    def __call__(self, stage: int, done: int, stages: tuple[Stage, ...], row: dict) -> tuple[Stage, ...]:
        if stages[stage].train != "last" and row.get("views_per_s"):
            self.step = self.views_per_step / row["views_per_s"]
        if self.step is None:
            return stages
        left = self.deadline - time.monotonic()
        return self.agree(replan_stages(self.template, stages, stage, done, self.step, self.steps_per_epoch, left))
