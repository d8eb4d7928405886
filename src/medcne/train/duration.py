"""How long a run will take, from a few timed training steps."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

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
            if cuda:
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
