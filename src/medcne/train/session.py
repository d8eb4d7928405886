"""A training session: everything that happens around the loop of one fit.

Resuming from a checkpoint, timing a few steps, a time budget's plan and its
re-plans, the per-epoch :class:`~.monitor.Monitor` (kNN, checkpoints), the
progress bar and what the user is told. The estimator resolves its parameters,
builds the model and the views, hands them to :func:`run_session`, and gets the
schedule that ran and the history back as values: the session rewrites nothing
of the estimator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..durations import format_duration
from ..losses import get_loss
from ..params import say, warn
from . import checkpoint as ckpt
from . import distributed
from .anneal import finish_schedule
from .budget import BudgetPlan, budget_stages, training_seconds
from .loop import compile_backbone, steps_per_epoch, train
from .monitor import Monitor, labelled_images
from .rng import Generators, as_rng
from .stages import Stage
from .store import make_store
from .timing import StepTiming, expected_seconds, time_step

# Above this projected training time on a CPU, the user is told plainly that it is too long.
CPU_PATIENCE_SECONDS = 2 * 3600


@dataclass(frozen=True)
class Settings:
    """What a session needs to know of the resolved parameters (the estimator's ``*_`` values)."""

    stages: tuple[Stage, ...]
    batch_size: int  # the global batch
    rank_batch_size: int  # this process's share of it
    device: torch.device
    world: distributed.World
    loss: str = "cauchy"
    sync_bn: bool = False
    budget: float | None = None
    compile: bool = False
    verbose: bool = True
    knn_every: int = 0
    checkpoint: object = None
    checkpoint_minutes: float = 10.0
    stream: bool = False  # read the images batch by batch from disk (the estimator's resolved stream_)


@dataclass(frozen=True)
class Outcome:
    """What a session gives back: the trained model, the schedule it ran, its history and its seconds."""

    model: nn.Module
    stages: tuple[Stage, ...]
    history: list[dict]
    seconds: float


def generators(random_state, device: torch.device, world: distributed.World) -> Generators:
    """The run's generators from the user's ``random_state`` (one seed, every stream derived from it)."""
    return Generators.from_rng(as_rng(random_state), device, world.rank, world.size)


def run_session(model: nn.Module, data, augment, gens: Generators, settings: Settings,
                record: Callable[[tuple[Stage, ...]], dict], *, resume_from=None, new_lr: bool = False,
                callback=None, started: float | None = None) -> Outcome:
    """Train ``model`` on ``data`` through ``settings.stages``.

    ``record(stages)`` is the run's record (parameters and resolved values) with
    that schedule: saved in checkpoints and checked on resume. ``started`` is
    when the fit began (``time.monotonic()``), so that a budget counts the time
    spent before training.
    """
    started = time.monotonic() if started is None else started
    s, stages = settings, settings.stages
    position, opt_state, elapsed = None, None, 0.0
    if resume_from is not None:
        stages, position, opt_state, elapsed = _resume(resume_from, model, gens, settings, record, data, new_lr)
    if s.sync_bn:
        model = distributed.convert_sync_batchnorm(model, s.device.type)
    store = make_store(data, s.device, s.stream)
    loss_fn = get_loss(s.loss)
    backbone = compile_backbone(model, not s.sync_bn) if s.compile else None  # one compile per run
    plan = None
    if position is None and (s.verbose or s.budget is not None):
        # Every rank times: synced BatchNorm steps are collective.
        timing = time_step(model, store, s.rank_batch_size, augment, loss_fn, backbone)
        if s.budget is not None:
            stages, plan = _plan(stages, timing, len(data), settings, started)
        _announce(expected_seconds(timing, stages, len(data), s.batch_size), timing, settings)
    if s.world.is_main:
        _warn(stages, data, settings)
    monitor = Monitor(data, s.device, gens, record(stages), knn_every=s.knn_every, checkpoint=s.checkpoint,
                      checkpoint_minutes=s.checkpoint_minutes, elapsed_before=elapsed, callback=callback,
                      world=s.world)
    pos = train(
        model, store, stages, batch_size=s.batch_size, augment=augment, loss_fn=loss_fn, generators=gens,
        position=position, optimizer_state=opt_state, on_epoch=monitor, backbone=backbone, progress=s.verbose,
        deadline=plan and plan.deadline, replan=plan, **distributed.training_arguments(s.world, s.sync_bn),
    )
    finish_schedule(model, pos.stages or stages)  # an annealed run keeps the outputs of its map
    if pos.stages is not None and pos.stages != stages:
        stages = pos.stages
        if s.verbose and s.world.is_main:
            say(f"at the speed measured in training, the {schedule_message(stages, s.budget)}")
    return Outcome(model, stages, pos.history, monitor.seconds())


def place(model: nn.Module, images, settings: Settings):
    """The map of all training images, and the model with plain BatchNorm (several processes share the work)."""
    return distributed.final_embedding(model, images, settings.device, settings.world)


def _resume(path, model, gens: Generators, s: Settings, record, data, new_lr: bool):
    saved = ckpt.load_checkpoint(path)
    stages = s.stages
    if s.budget is not None:
        # The budget chose the schedule when the run started: keep it, do not choose again.
        chosen = tuple(Stage(**d) for d in saved["record"]["resolved"]["stages"])
        stages = tuple(replace(c, lr=new.lr) for c, new in zip(chosen, stages, strict=True)) if new_lr else chosen
    ckpt.check_resume(saved, record(stages), len(data), ignore_lr=new_lr, data_fingerprint=data.fingerprint(sampled=None))
    position, opt_state = ckpt.restore(saved, model, gens, stages)
    note = distributed.resume_note(saved, s.world, s.batch_size)
    if note and s.verbose:
        say(note)
    return stages, position, opt_state, saved.get("elapsed", 0.0)


def _rank0(obj):
    """Rank 0's ``obj`` on every process (itself with one process)."""
    return distributed.gather_objects(obj)[0]


def _plan(template, timing: StepTiming, n: int, s: Settings, started: float):
    """The epochs that fit the budget, chosen from the timed steps, and the plan that keeps
    training on time from the speed measured at each epoch's end."""
    seconds = training_seconds(s.budget, timing, n, s.batch_size, time.monotonic() - started)
    # Each process timed its own steps: all of them follow rank 0's choice.
    stages = _rank0(budget_stages(template, timing, n, s.batch_size, seconds))
    if s.verbose and s.world.is_main:
        say(schedule_message(stages, s.budget))
    plan = BudgetPlan(stages, time.monotonic() + seconds, steps_per_epoch(n, s.batch_size), 2 * s.batch_size,
                      agree=_rank0)
    return stages, plan


def _warn(stages: tuple[Stage, ...], data, s: Settings) -> None:
    """Warn once per fit of settings that run but do not do what they seem to: a warm-up as long as
    its stage or longer (the learning rate never anneals), ``knn_every`` without labels."""
    if message := warmup_problem(stages):
        warn(message)
    if s.knn_every and not len(labelled_images(data)[1]):
        warn("`knn_every` is set, but the images have no labels, or fewer than two classes of them (the class "
             "`unlabelled` is no label), so the history gets no kNN accuracy; labels "
             "come with the images: an ImageSet (`medcne.load_dataset`, `medcne.datasets.from_array(images, "
             "labels)`) or a torch Dataset of (image, label) pairs (the y of fit is ignored)")


def warmup_problem(stages: tuple[Stage, ...]) -> str | None:
    """What is wrong when a stage warms up for as many epochs as it runs, or more (None when none does):
    its learning rate climbs through the whole stage, reaches ``lr`` on the last step at best, and never
    anneals (as the paper's 10 warm-up epochs do with a few epochs)."""
    long = [st for st in stages if st.epochs and st.warmup_epochs >= st.epochs]
    if not long:
        return None
    warm = ",".join(str(st.warmup_epochs) for st in stages)
    epochs = ",".join(str(st.epochs) for st in stages)
    shorter = ",".join(str(st.epochs // 5 if st in long else st.warmup_epochs) for st in stages)
    names = ("stage " if len(long) == 1 else "stages ") + " and ".join(st.name for st in long)
    each = "each stage " if len(stages) > 1 else ""
    return (f"`warmup` {warm} is as long as `epochs` {epochs} or longer in {names}: the learning rate "
            f"climbs through the whole stage, reaching `lr` on the last step at best, and never anneals; give "
            f"{each}a shorter warm-up, e.g. `warmup` {shorter} (about a fifth of the stage: the CPU settings "
            "warm up 2,0,1 of 12,1,6 epochs)")


def _announce(seconds: float, timing: StepTiming, s: Settings) -> None:
    if s.verbose and s.world.is_main and s.budget is None:
        say(duration_message(seconds, s.device, timing.warmup if s.compile else 0.0))


def duration_message(seconds: float, device: torch.device, compiling: float = 0.0) -> str:
    """One or two lines for the user; says plainly when a run is impractical on a CPU."""
    msg = f"expected training time: about {format_duration(seconds)} on {device.type}"
    if compiling >= 1.0:
        msg += f" (of which {format_duration(compiling)} compiling)"
    if device.type == "cpu" and seconds > CPU_PATIENCE_SECONDS:
        msg += ("\nthat is too long for a CPU: use a GPU, or give a time `budget`, or faster settings "
                "(a narrower `width`, fewer `epochs`, a smaller `batch_size`)")
    return msg


def schedule_message(stages: tuple[Stage, ...], budget: float) -> str:
    """The schedule a budget chose, for the user."""
    parts = ", ".join(f"{s.name} {s.epochs}" for s in stages)
    warm = ",".join(str(s.warmup_epochs) for s in stages)
    return f"time budget {format_duration(budget)}: epochs {parts} (warm-up {warm})"
