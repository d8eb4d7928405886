"""The training loop: one function runs any tuple of :class:`~.stages.Stage`.

Read top to bottom: for each stage, set up the head and a fresh SGD optimiser;
for each epoch, draw a permutation of the images, cut it into full batches,
make two views of each batch on the device, embed both, (optionally) gather the
views of all processes, compute the loss in float32, step. The learning rate
is :func:`~.stages.lr_at` of the step. After each epoch a callback gets the
:class:`EpochEnd` (for history, kNN, checkpoints, early stops).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..defaults import MOMENTUM, WEIGHT_DECAY
from ..device import amp_dtype
from ..errors import DivergedError
from ..models import uses_channels_last
from .anneal import clip_gradients, kernel_values, loss_of_step, param_groups
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
    stages: tuple[Stage, ...] | None = None  # the schedule, once a time budget has re-chosen it


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
    """What stays fixed through training: data, views, loss, randomness, the backbone to call."""

    model: nn.Module
    store: ImageStore
    batch_size: int
    augment: Augment
    loss_fn: Loss
    generators: Generators
    gather: Gather | None = None
    backbone: Callable | None = None  # the compiled backbone, used where the backbone trains
    # Several processes (train/distributed.py): (rank, world size), and what wraps the model
    # for a stage so that its gradients are averaged over them (the wrapper itself: ``replica``).
    shard: tuple[int, int] = (0, 1)
    replicate: Callable | None = None
    replica: nn.Module | None = None
    # A time budget's re-planner (budget.BudgetPlan): (stage, epochs done, stages, row) -> stages
    replan: Callable | None = None

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.store), self.batch_size * self.shard[1])


class LossWatch:
    """The loss summed on the device, and read by the host without waiting for the device.

    Each :meth:`poll` starts an asynchronous copy of the running sum into pinned
    host memory (unless the last one is still on its way) and returns the last
    copy that has arrived: the host never blocks inside an epoch, yet sees a
    non-finite loss within a few steps of the device computing it.
    """

    def __init__(self, device: torch.device):
        self.total = torch.zeros((), device=device)
        cuda = device.type == "cuda"
        self._host = torch.zeros((), pin_memory=cuda)
        self._event = torch.cuda.Event() if cuda else None
        self._pending: int | None = None  # steps in the copy on its way
        self.steps = 0
        self.seen: tuple[int, float] = (0, 0.0)  # (steps, sum) of the last copy that arrived

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach()
        self.steps += 1

    def poll(self) -> tuple[int, float]:
        if self._pending is not None and (self._event is None or self._event.query()):
            # numpy reads host memory directly: no dispatcher op, no device sync.
            self.seen = (self._pending, float(self._host.numpy()))
            self._pending = None
        if self._pending is None:
            self._host.copy_(self.total, non_blocking=True)
            if self._event is not None:
                self._event.record()
            self._pending = self.steps
        return self.seen


def trainable_parameters(model: nn.Module, stage: Stage) -> list[nn.Parameter]:
    """Switch ``requires_grad`` so only the stage's parameters train; return them."""
    keep = set(map(id, model.last_layer.parameters())) if stage.train == "last" else None
    params = []
    for p in model.parameters():
        p.requires_grad_(keep is None or id(p) in keep)
        if p.requires_grad:
            params.append(p)
    return params


def make_optimizer(params, stage: Stage, device_type: str = "cpu") -> torch.optim.SGD:
    """SGD with momentum and weight decay; fused into one kernel per step on CUDA. ``params``:
    parameters or groups (a group's ``lr_scale`` scales the learning rate of every step)."""
    params = list(params)
    fused = device_type == "cuda"
    return torch.optim.SGD(params, lr=stage.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                           fused=fused or None)


def begin_stage(model: nn.Module, stage: Stage, generators: Generators, fresh: bool) -> torch.optim.SGD:
    """Prepare the model for ``stage`` and return its optimiser.

    ``fresh`` is False when resuming inside the stage: the head was already
    replaced before the checkpoint, so it must not be replaced again.
    """
    if stage.new_head and fresh:
        model.replace_last(stage.out_dim, generators.init, stage.head_init)
    device_type = next(model.parameters()).device.type
    return make_optimizer(param_groups(model, trainable_parameters(model, stage)), stage, device_type)


