"""The GPU goals in one short run (issue 11), for a bare machine with one CUDA GPU.

Runs with the machine's own ``python3`` and ``PYTHONPATH=src`` (no venv, no
network, no openTSNE needed). Every figure is printed with its goal beside it,
and the summary is written to ``$OUT/gpu_checks.md`` when ``--out``/``$OUT``
is set. Without a GPU each section prints one line saying it was skipped, and
the script exits 0 (a dry run).

Sections:

1. augmentation views/s at 2 x 1024 views per call, per preset, 28 and 96 px,
   eager and compiled (goal: >= 1,000,000 views/s at 28 px);
2. our loop vs the model alone, views/s at batch 1024, ResNet18 width 64, 28 px,
   17,092 images (goal: loop / model-only >= 0.95);
3. host syncs per steady-state training step under
   ``torch.cuda.set_sync_debug_mode("warn")`` (goal: 0);
4. a real three-stage fit (epochs 3, 1, 3) on 17,092 images with per-stage
   time and compile time, projected to the paper's 1000 / 50 / 450 epochs
   (goal: <= 15 minutes on one H100/H200), and peak GPU memory.

Data: ``.device-data/bloodmnist28.npz`` when present (copy it there from
../shared/data and name the folder in the device tool's ``carry``), else the
bundled 2,000-image sample tiled to 17,092 images (same size, same pixels
statistics; fine for speed, meaningless for quality).

    PYTHONPATH=src python3 bench/gpu_checks.py --out build/gpu-checks
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from medcne.device import machine_name

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 17_092  # BloodMNIST
PRESETS = ("simclr", "rot90", "rotate")


class Report:
    """Lines printed as they come and kept for the summary file."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def save(self, folder: str | None) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "gpu_checks.md").write_text("\n".join(self.lines) + "\n", encoding="utf-8")


def load_data():
    from medcne.datasets import from_array, load_dataset, load_sample

    real = ROOT / ".device-data" / "bloodmnist28.npz"
    if real.is_file():
        return load_dataset(real), f"{real.name} ({N_IMAGES:,} BloodMNIST images)"
    sample = load_sample()
    reps = -(-N_IMAGES // len(sample))
    images = np.concatenate([sample.to_numpy()] * reps)[:N_IMAGES]
    labels = np.concatenate([sample.labels] * reps)[:N_IMAGES]
    return from_array(images, labels, sample.class_names), f"bundled sample tiled to {N_IMAGES:,} images"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# Sizes of a real run, and of the CPU proxy (--proxy: the same code paths at toy scale).
FULL = dict(views=1024, batch=1024, width=64, fit_epochs=(3, 1, 3), sync_batch=256, n=N_IMAGES)
PROXY = dict(views=16, batch=32, width=2, fit_epochs=(1, 1, 1), sync_batch=16, n=256)


def augmentation(report: Report, images: np.ndarray, seconds: float, device, size_of: dict) -> None:
    from medcne.augment import augmenter_for

    n = size_of["views"]
    report(f"## 1. Augmentation, 2 x {n} views per call (goal: >= 1,000,000 views/s at 28 px)")
    report("| size | preset | eager views/s | compiled views/s | compile s |")
    report("|---:|---|---:|---:|---:|")
    for size in (28, 96):
        x = torch.from_numpy(images[:n]).permute(0, 3, 1, 2).contiguous().to(device)
        if size != x.shape[-1]:
            x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True)
            x = x.round().clamp(0, 255).to(torch.uint8)
        batch = torch.cat([x, x])
        for preset in PRESETS:
            rates = []
            for compiled in (False, True):
                aug = augmenter_for(images, preset, compile=compiled)
                g = torch.Generator(device).manual_seed(0)
                t0 = time.perf_counter()
                aug(batch, g)
                sync()
                first = time.perf_counter() - t0
                calls, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    aug(batch, g)
                    calls += 1
                sync()
                rates.append((2 * n * calls / (time.perf_counter() - t0), first))
            report(f"| {size} | {preset} | {rates[0][0]:,.0f} | {rates[1][0]:,.0f} | {rates[1][1]:.1f} |")


