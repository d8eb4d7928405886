"""How long a run will take, from a few timed training steps; schedules that fit a time budget."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..errors import MedcneError
from ..models import uses_channels_last
from .loop import contrastive_step, cudnn_benchmark, make_optimizer, prepare_model, steps_per_epoch
from .stages import Stage
from .store import ImageStore

# Stage-2 steps train one Linear: the backbone runs forward only, without autograd.
HEAD_ONLY_COST = 0.35


@dataclass(frozen=True)
class StepTiming:
    """Seconds of a full training step once warm, and of the first step.

    The first step also pays one-time costs: ``torch.compile``, cuDNN's choice
    of algorithms, lazy initialisation; :attr:`warmup` is that extra.
    """

    step: float
    first: float

    @property
    def warmup(self) -> float:
        return max(0.0, self.first - self.step)


def time_step(model, store: ImageStore, batch_size: int, augment, loss_fn, backbone=None,
              steps: int = 3) -> StepTiming:
    """Time a few full training steps on the run's own ``model`` and put its state back.

    Timing the model itself (not a copy) means a compiled ``backbone`` is compiled
    here, once, for the run as well. Uses its own generators and optimiser, and
    restores weights and buffers afterwards, so the run is unchanged.
    """
    device = store.device
    cuda = device.type == "cuda"
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    prepare_model(model, device)
    opt = make_optimizer(model.parameters(), Stage("timing", 1, 1e-6), device.type)
    g_batch = torch.Generator().manual_seed(0)
    g_dev = torch.Generator(device).manual_seed(0)
    times = []
    with cudnn_benchmark(device):
        for _ in range(steps + 1):
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            batch = store.batch(torch.randint(len(store), (batch_size,), generator=g_batch))
            views = augment(torch.cat([batch, batch]), g_dev)
            if uses_channels_last(device):
                views = views.contiguous(memory_format=torch.channels_last)
            loss = contrastive_step(model, views, loss_fn, backbone=backbone)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
    model.load_state_dict(saved)
    for p in model.parameters():
        p.grad = None
    return StepTiming(step=min(times[1:]), first=times[0])


def expected_seconds(timing: StepTiming | float, stages: tuple[Stage, ...], n: int, batch_size: int) -> float:
    """Projected training time of ``stages`` on ``n`` images, one-time costs included."""
    if not isinstance(timing, StepTiming):
        timing = StepTiming(step=float(timing), first=float(timing))
    spe = steps_per_epoch(n, batch_size)
    units = sum(s.epochs * (HEAD_ONLY_COST if s.train == "last" else 1.0) for s in stages)
    return timing.step * spe * units + timing.warmup


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def duration_message(seconds: float, device: torch.device, quick_hint: str, compiling: float = 0.0) -> str:
    """One or two lines for the user; says plainly when a run is impractical on CPU."""
    msg = f"expected training time: about {format_duration(seconds)} on {device.type}"
    if compiling >= 1.0:
        msg += f" (of which {format_duration(compiling)} compiling)"
    if device.type == "cpu" and seconds > 2 * 3600:
        msg += (
            f"\nthat is too long for a CPU: use a GPU, or faster settings such as {quick_hint} "
            "(narrow backbone, few epochs, smaller batch)"
        )
    return msg


# What a budget keeps back for after training: placing all images on the map is
# timed from the steps; evaluation, the map figure and the files take a few seconds.
RESERVE_SECONDS = 10.0
RESERVE_SHARE = 0.02
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text) -> float:
    """``'15m'``, ``'90s'``, ``'1.5h'``, ``'1h30m'`` or a number of seconds -> seconds (> 0)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d*)?)\s*(h|min|m|sec|s)?", str(text).strip().lower())
        joined = "".join(n + (u or "") for n, u in parts)
        if not parts or joined != re.sub(r"\s+", "", str(text).strip().lower()):
            raise MedcneError(f"budget must be a duration such as 15m, 90s, 1.5h or 1h30m; got {text!r}")
        seconds = sum(float(n) * _UNITS[u or "s"] for n, u in parts)
    if not (math.isfinite(seconds) and seconds > 0):
        raise MedcneError(f"budget must be a positive duration such as 15m; got {text!r}")
    return seconds


def embedding_seconds(timing: StepTiming, n: int, batch_size: int) -> float:
    """Time to place ``n`` images on the map: forward passes only, about a third of a step per 2B images."""
    return timing.step * HEAD_ONLY_COST * n / (2 * batch_size)


def budget_stages(template: tuple[Stage, ...], timing: StepTiming, n: int, batch_size: int,
                  seconds: float) -> tuple[Stage, ...]:
    """``template``'s stages with epochs (and warm-ups) scaled to train in about ``seconds``.

    The proportions between the stages are the template's; every stage the
    template runs keeps at least one epoch. Rounds down, so the run ends
    within the budget rather than after it.
    """
    spe = steps_per_epoch(n, batch_size)
    cost = [timing.step * spe * (HEAD_ONLY_COST if s.train == "last" else 1.0) for s in template]
    available = seconds - timing.warmup
    scale = available / sum(c * s.epochs for c, s in zip(cost, template, strict=True))
    epochs = [max(1, math.floor(scale * s.epochs)) if s.epochs else 0 for s in template]
    needed = sum(c * e for c, e in zip(cost, epochs, strict=True))
    if needed > available:
        shortest = needed + timing.warmup
        raise MedcneError(
            f"the time budget is too short: one epoch of each stage takes about {format_duration(shortest)} "
            f"here ({spe} steps of {timing.step:.2f} s per epoch); give a longer budget, a smaller "
            "--batch-size or --width, or --subset"
        )
    return tuple(
        replace(s, epochs=e, warmup_epochs=min(e, round(s.warmup_epochs * e / s.epochs)) if s.epochs else 0)
        for s, e in zip(template, epochs, strict=True)
    )


def schedule_message(stages: tuple[Stage, ...], budget: float) -> str:
    """The schedule a budget chose, for the user."""
    parts = ", ".join(f"{s.name} {s.epochs}" for s in stages)
    return f"time budget {format_duration(budget)}: epochs {parts} (warm-up {','.join(str(s.warmup_epochs) for s in stages)})"


def replan_stages(template: tuple[Stage, ...], stages: tuple[Stage, ...], stage: int, done: int,
                  step: float, spe: int, seconds: float) -> tuple[Stage, ...]:
    """``stages`` with the epochs not yet committed chosen again to train in about ``seconds`` more.

    At the end of epoch ``done`` of stage ``stage``, with full steps now taking
    ``step`` seconds: the stages not begun are open, and so is the current one
    while it is still warming up (its learning rate so far does not depend on its
    length). Open stages get the epochs of ``template`` (the budget's first choice)
    times one factor; the others keep theirs. Rounds down, as :func:`budget_stages`.
    """
    cost = [step * spe * (HEAD_ONLY_COST if s.train == "last" else 1.0) for s in stages]
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
            out.append(replace(s, epochs=e, warmup_epochs=min(e, round(t.warmup_epochs * e / t.epochs))))
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