def contrastive_step(
    model: nn.Module,
    views: torch.Tensor,
    loss_fn: Loss,
    gather: Gather | None = None,
    backbone: Callable | None = None,
    frozen: bool = False,
) -> torch.Tensor:
    """Loss of a (2B, C, H, W) batch of views (rows i and i + B are partners).

    The backbone runs in the model's ``amp_dtype`` (``backbone`` replaces it,
    e.g. by its compiled form); the head and the loss in float32. ``frozen``:
    only the head trains (stage 2), so the backbone runs eagerly without
    autograd. ``gather`` maps this process's (2B, d) outputs to the (2B_all, d)
    outputs of all processes, in the same partner layout and with gradients, so
    that negatives are global; the default keeps them local.
    """
    if frozen:
        with torch.no_grad():
            h = model.forward_features(views)
        with torch.autocast(views.device.type, enabled=False):
            z = model.head(h)
    else:
        z = model(views, backbone)
    if gather is not None:
        z = gather(z)
    return loss_fn(z)


def shard(step: int, batch: int, rank: int = 0, world: int = 1) -> slice:
    """Rows of the epoch's order that process ``rank`` of ``world`` trains on at ``step``.

    Global batch ``step`` is rows ``step * batch * world`` onwards, cut into ``world``
    consecutive runs of ``batch`` (one per rank): each global batch, its images and their
    order are the same for any number of processes, and no row is used twice.
    """
    start = (step * world + rank) * batch
    return slice(start, start + batch)


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
    backbone: Callable | None = None,
    progress: bool = True,
    deadline: float | None = None,
    shard: tuple[int, int] = (0, 1),
    replicate: Callable | None = None,
    replan: Callable | None = None,
) -> Position:
    """Train ``model`` through ``stages``, starting at ``position`` (a resume).

    ``compile``: ``torch.compile`` the backbone (once; see :func:`compile_backbone`),
    unless ``backbone`` gives its compiled form already. ``deadline`` (a
    ``time.monotonic()`` value) is when a time budget expects training to end:
    the progress bar shows the time left against it; ``replan`` (a
    :class:`~.budget.BudgetPlan`) re-chooses at each epoch's end the epochs not
    yet committed, and the returned position's ``stages`` are then the schedule run.
    ``shard``, ``replicate``: with several processes, (rank, world size) and the
    wrapper that averages gradients (:func:`~.distributed.replicate`); ``batch_size``
    is then the global batch, of which each process trains on 1/world (the
    progress bar is rank 0's). Returns the final :class:`Position` (its ``history`` has one row per epoch:
    stage, epoch, loss, lr, views_per_s, and any keys the callback added).
    Raises :class:`~medcne.errors.DivergedError` within a few steps of a
    non-finite loss (before the callback of that epoch can checkpoint it).
    """
    pos = position or Position()
    prepare_model(model, store.device)
    if backbone is None and compile:
        backbone = compile_backbone(model)
    job = Job(model, store, batch_size // shard[1], augment, loss_fn, generators, gather, backbone)
    job.shard, job.replicate, job.replan = shard, replicate, replan
    progress = progress and shard[0] == 0
    bar = Progress(stages, pos.stage, pos.epoch, job.steps_per_epoch, deadline) if progress else None
    with cudnn_benchmark(store.device):
        try:
            _run_stages(job, stages, pos, optimizer_state, on_epoch, bar)
        finally:  # also on an error, so that its one line comes after the bar
            if bar is not None:
                bar.close()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return pos


def prepare_model(model: nn.Module, device: torch.device, precision: str | None = None) -> None:
    """Move the model for training on ``device`` in the layout its convolutions prefer there;
    ``precision`` ('bf16' or 'fp32', resolved) sets the backbone's autocast dtype (None: keep it)."""
    model.to(device)
    if precision is not None:
        model.amp_dtype = amp_dtype(precision)
    if uses_channels_last(device):
        model.to(memory_format=torch.channels_last)
    model.train()


COMPILE_BACKEND = "inductor"  # tests count compiles with a backend of their own


def compile_backbone(model: nn.Module, fullgraph: bool = True) -> Callable:
    """``torch.compile`` of the backbone: once per run. Stages 1 and 3 call it with the same
    shapes, modes and gradients; stage 2 runs the backbone eagerly without autograd, and the
    head (whose size changes) is never compiled, so nothing triggers a recompile.
    ``fullgraph=False`` lets the graph break where it must (the collectives of a synced
    BatchNorm with several processes)."""
    return torch.compile(model.backbone, backend=COMPILE_BACKEND, fullgraph=fullgraph)


@contextmanager
def cudnn_benchmark(device: torch.device):
    """cuDNN picks its fastest convolution algorithms for the (fixed) shapes of training."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _run_stages(job: Job, stages, pos: Position, optimizer_state, on_epoch, bar) -> None:
    model = job.model
    for si in range(pos.stage, len(stages)):
        stage = stages[si]
        # Inside a stage that a checkpoint interrupted: same head, saved optimiser.
        resuming = si == pos.stage and (pos.epoch > 0 or optimizer_state is not None)
        optimizer = begin_stage(model, stage, job.generators, fresh=not resuming)
        if job.replicate is not None:  # a new wrapper per stage: the trained parameters change
            job.replica = job.replicate(model, stage, job.backbone)
        if resuming and optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        optimizer_state = None
        if si != pos.stage:
            pos.stage, pos.epoch = si, 0
        while pos.epoch < stages[si].epochs:
            epoch = pos.epoch
            row = {"stage": si + 1, "epoch": epoch + 1, **run_epoch(job, optimizer, stages[si], epoch, bar)}
            pos.epoch = epoch + 1
            if job.replan is not None:  # before the callback, whose checkpoint records the stages
                stages = pos.stages = job.replan(si, pos.epoch, stages, row)
                if bar is not None:
                    bar.restage(stages)
            if bar is not None:
                bar.epoch(si, row)
            # Appended before the callback so a checkpoint written there holds
            # this epoch; the callback may still add keys (e.g. knn) to the row.
            pos.history.append(row)
            if on_epoch is not None:
                on_epoch(EpochEnd(model, optimizer, pos, stages, row))
        if stages[si].epochs == 0 and on_epoch is not None:
            # A stage without epochs still changes the model (new head): let the
            # callback see its end, e.g. to checkpoint.
            on_epoch(EpochEnd(model, optimizer, pos, stages, {}))


def run_epoch(job: Job, optimizer: torch.optim.Optimizer, stage: Stage, epoch: int,
              bar: Progress | None = None) -> dict:
    """One pass over the data in full batches; returns loss, lr and views_per_s of the epoch.

    No step waits for the device: the epoch's order is drawn on the device, the
    loss is summed there and read asynchronously (:class:`LossWatch`).
    """
    t0 = time.perf_counter()
    spe, b = job.steps_per_epoch, job.batch_size
    rank, world = job.shard
    store = job.store
    batch_gen = job.generators.batch
    order = torch.randperm(len(store), generator=batch_gen, device=batch_gen.device)
    # Only this process's rows of the order are read (a streaming store reads them ahead, in the background).
    batches = store.batches(order, (shard(s, b, rank, world) for s in range(spe)))
    frozen = stage.train == "last"
    watch = LossWatch(store.device)
    kernel = getattr(job.model, "kernel", None)  # learned kernel scalars of an annealed stage
    for s in range(spe):
        lr = lr_at(stage, epoch * spe + s, spe)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr
        loss_fn, dim = loss_of_step(job.loss_fn, stage, epoch * spe + s, spe, store.device, kernel)
        loss = train_step(job, optimizer, next(batches), frozen, loss_fn, stage)
        watch.add(loss)
        _check_finite(watch.poll(), stage, epoch, lr)
        if bar is not None:
            bar.step(watch.seen, lr, last=s == spe - 1, dim=dim)
    total = float(watch.total)  # the one read per epoch that waits for the device
    _check_finite((spe, total), stage, epoch, lr)
    seconds = time.perf_counter() - t0
    row = {"loss": total / spe, "lr": lr, "views_per_s": 2 * b * world * spe / seconds}
    return row if dim is None else {**row, "dim": dim, **kernel_values(job.model)}


def train_step(job: Job, optimizer: torch.optim.Optimizer, batch: torch.Tensor, frozen: bool = False,
               loss_fn: Loss | None = None, stage: Stage | None = None) -> torch.Tensor:
    """One optimisation step on a uint8 ``batch`` of images on the device: two views of each,
    the loss, backward, SGD. Returns the loss (a device tensor: reading it would wait for the device).
    ``frozen``: only the head trains (stage 2). ``loss_fn``: this step's loss (an annealed stage's
    changes with the step; default ``job.loss_fn``); ``stage``: clips gradients where it asks to."""
    loss_fn = job.loss_fn if loss_fn is None else loss_fn
    views = job.augment(torch.cat([batch, batch]), job.generators.augment)
    if uses_channels_last(job.store.device):
        views = views.contiguous(memory_format=torch.channels_last)
    if job.replica is None:
        loss = contrastive_step(job.model, views, loss_fn, job.gather, job.backbone, frozen)
    else:  # several processes: the same step through the wrapper that averages the gradients
        z = job.replica(views)
        loss = loss_fn(z if job.gather is None else job.gather(z))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if stage is not None:
        clip_gradients(optimizer, stage)
    optimizer.step()
    return loss


def _check_finite(seen: tuple[int, float], stage: Stage, epoch: int, lr: float) -> None:
    if not math.isfinite(seen[1]):
        raise DivergedError(
            f"training diverged in stage {stage.name!r}, epoch {epoch + 1}: the loss is not finite "
            f"(learning rate {lr:.3g} at that step, peak {stage.lr:.3g}); lower the learning rate (`lr`) "
            "and start again; the last checkpoint, if any, is from before the divergence"
        )
