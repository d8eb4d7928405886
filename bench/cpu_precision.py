"""Training step speed on a CPU: fp32 or bf16 autocast of the backbone, NCHW or channels_last, eager or compiled.

Each configuration runs in a fresh process (oneDNN picks and caches its kernels
per process, and one configuration's warm-up must not be another's), on random
images of the training shape: ResNet18 with the small stem, forward, Cauchy
InfoNCE, backward, SGD step, as in medcne's loop. Prints views/s (the best
step after warm-up) and the ratio to fp32 NCHW (what medcne did before it used
bf16 and channels_last on CPUs), and for ``--compile`` the first step's time.

    .venv/bin/python bench/cpu_precision.py --width 16 --batch-size 128 --threads 2
    .venv/bin/python bench/cpu_precision.py --width 16 --compile      # adds torch.compile (inductor)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = "--child"


def one(width: int, batch: int, size: int, precision: str, layout: str, compiled: bool, steps: int) -> dict:
    """Time ``steps`` training steps of one configuration in this process."""
    import torch

    from medcne.losses import cauchy_infonce
    from medcne.models import TSimCNENet
    from medcne.train import Stage
    from medcne.train.loop import compile_backbone, contrastive_step, make_optimizer

    model = TSimCNENet("resnet18", 3, width, size <= 32, 128, torch.Generator().manual_seed(0)).train()
    model.amp_dtype = torch.bfloat16 if precision == "bf16" else None
    x = torch.rand(2 * batch, 3, size, size)
    if layout == "channels_last":
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), Stage("bench", 1, 0.01))
    backbone = compile_backbone(model) if compiled else None
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        loss = contrastive_step(model, x, cauchy_infonce, backbone=backbone)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"views_per_s": 2 * batch / min(times[2:]), "first_s": times[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="also the compiled backbone (minutes of compiling)")
    p.add_argument(CHILD, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        precision, layout, compiled = json.loads(args.child)
        print(json.dumps(one(args.width, args.batch_size, args.size, precision, layout, compiled, args.steps)))
        return
    import torch

    from medcne.device import machine_name, native_bf16

    print(f"machine: {machine_name()}; torch {torch.__version__}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"ResNet18 width {args.width}, batch {args.batch_size} ({2 * args.batch_size} views of "
          f"{args.size}x{args.size}), best of {args.steps} steps")
    precisions = ["fp32", "bf16"] if native_bf16(torch.device("cpu")) else ["fp32"]
    configs = [(p_, lay, False) for p_ in precisions for lay in ("NCHW", "channels_last")]
    if args.compile:
        configs += [(p_, "channels_last", True) for p_ in precisions]
    base = None
    for config in configs:
        argv = [sys.executable, __file__, CHILD, json.dumps(config), "--width", str(args.width),
                "--batch-size", str(args.batch_size), "--size", str(args.size), "--threads", str(args.threads),
                "--steps", str(args.steps)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        base = base or r["views_per_s"]
        name = f"{config[0]} {config[1]}{' compiled' if config[2] else ''}"
        extra = f", first step {r['first_s']:.1f} s" if config[2] else ""
        print(f"{name:<28} {r['views_per_s']:8.0f} views/s  x{r['views_per_s'] / base:.2f} vs fp32 NCHW{extra}")


if __name__ == "__main__":
    main()
