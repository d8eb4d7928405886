"""The training loop: one function runs any tuple of :class:`~.stages.Stage`.

Read top to bottom: for each stage, set up the head and a fresh SGD optimiser;
for each epoch, draw a permutation of the images, cut it into full batches,
make two views of each batch on the device, embed both, (optionally) gather the
views of all processes, compute the loss in float32, step. The learning rate
is :func:`~.stages.lr_at` of the step. After each epoch a callback gets the
:class:`EpochEnd` (for history, kNN, checkpoints, early stops).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from ..defaults import MOMENTUM, WEIGHT_DECAY
from .progress import Progress
from .rng import Generators
from .stages import Stage, lr_at
from .store import ImageStore

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Gather = Callable[[torch.Tensor], torch.Tensor]
Loss = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Position:
    """Where training stands: ``epoch`` epochs of stage ``stage`` are done."""

    stage: int = 0
    epoch: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class EpochEnd:
    """What the per-epoch callback sees. ``row`` is the history row (it may add keys)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    position: Position
    stages: tuple[Stage, ...]
    row: dict

    @property
    def stage_done(self) -> bool:
        return self.position.epoch >= self.stages[self.position.stage].epochs


@dataclass
class Job:
    """What stays fixed through training: data, views, loss and randomness."""

    model: nn.Module  # what the steps call: the model, or its compiled form
    store: ImageStore
    batch_size: int
    augment: Augment
    loss_fn: Loss
    generators: Generators
    gather: Gather | None = None

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.store), self.batch_size)


def trainable_parameters(model: nn.Module, stage: Stage) -> list[nn.Parameter]:
    """Switch ``requires_grad`` so only the stage's parameters train; return them."""
    keep = set(map(id, model.last_layer.parameters())) if stage.train == "last" else None
    params = []
    for p in model.parameters():
        p.requires_grad_(keep is None or id(p) in keep)
        if p.requires_grad:
            params.append(p)
    return params


def make_optimizer(params, stage: Stage) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=stage.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def begin_stage(model: nn.Module, stage: Stage, generators: Generators, fresh: bool) -> torch.optim.SGD:
    """Prepare the model for ``stage`` and return its optimiser.

    ``fresh`` is False when resuming inside the stage: the head was already
    replaced before the checkpoint, so it must not be replaced again.
    """
    if stage.new_head and fresh:
        model.replace_last(stage.out_dim, generators.init, stage.head_init)
    return make_optimizer(trainable_parameters(model, stage), stage)


def contrastive_step(
    model: nn.Module,
    views: torch.Tensor,
    loss_fn: Loss,
    gather: Gather | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Loss of a (2B, C, H, W) batch of views (rows i and i + B are partners).

    ``gather`` maps this process's (2B, d) outputs to the (2B_all, d) outputs of
    all processes, in the same partner layout and with gradients, so that
    negatives are global; the default keeps them local.
    """
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()
    with ctx:
        z = model(views)
    if gather is not None:
        z = gather(z)
    return loss_fn(z.float())


def steps_per_epoch(n: int, batch_size: int) -> int:
    # Full batches only (drop_last): a tiny last batch gives a noisy loss with
    # few negatives. batch_size is capped at n when resolved, so this is >= 1.
    return max(n // batch_size, 1)


def train(
    model: nn.Module,
    store: ImageStore,
    stages: tuple[Stage, ...],
    *,
    batch_size: int,
    augment: Augment,
    loss_fn: Loss,
    generators: Generators,
    position: Position | None = None,
    optimizer_state: dict | None = None,
    on_epoch: Callable[[EpochEnd], None] | None = None,
    gather: Gather | None = None,
    compile: bool = False,
    progress: bool = True,
) -> Position:
    """Train ``model`` through ``stages``, starting at ``position`` (a resume).

    Returns the final :class:`Position` (its ``history`` has one row per epoch:
    stage, epoch, loss, lr, views_per_s, and any keys the callback added).
    """
    pos = position or Position()
    model.to(store.device)
    if store.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    model.train()
    job = Job(torch.compile(model) if compile else model, store, batch_size, augment, loss_fn, generators, gather)
    bar = Progress(stages, pos.stage, pos.epoch, job.steps_per_epoch) if progress else None
    for si in range(pos.stage, len(stages)):
        stage = stages[si]
        # Inside a stage that a checkpoint interrupted: same head, saved optimiser.
        resuming = si == pos.stage and (pos.epoch > 0 or optimizer_state is not None)
        optimizer = begin_stage(model, stage, generators, fresh=not resuming)
        if resuming and optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        optimizer_state = None
        if si != pos.stage:
            pos.stage, pos.epoch = si, 0
        for epoch in range(pos.epoch, stage.epochs):
            row = {"stage": si + 1, "epoch": epoch + 1, **run_epoch(job, optimizer, stage, epoch, bar)}
            pos.epoch = epoch + 1
            if bar is not None:
                bar.epoch(si, row)
            # Appended before the callback so a checkpoint written there holds
            # this epoch; the callback may still add keys (e.g. knn) to the row.
            pos.history.append(row)
            if on_epoch is not None:
                on_epoch(EpochEnd(model, optimizer, pos, stages, row))
        if stage.epochs == 0 and on_epoch is not None:
            # A stage without epochs still changes the model (new head): let the
            # callback see its end, e.g. to checkpoint.
            on_epoch(EpochEnd(model, optimizer, pos, stages, {}))
    if bar is not None:
        bar.close()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return pos


def run_epoch(job: Job, optimizer: torch.optim.Optimizer, stage: Stage, epoch: int,
              bar: Progress | None = None) -> dict:
    """One pass over the data in full batches; returns loss, lr and views_per_s of the epoch."""
    t0 = time.perf_counter()
    spe, b = job.steps_per_epoch, job.batch_size
    cuda = job.store.device.type == "cuda"
    order = torch.randperm(len(job.store), generator=job.generators.batch)
    total = torch.zeros((), device=job.store.device)
    for s in range(spe):
        lr = lr_at(stage, epoch * spe + s, spe)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = job.store.batch(order[s * b : (s + 1) * b])
        views = job.augment(torch.cat([batch, batch]), job.generators.augment)
        if cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        loss = contrastive_step(job.model, views, job.loss_fn, job.gather, amp=cuda)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        if bar is not None:
            bar.step(loss.detach(), lr, last=s == spe - 1)
    seconds = time.perf_counter() - t0
    return {"loss": float(total) / spe, "lr": lr, "views_per_s": 2 * b * spe / seconds}