def loop_vs_model(report: Report, data, epochs: int, device, size_of: dict) -> None:
    from medcne.augment import augmenter_for
    from medcne.losses import cauchy_infonce
    from medcne.models import TSimCNENet
    from medcne.train import Generators, ImageStore, Stage, train
    from medcne.train.loop import contrastive_step, make_optimizer, prepare_model

    batch, width = size_of["batch"], size_of["width"]
    h, w, c = data.image_shape
    report(f"## 2. Loop vs model only: batch {batch}, ResNet18 width {width}, {h} px, {len(data):,} images "
           "(goal: ratio >= 0.95)")
    steps = epochs * (len(data) // batch)

    def model_only() -> float:
        model = TSimCNENet("resnet18", c, width, h <= 32, 128, torch.Generator().manual_seed(0))
        prepare_model(model, device, "bf16" if device.type == "cuda" else "fp32")
        opt = make_optimizer(model.parameters(), Stage("b", 1, 0.01), device.type)
        x = torch.rand(2 * batch, c, h, w, device=device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        for i in range(steps + 3):
            if i == 3:
                sync()
                t0 = time.perf_counter()
            loss = contrastive_step(model, x, cauchy_infonce)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return 2 * batch * steps / (time.perf_counter() - t0)

    def loop() -> float:
        gens = Generators.from_rng(np.random.default_rng(0), device)
        model = TSimCNENet("resnet18", c, width, h <= 32, 128, gens.init)
        model.amp_dtype = torch.bfloat16 if device.type == "cuda" else None  # as the estimator on CUDA
        marks = []

        def mark(end):
            sync()
            marks.append(time.perf_counter())

        train(model, ImageStore(data, device), (Stage("bench", epochs + 1, 0.01),), batch_size=batch,
              augment=augmenter_for(data.images, "rotate"), loss_fn=cauchy_infonce, generators=gens,
              progress=False, on_epoch=mark)
        return 2 * batch * steps / (marks[-1] - marks[0])

    before, ours, after = model_only(), loop(), model_only()
    limit = (before + after) / 2
    report(f"model only: {limit:,.0f} views/s (before {before:,.0f}, after {after:,.0f}); "
           f"our loop (rotate): {ours:,.0f} views/s; ratio {ours / limit:.3f} (goal >= 0.95)")


def syncs_per_step(report: Report, data, device, size_of: dict) -> None:
    from medcne.augment import augmenter_for
    from medcne.losses import cauchy_infonce
    from medcne.models import TSimCNENet
    from medcne.train import Generators, ImageStore, tsimcne_stages
    from medcne.train.loop import Job, begin_stage, contrastive_step, prepare_model

    report("## 3. Host syncs per steady-state training step (goal: 0)")
    if device.type != "cuda":
        report("skipped: torch.cuda.set_sync_debug_mode needs a GPU (tests/test_gpu_contract.py audits the ops on CPU)")
        return
    b = size_of["sync_batch"]
    for preset in PRESETS:
        gens = Generators.from_rng(np.random.default_rng(0), device)
        model = TSimCNENet("resnet18", 3, 16, True, 128, gens.init)
        prepare_model(model, device, "bf16")
        job = Job(model, ImageStore(data, device), b, augmenter_for(data.images, preset), cauchy_infonce, gens)
        for stage in tsimcne_stages((1, 1, 1), lr=0.01):
            opt = begin_stage(model, stage, gens, fresh=True)
            order = torch.randperm(len(job.store), generator=gens.batch, device=device)
            steps, frozen = 6, stage.train == "last"

            def step(s, job=job, order=order, gens=gens, model=model, frozen=frozen, opt=opt):
                batch = job.store.batch(order[s * b : (s + 1) * b])
                views = job.augment(torch.cat([batch, batch]), gens.augment)
                loss = contrastive_step(model, views.contiguous(memory_format=torch.channels_last),
                                        cauchy_infonce, frozen=frozen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            step(0)
            sync()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    for s in range(1, steps):
                        step(s)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
            where = f" (first: {str(syncs[0].message)[:120]})" if syncs else ""
            report(f"{preset}, stage {stage.name}: {len(syncs) / (steps - 1):.1f} syncs per step{where}")


def three_stages(report: Report, data, device, size_of: dict) -> None:
    from medcne import TSimCNE

    epochs, batch, width = size_of["fit_epochs"], size_of["batch"], size_of["width"]
    cuda = device.type == "cuda"
    report(f"## 4. Three-stage fit, epochs {'/'.join(map(str, epochs))}, batch {batch}, width {width}, "
           f"compile: {cuda}, {len(data):,} images (goal: paper schedule <= 15 min)")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    # Compiling with inductor takes minutes on a CPU: the proxy checks the code path only.
    est = TSimCNE(epochs=epochs, batch_size=batch, width=width, preset="rotate", compile=cuda,
                  random_state=0, verbose=False, device=device.type).fit(data)
    total = time.perf_counter() - t0
    seconds = {}
    for row in est.history_:
        spe = len(data) // est.batch_size_
        seconds.setdefault(row["stage"], []).append(2 * est.batch_size_ * spe / row["views_per_s"])
    first = seconds[1][0]
    steady = {s: float(np.median(v[1:] if len(v) > 1 else v)) for s, v in seconds.items()}
    compile_s = max(0.0, first - steady[1])
    for s, v in seconds.items():
        report(f"stage {s}: epochs {', '.join(f'{x:.2f}' for x in v)} s (steady {steady[s]:.2f} s/epoch)")
    paper = {1: 1000, 2: 50, 3: 450}
    projected = sum(steady[s] * paper[s] for s in paper) + compile_s
    report(f"compile (first epoch minus a steady one): {compile_s:.1f} s; whole fit incl. embedding: {total:.1f} s")
    report(f"projected paper schedule 1000/50/450: {projected / 60:.1f} min (goal <= 15 min)")
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    report(f"peak GPU memory: {peak:.2f} GiB; "
           f"map dtype {est.embedding_.dtype}, finite {bool(np.isfinite(est.embedding_).all())}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_checks.md (default $OUT)")
    p.add_argument("--seconds", type=float, default=2.0, help="timing per augmentation case")
    p.add_argument("--epochs", type=int, default=4, help="timed epochs of the loop benchmark")
    p.add_argument("--proxy", action="store_true",
                   help="run every section on the CPU at toy sizes (checks this script, measures nothing)")
    args = p.parse_args()
    report = Report()
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name() if cuda else "no CUDA GPU"
    report(f"# GPU checks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    report(f"machine: {gpu}; CPU {machine_name()}; "
           f"torch {torch.__version__}")
    if not cuda and not args.proxy:
        for name in ("augmentation", "loop vs model only", "syncs per step", "three-stage fit"):
            report(f"skipped {name}: no CUDA GPU on this machine")
        report.save(args.out)
        return 0
    device, size_of = (torch.device("cuda"), FULL) if cuda and not args.proxy else (torch.device("cpu"), PROXY)
    if args.proxy:
        report("PROXY RUN on the CPU at toy sizes: it checks that the script runs; its figures mean nothing")
    data, source = load_data()
    data = data.take(np.arange(size_of["n"])) if size_of["n"] < len(data) else data
    report(f"data: {source}, {len(data):,} used")
    for section in (lambda: augmentation(report, data.to_numpy(), args.seconds, device, size_of),
                    lambda: loop_vs_model(report, data, args.epochs, device, size_of),
                    lambda: syncs_per_step(report, data, device, size_of),
                    lambda: three_stages(report, data, device, size_of)):
        try:
            section()
        except Exception as exc:  # report and go on: one broken section must not hide the others
            report(f"FAILED: {type(exc).__name__}: {exc}")
        report.save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
