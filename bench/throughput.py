"""Training throughput (views/s): our loop vs the model alone vs the reference `tsimcne`.

Three figures from the same process and machine, same backbone and batch size:

* **model only**: forward + backward + SGD step on random float tensors of the
  training shape (2B, C, H, W): the limit of the hardware for this model;
* **our loop**: :func:`medcne.train.train` on the bundled sample (images held as
  one tensor, views made by :class:`medcne.augment.Augmenter`), one stage,
  views/s of the epochs after the first;
* **reference** (``--reference``): ``tsimcne==0.3.12`` from PyPI, installed by
  this script into ``build/tsimcne-ref`` (git-ignored) with this venv's torch;
  time per epoch from the difference of a 1-epoch and a (1 + E)-epoch fit, so
  that start-up is not counted.

Each rate is given per wall-clock second and per CPU second (this process and
its children, e.g. the reference's DataLoader workers). On a machine shared with
other jobs the wall-clock rates drift with the neighbours' load; views per CPU
second do not, so the ratios are computed from those on CPU devices.

    .venv/bin/python bench/throughput.py --width 64 --batch-size 256 --n 1024 --epochs 3 --reference
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from medcne.augment import Augmenter
from medcne.datasets import load_sample
from medcne.device import amp_dtype, machine_name, native_bf16, resolve_device
from medcne.losses import cauchy_infonce
from medcne.models import TSimCNENet
from medcne.train import Generators, ImageStore, Stage, train
from medcne.train.loop import contrastive_step, make_optimizer, prepare_model

ROOT = Path(__file__).resolve().parents[1]
REF_VENV = ROOT / "build" / "tsimcne-ref"


def model_only(width: int, batch: int, shape, device, steps: int, precision: str) -> float:
    c, h, w = shape
    model = TSimCNENet("resnet18", c, width, h <= 32, 128, torch.Generator().manual_seed(0))
    prepare_model(model, device, precision)
    opt = make_optimizer(model.parameters(), Stage("b", 1, 0.01), device.type)
    x = torch.rand(2 * batch, c, h, w, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return step_rate(model, x, opt, steps, device)


def step_rate(model, x, opt, steps: int, device, warmup: int = 1) -> tuple[float, float]:
    """(views per wall second, views per CPU second) of ``steps`` training steps on views ``x``
    (forward, Cauchy loss, backward, ``opt``), after ``warmup`` untimed steps."""
    for i in range(steps + warmup):
        if i == warmup:
            sync(device)
            t0, c0 = time.perf_counter(), cpu_seconds()
        loss = contrastive_step(model, x, cauchy_infonce)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    views = len(x) * steps
    return views / (time.perf_counter() - t0), views / (cpu_seconds() - c0)


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children."""
    import resource

    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def our_loop(data, width: int, batch: int, device, epochs: int, precision: str) -> tuple[float, float]:
    """(views per wall second, views per CPU second) of the epochs after the first."""
    gens = Generators.from_rng(np.random.default_rng(0), device)
    c = data.image_shape[2]
    model = TSimCNENet("resnet18", c, width, data.image_shape[0] <= 32, 128, gens.init)
    model.amp_dtype = amp_dtype(precision)
    marks = []

    def mark(end):
        sync(device)
        marks.append((time.perf_counter(), cpu_seconds()))

    train(model, ImageStore(data, device), (Stage("bench", epochs + 1, 0.01),), batch_size=batch,
          augment=Augmenter("simclr"), loss_fn=cauchy_infonce, generators=gens, progress=False, on_epoch=mark)
    views = 2 * batch * (len(data) // batch) * epochs
    return views / (marks[-1][0] - marks[0][0]), views / (marks[-1][1] - marks[0][1])


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


REF_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np, torch
    from PIL import Image
    from tsimcne.tsimcne import TSimCNE
    images = np.load(sys.argv[1])["images"][: int(sys.argv[2])]
    batch, epochs, workers = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)
        def __getitem__(self, i):
            return Image.fromarray(images[i]), 0
    import resource
    def cpu():
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + child.ru_utime + child.ru_stime
    times, cpus = [], []
    for e in (1, 1 + epochs):
        est = TSimCNE(total_epochs=[e], lr=[0.01], warmup=[0], batch_size=batch, num_workers=workers)
        t0, c0 = time.perf_counter(), cpu()
        est.fit(DS())
        times.append(time.perf_counter() - t0)
        cpus.append(cpu() - c0)
    views = 2 * len(images) * epochs
    print("REF_VIEWS_PER_S", views / (times[1] - times[0]), views / (cpus[1] - cpus[0]))
