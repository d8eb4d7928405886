"""How long a run will take, from a few timed training steps."""

from __future__ import annotations

import copy
import time

import torch

from .loop import contrastive_step, make_optimizer, steps_per_epoch
from .stages import Stage
from .store import ImageStore

# Stage-2 steps train one Linear: no backward through the backbone, about a
# third of a full step.
HEAD_ONLY_COST = 0.35


def time_step(model, store: ImageStore, batch_size: int, augment, loss_fn, steps: int = 3) -> float:
    """Seconds per full training step, measured on a copy of ``model``.

    Uses its own generators, so the run's random streams are untouched.
    """
    device = store.device
    cuda = device.type == "cuda"
    model = copy.deepcopy(model).to(device).train()
    if cuda:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), Stage("timing", 1, 1e-6))
    g_cpu = torch.Generator().manual_seed(0)
    g_dev = torch.Generator(device).manual_seed(0)
    times = []
    for _ in range(steps + 1):  # the first step warms up kernels and caches
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        idx = torch.randint(len(store), (batch_size,), generator=g_cpu)
        batch = store.batch(idx)
        views = augment(torch.cat([batch, batch]), g_dev)
        if cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        loss = contrastive_step(model, views, loss_fn, amp=cuda)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def expected_seconds(seconds_per_step: float, stages: tuple[Stage, ...], n: int, batch_size: int) -> float:
    """Projected training time of ``stages`` on ``n`` images."""
    spe = steps_per_epoch(n, batch_size)
    units = sum(s.epochs * (HEAD_ONLY_COST if s.train == "last" else 1.0) for s in stages)
    return seconds_per_step * spe * units


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def duration_message(seconds: float, device: torch.device, quick_hint: str) -> str:
    """One or two lines for the user; says plainly when a run is impractical on CPU."""
    msg = f"expected training time: about {format_duration(seconds)} on {device.type}"
    if device.type == "cpu" and seconds > 2 * 3600:
        msg += (
            f"\nthat is too long for a CPU: use a GPU, or faster settings such as {quick_hint} "
            "(narrow backbone, few epochs, smaller batch)"
        )
    return msg
