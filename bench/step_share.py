"""Share of a training step spent making the views (issue 3's "below 10% of a step").

One step as :func:`medcne.train.train` does it: two views of a batch of uint8
images held on the device (``Augmenter``), then forward, Cauchy InfoNCE,
backward and SGD step (bf16 autocast and channels_last on CUDA). Timed three
ways in the same process: the views alone, the model step alone (on the views
of the previous step), and the whole step; with ``--profile`` also a
``torch.profiler`` table of the two labelled regions.

    .venv/bin/python bench/step_share.py                                  # CPU: width 16, batch 128
    .venv/bin/python bench/step_share.py --device cuda --width 64 --batch-size 1024 --profile
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from medcne.augment import augmenter_for
from medcne.datasets import load_sample
from medcne.device import machine_name
from medcne.losses import cauchy_infonce
from medcne.models import TSimCNENet
from medcne.train import Stage
from medcne.train.loop import contrastive_step, make_optimizer, prepare_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--preset", default="rotate")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--profile", action="store_true", help="also print a torch.profiler table")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    images = load_sample().images
    x_all = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).contiguous().to(device)
    aug = augmenter_for(images, args.preset)
    g = torch.Generator(device=device).manual_seed(0)
    c, h, w = x_all.shape[1:]
    model = TSimCNENet("resnet18", c, args.width, h <= 32, 128, torch.Generator().manual_seed(0))
    prepare_model(model, device, "bf16" if cuda else "fp32")  # as training on CUDA: bf16 backbone
    opt = make_optimizer(model.parameters(), Stage("bench", 1, 0.01), device.type)

    def views() -> torch.Tensor:
        idx = torch.randint(0, len(x_all), (args.batch_size,), generator=g, device=device)
        batch = x_all[idx]
        v = aug(torch.cat([batch, batch]), g)
        return v.contiguous(memory_format=torch.channels_last) if cuda else v

    def model_step(v: torch.Tensor) -> None:
        loss = contrastive_step(model, v, cauchy_infonce)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn) -> float:
        fn()  # warm-up (compiles, allocator)
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            fn()
        sync(device)
        return (time.perf_counter() - start) / args.steps

    fixed = views()
    t_views = timed(views)
    t_model = timed(lambda: model_step(fixed))
    t_step = timed(lambda: model_step(views()))
    name = torch.cuda.get_device_name(device) if cuda else f"{cpu_model()}, {args.threads} threads"
    print(f"machine: {name}; torch {torch.__version__}; ResNet18 width {args.width}, batch {args.batch_size} "
          f"(2 x {args.batch_size} views of {h}x{w}), preset {args.preset}, {args.steps} steps each")
    print(f"views alone {1e3 * t_views:.1f} ms ({2 * args.batch_size / t_views:,.0f} views/s); "
          f"model step alone {1e3 * t_model:.1f} ms; whole step {1e3 * t_step:.1f} ms")
    print(f"share of the step making views: {t_views / t_step:.1%} (views / whole step); "
          f"{1 - t_model / t_step:.1%} (1 - model step / whole step)")
    if args.profile:
        profile(views, model_step, device, args.steps)


def profile(views, model_step, device, steps: int) -> None:
    from torch.profiler import ProfilerActivity, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            with record_function("medcne.views"):
                v = views()
            with record_function("medcne.model_step"):
                model_step(v)
        sync(device)
    events = prof.key_averages()
    cuda = device.type == "cuda"
    print(events.table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=10))
    ours = {e.key: e for e in events if e.key.startswith("medcne.")}
    total = sum(e.cpu_time_total for e in ours.values())
    for key, e in sorted(ours.items()):
        line = f"profile: {key}: CPU {e.cpu_time_total / 1e3:.1f} ms ({e.cpu_time_total / total:.1%} of both)"
        if cuda:
            line += f", device {getattr(e, 'device_time_total', 0.0) / 1e3:.1f} ms"
        print(line)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return machine_name()


if __name__ == "__main__":
    main()