""")


def reference(n: int, batch: int, epochs: int) -> tuple[float, float] | str:
    """views/s of tsimcne 0.3.12 (ResNet18 width 64), or why it could not run."""
    py = REF_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
        # Reuse this venv's torch/torchvision (no second multi-GB download).
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(site, "medcne_torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "tsimcne==0.3.12"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"pip could not install tsimcne==0.3.12: {r.stderr.strip().splitlines()[-1:]}"
    from medcne.datasets import SAMPLE_PATH

    # Same number of torch threads as our side, so CPU seconds compare like with like.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    r = subprocess.run([str(py), "-c", REF_SCRIPT, str(SAMPLE_PATH), str(n), str(batch), str(epochs),
                        str(min(os.cpu_count() or 1, 8))], capture_output=True, text=True, env=env)
    for line in r.stdout.splitlines():
        if line.startswith("REF_VIEWS_PER_S"):
            return float(line.split()[1]), float(line.split()[2])
    return f"reference run failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n", type=int, default=1024, help="images of the bundled sample to train on")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--precisions", default="auto",
                   help="comma-separated fp32,bf16 (default: fp32, and bf16 where the device has it natively)")
    p.add_argument("--reference", action="store_true", help="also time tsimcne==0.3.12 (installs it)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_sample().take(np.arange(args.n))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine_name()
    print(f"machine: {name}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"ResNet18 width {args.width}, batch {args.batch_size}, {args.n} images {data.image_shape}")
    precisions = (["fp32"] + (["bf16"] if native_bf16(device) else []) if args.precisions == "auto"
                  else args.precisions.split(","))
    steps = args.epochs * (args.n // args.batch_size)
    h, w, c = data.image_shape
    k = 1 if device.type == "cpu" else 0  # which rate the ratios use
    results = {}
    print("                   views/wall-s  views/CPU-s")
    for precision in precisions:
        # Model-only before and after our loop: the mean evens out drifting load on shared machines.
        before = model_only(args.width, args.batch_size, (c, h, w), device, steps, precision)
        ours = our_loop(data, args.width, args.batch_size, device, args.epochs, precision)
        after = model_only(args.width, args.batch_size, (c, h, w), device, steps, precision)
        limit = ((before[0] + after[0]) / 2, (before[1] + after[1]) / 2)
        results[precision] = ours
        print(f"{precision} model only : {limit[0]:12.1f} {limit[1]:12.1f}   (before {before[0]:.1f}, "
              f"after {after[0]:.1f} per wall s)")
        print(f"{precision} our loop   : {ours[0]:12.1f} {ours[1]:12.1f}   ours / model only = "
              f"{ours[k] / limit[k]:.3f}")
    if "fp32" in results and "bf16" in results:
        print(f"bf16 / fp32 (our loop): {results['bf16'][k] / results['fp32'][k]:.2f}x")
    if args.reference:
        ours = results[precisions[0]]
        ref = reference(args.n, args.batch_size, args.epochs)
        if isinstance(ref, tuple):
            print(f"reference  : {ref[0]:12.1f} {ref[1]:12.1f}   ours ({precisions[0]}) / reference = "
                  f"{ours[k] / ref[k]:.2f}x")
        else:
            print(f"reference  : not measured ({ref})")


if __name__ == "__main__":
    main()
