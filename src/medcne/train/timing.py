"""How long training will take, from a few timed steps of the training loop itself."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .loop import Job, cudnn_benchmark, make_optimizer, prepare_model, steps_per_epoch, train_step
from .rng import Generators
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
    """Time a few full training steps (the loop's own :func:`~.loop.train_step`) on the run's
    own ``model``, and put its state back.

    Timing the model itself (not a copy) means a compiled ``backbone`` is compiled
    here, once, for the run as well. Uses its own generators and optimiser, and
    restores weights and buffers afterwards, so the run is unchanged.
    """
    device = store.device
    cuda = device.type == "cuda"
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    prepare_model(model, device)
    opt = make_optimizer(model.parameters(), Stage("timing", 1, 1e-6), device.type)
    job = Job(model, store, batch_size, augment, loss_fn, Generators.from_rng(np.random.default_rng(0), device),
              backbone=backbone)
    g_rows = torch.Generator().manual_seed(0)
    times = []
    with cudnn_benchmark(device):
        for _ in range(steps + 1):
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            train_step(job, opt, store.batch(torch.randint(len(store), (batch_size,), generator=g_rows)))
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
    model.load_state_dict(saved)
    for p in model.parameters():
        p.grad = None
    return StepTiming(step=min(times[1:]), first=times[0])


def stage_cost(stage: Stage) -> float:
    """Cost of one step of ``stage`` in full training steps."""
    return HEAD_ONLY_COST if stage.train == "last" else 1.0


def expected_seconds(timing: StepTiming | float, stages: tuple[Stage, ...], n: int, batch_size: int) -> float:
    """Projected training time of ``stages`` on ``n`` images, one-time costs included."""
    if not isinstance(timing, StepTiming):
        timing = StepTiming(step=float(timing), first=float(timing))
    spe = steps_per_epoch(n, batch_size)
    units = sum(s.epochs * stage_cost(s) for s in stages)
    return timing.step * spe * units + timing.warmup


def embedding_seconds(timing: StepTiming, n: int, batch_size: int) -> float:
    """Time to place ``n`` images on the map: forward passes only, about a third of a step per 2B images."""
    return timing.step * HEAD_ONLY_COST * n / (2 * batch_size)
