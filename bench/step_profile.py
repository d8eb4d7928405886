"""Where the time of one CPU training step goes, and what the width and the SGD variant change.

The model alone (forward + backward + SGD on random input of the training
shape), as `medcne fit` runs it on a CPU: channels_last, bf16 autocast where the
CPU has it. Three parts, all in one process:

* views/s at several widths (``--widths``), model alone, in alternating rounds;
* views/s for PyTorch's SGD implementations (default, ``foreach``, ``fused``) on
  the same model, in alternating rounds; the ratio is to the default, which is
  what medcne uses on a CPU;
* a ``torch.profiler`` breakdown of a few steps at ``--width`` into kinds of
  work (convolution, batch norm, ReLU, additions, the rest).

    .venv/bin/python bench/step_profile.py --width 16 --batch-size 256 --threads 2
"""

from __future__ import annotations

import argparse

import torch
from throughput import step_rate  # bench/ is on the path when a script there runs
from torch.profiler import profile

from medcne.defaults import MOMENTUM, WEIGHT_DECAY
from medcne.device import machine_name, native_bf16
from medcne.models import TSimCNENet
from medcne.train.loop import prepare_model

KINDS = {  # profiler op name fragment -> kind of work
    "convolution": "convolution", "batch_norm": "batch norm", "threshold_backward": "ReLU",
    "clamp_min": "ReLU", "relu": "ReLU",
}
ADDITIONS = {"aten::add", "aten::add_"}  # exact names: aten::addmm is a matrix product


def kind_of(op: str) -> str:
    if op in ADDITIONS:
        return "additions"
    return next((k for frag, k in KINDS.items() if frag in op), "the rest")


def setup(width: int, batch: int, precision: str):
    model = TSimCNENet("resnet18", 3, width, True, 128, torch.Generator().manual_seed(0))
    prepare_model(model, torch.device("cpu"), precision)
    x = torch.rand(2 * batch, 3, 28, 28).contiguous(memory_format=torch.channels_last)
    return model, x


def sgd(model, variant: str) -> torch.optim.SGD:
    extra = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[variant]
    return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, **extra)


def rate(model, x, opt, steps: int) -> float:
    """Views per second over ``steps`` steps after two warm-up steps."""
    return step_rate(model, x, opt, steps, x.device, warmup=2)[0]


def breakdown(model, x, steps: int) -> dict[str, float]:
    """Share of self CPU time per kind of work over ``steps`` profiled steps."""
    opt = sgd(model, "default")
    rate(model, x, opt, 1)
    with profile() as prof:
        rate(model, x, opt, steps)
    shares: dict[str, float] = {}
    total = 0.0
    for ev in prof.key_averages():
        total += ev.self_cpu_time_total
        kind = kind_of(ev.key)
        shares[kind] = shares.get(kind, 0.0) + ev.self_cpu_time_total
    return {k: 100 * v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--widths", default="8,12,16,32")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    precision = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    print(f"machine: {machine_name()}; torch {torch.__version__}; {args.threads} threads; {precision}; "
          f"batch {args.batch_size} (x2 views), 28 x 28 x 3")
    widths = {int(v): setup(int(v), args.batch_size, precision) for v in args.widths.split(",")}
    by_width: dict[int, list[float]] = {w: [] for w in widths}
    for _ in range(args.rounds):
        for w, (model, x) in widths.items():
            by_width[w].append(rate(model, x, sgd(model, "default"), args.steps))
    for w, r in by_width.items():
        print(f"width {w:3d}: best {max(r):7.0f} views/s, model alone (rounds: {', '.join(f'{a:.0f}' for a in r)})")
    model, x = setup(args.width, args.batch_size, precision)
    opts = {v: sgd(model, v) for v in ("default", "foreach", "fused")}
    rates: dict[str, list[float]] = {v: [] for v in opts}
    for _ in range(args.rounds):
        for v, opt in opts.items():
            rates[v].append(rate(model, x, opt, args.steps))
    base = max(rates["default"])
    for v, r in rates.items():
        print(f"SGD {v:8s}: best {max(r):7.0f} views/s, ratio to default {max(r) / base:.3f} "
              f"(rounds: {', '.join(f'{a:.0f}' for a in r)})")
    print(f"width {args.width}, share of self CPU time over {args.steps} steps:")
    for kind, share in breakdown(model, x, args.steps).items():
        print(f"  {kind:12s} {share:5.1f}%")


if __name__ == "__main__":
    main()
