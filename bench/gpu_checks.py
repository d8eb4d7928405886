"""The GPU goals, one section per call, each judged: PASS, FAIL or SKIP (bench/gpu_checks.sh runs them).

Runs with the machine's own ``python3`` and ``PYTHONPATH=src`` (no venv, no
network, no openTSNE needed). ``--section NAME`` runs one section; it prints its
figures with their goals, appends them to ``$OUT/gpu_checks.md``, and appends one
verdict line per goal to ``$OUT/verdicts.txt``: ``PASS <goal>: <figure>``,
``FAIL <goal>: <figure>`` or ``SKIP <goal>: <why>``. Without a GPU a section
writes one SKIP line and returns at once; ``--proxy`` runs its code at toy sizes
on the CPU (compiles with the ``eager`` backend), which checks the script, not
the figures (only the sync audit, which models a GPU, is judged there).

Sections, in the order the shell script runs them (the one that matters most first):

1. ``projection``: a real three-stage fit (epochs 3, 1, 3, ``compile=True``) on
   17,092 images, per-stage time, projected to the paper's 1000 / 50 / 450
   epochs (goal: <= 15 min on one H100/H200); the map is float32 and finite;
2. ``syncs``: the real fit, all three stages, every preset, under PyTorch's
   ``set_sync_debug_mode("warn")`` via :mod:`medcne.train.syncaudit` (goal: 0
   syncs in every steady step);
3. ``loop``: our loop vs the model alone, batch 1024, ResNet18 width 64, 28 px,
   cuDNN benchmark on and the same bf16 backbone on both sides (goal: ratio >= 0.95);
4. ``augment``: views/s at 2 x 1024 views per call, per preset, eager and compiled
   at 28 px, eager at 96 px (goal: >= 1,000,000 compiled views/s at 28 px, every preset).

Data: ``.device-data/bloodmnist28.npz`` when present (copy it there from
../shared/data and name the folder in the device tool's ``carry``), else the
bundled 2,000-image sample tiled to 17,092 images (same size and pixel
statistics: fine for speed, meaningless for quality).

    PYTHONPATH=src python3 bench/gpu_checks.py --section projection --out build/gpu-checks
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from medcne.device import machine_name

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 17_092  # BloodMNIST
PRESETS = ("simclr", "rot90", "rotate")
SECTIONS = ("projection", "syncs", "loop", "augment")
PAPER_EPOCHS = {1: 1000, 2: 50, 3: 450}
GOALS = {"projection_min": 15.0, "loop_ratio": 0.95, "views_per_s": 1_000_000}

# Sizes of a real run, and of the CPU proxy (the same code paths at toy scale).
FULL = dict(views=1024, batch=1024, width=64, fit_epochs=(3, 1, 3), sync_batch=256, sync_n=4096, n=N_IMAGES)
PROXY = dict(views=16, batch=32, width=2, fit_epochs=(1, 1, 1), sync_batch=16, sync_n=48, n=256)


class Report:
    """Lines printed as they come, appended to the summary; verdicts to their own file."""

    def __init__(self, folder: str | None):
        self.folder = Path(folder) if folder else None
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self._append("gpu_checks.md", line)

    def verdict(self, ok: bool | None, goal: str, detail: str) -> None:
        word = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        self(f"{word} {goal}: {detail}")
        self._append("verdicts.txt", f"{word} {goal}: {detail}")

    def _append(self, name: str, line: str) -> None:
        if self.folder:
            with open(self.folder / name, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def load_data(n: int):
    from medcne.datasets import from_array, load_dataset, load_sample

    real = ROOT / ".device-data" / "bloodmnist28.npz"
    if real.is_file():
        data, source = load_dataset(real), f"{real.name} ({N_IMAGES:,} BloodMNIST images)"
    else:
        sample = load_sample()
        reps = -(-N_IMAGES // len(sample))
        images = np.concatenate([sample.to_numpy()] * reps)[:N_IMAGES]
        labels = np.concatenate([sample.labels] * reps)[:N_IMAGES]
        data, source = from_array(images, labels, sample.class_names), f"bundled sample tiled to {N_IMAGES:,}"
    return (data.take(np.arange(n)) if n < len(data) else data), source


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def projection(report: Report, device, size_of: dict, proxy: bool) -> None:
    from medcne import TSimCNE

    data, source = load_data(size_of["n"])
    epochs, batch, width = size_of["fit_epochs"], size_of["batch"], size_of["width"]
    cuda = device.type == "cuda"
    report(f"## 1. Three-stage fit, epochs {'/'.join(map(str, epochs))}, batch {batch}, width {width}, "
           f"compile: True, {len(data):,} images ({source})")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    est = TSimCNE(epochs=epochs, batch_size=batch, width=width, preset="rotate", compile=True,
                  random_state=0, verbose=False, device=device.type).fit(data)
    total = time.perf_counter() - t0
    seconds: dict[int, list[float]] = {}
    for row in est.history_:
        spe = len(data) // est.batch_size_
        seconds.setdefault(row["stage"], []).append(2 * est.batch_size_ * spe / row["views_per_s"])
    steady = {s: float(np.median(v[1:] if len(v) > 1 else v)) for s, v in seconds.items()}
    compile_s = max(0.0, seconds[1][0] - steady[1]) + max(0.0, seconds[3][0] - steady[3])
    for s, v in seconds.items():
        report(f"stage {s}: epochs {', '.join(f'{x:.2f}' for x in v)} s (steady {steady[s]:.2f} s/epoch)")
    minutes = (sum(steady[s] * PAPER_EPOCHS[s] for s in PAPER_EPOCHS) + compile_s) / 60
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    report(f"compile (first epochs minus steady ones): {compile_s:.1f} s; whole fit incl. embedding: {total:.1f} s; "
           f"peak GPU memory {peak:.2f} GiB")
    finite = bool(np.isfinite(est.embedding_).all())
    report(f"projected paper schedule 1000/50/450: {minutes:.1f} min; map dtype {est.embedding_.dtype}, finite {finite}")
    judged = None if proxy else minutes <= GOALS["projection_min"]
    report.verdict(judged, "projection <= 15 min", f"{minutes:.1f} min" + (" (proxy: not judged)" if proxy else ""))
    report.verdict(est.embedding_.dtype == np.float32 and finite, "float32 finite map",
                   f"dtype {est.embedding_.dtype}, finite {finite}")


def syncs(report: Report, device, size_of: dict, proxy: bool) -> None:
    from medcne import TSimCNE
    from medcne.train.syncaudit import audit_training

    data, _ = load_data(size_of["sync_n"])
    b = size_of["sync_batch"]
    kind = "model" if proxy else "cuda"
    report(f"## 2. Host syncs in steady training steps: the real fit, all stages, batch {b}, {len(data):,} images, "
           f"audit: {'CPU model of a GPU' if proxy else 'torch.cuda.set_sync_debug_mode'}")
    bad = []
    for preset in PRESETS:
        with audit_training(kind) as audit:
            TSimCNE(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=b, width=size_of["width"], preset=preset,
                    random_state=0, verbose=False, device=device.type).fit(data)
        for ea in audit.epochs:
            report(f"{preset}, stage {ea.stage}: {ea.syncs_per_step:.1f} syncs per steady step "
                   f"({len(ea.steady)} steps); per epoch: {len(ea.setup)} before the first step, "
                   f"{len(ea.end)} after the last")
        if audit.step_syncs() or audit.judged() == 0:
            bad.append(f"{preset}: {audit.summary()}")
    report.verdict(not bad, "0 syncs per step in every preset and stage", "; ".join(bad) or "0 in all")


def loop(report: Report, device, size_of: dict, proxy: bool, epochs: int = 4) -> None:
    from medcne.augment import augmenter_for
    from medcne.losses import cauchy_infonce
    from medcne.models import TSimCNENet
    from medcne.train import Generators, ImageStore, Stage, train
    from medcne.train.loop import contrastive_step, cudnn_benchmark, make_optimizer, prepare_model

    data, _ = load_data(size_of["n"])
    batch, width, (h, w, c) = size_of["batch"], size_of["width"], data.image_shape
    precision = "bf16" if device.type == "cuda" else "fp32"
    report(f"## 3. Loop vs model only: batch {batch}, ResNet18 width {width}, {h} px, {len(data):,} images, "
           f"{precision} backbone and cuDNN benchmark on both sides, eager")
    steps = epochs * (len(data) // batch)

    def model_only() -> float:
        model = TSimCNENet("resnet18", c, width, h <= 32, 128, torch.Generator().manual_seed(0))
        prepare_model(model, device, precision)
        opt = make_optimizer(model.parameters(), Stage("b", 1, 0.01), device.type)
        x = torch.rand(2 * batch, c, h, w, device=device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with cudnn_benchmark(device):  # as train() runs
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

    def ours() -> float:
        gens = Generators.from_rng(np.random.default_rng(0), device)
        model = TSimCNENet("resnet18", c, width, h <= 32, 128, gens.init)
        prepare_model(model, device, precision)
        marks = []
        train(model, ImageStore(data, device), (Stage("bench", epochs + 1, 0.01),), batch_size=batch,
              augment=augmenter_for(data.images, "rotate"), loss_fn=cauchy_infonce, generators=gens,
              progress=False, on_epoch=lambda end: (sync(), marks.append(time.perf_counter())))
        return 2 * batch * steps / (marks[-1] - marks[0])

    before, rate, after = model_only(), ours(), model_only()
    limit = (before + after) / 2
    ratio = rate / limit
    report(f"model only: {limit:,.0f} views/s (before {before:,.0f}, after {after:,.0f}); "
           f"our loop (rotate): {rate:,.0f} views/s; ratio {ratio:.3f}")
    report.verdict(None if proxy else ratio >= GOALS["loop_ratio"], "loop/model >= 0.95",
                   f"{ratio:.3f}" + (" (proxy: not judged)" if proxy else ""))


def augment(report: Report, device, size_of: dict, proxy: bool, seconds: float = 1.0) -> None:
    from medcne.augment import augmenter_for

    data, _ = load_data(size_of["n"])
    n, images = size_of["views"], data.to_numpy()[: size_of["views"]]
    report(f"## 4. Augmentation, 2 x {n} views per call")
    report("| size | preset | eager views/s | compiled views/s | compile s |")
    report("|---:|---|---:|---:|---:|")
    slow = []
    for size in (28, 96):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
        if size != x.shape[-1]:
            x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True)
            x = x.round().clamp(0, 255).to(torch.uint8)
        batch = torch.cat([x, x])
        for preset in PRESETS:
            rates = [_views_per_s(augmenter_for(images, preset, engine="torch", compile=compiled), batch, seconds)
                     for compiled in ((False, True) if size == 28 else (False,))]
            (eager, _), (fast, first) = rates[0], rates[-1]
            shown = f"{fast:,.0f} | {first:.1f}" if size == 28 else "- | -"
            report(f"| {size} | {preset} | {eager:,.0f} | {shown} |")
            if size == 28 and fast < GOALS["views_per_s"]:
                slow.append(f"{preset} {fast:,.0f}")
    detail = "; ".join(slow) or "every preset"
    report.verdict(None if proxy else not slow, ">= 1M compiled views/s at 28 px",
                   detail + (" (proxy: not judged)" if proxy else ""))


def _views_per_s(aug, batch: torch.Tensor, seconds: float) -> tuple[float, float]:
    """(views/s over ``seconds`` after the first call, seconds of the first call: the compile)."""
    g = torch.Generator(batch.device).manual_seed(0)
    t0 = time.perf_counter()
    aug(batch, g)
    sync()
    first = time.perf_counter() - t0
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        aug(batch, g)
        calls += 1
    sync()
    return batch.shape[0] * calls / (time.perf_counter() - t0), first


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--section", choices=SECTIONS, required=True)
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_checks.md and verdicts.txt")
    p.add_argument("--proxy", action="store_true", help="run on the CPU at toy sizes (checks the code path)")
    args = p.parse_args()
    report = Report(args.out)
    cuda = torch.cuda.is_available() and not args.proxy
    if not cuda and not args.proxy:
        report.verdict(None, args.section, "skipped: no CUDA GPU on this machine")
        return 0
    if args.proxy:
        from medcne.augment import augmenter
        from medcne.train import loop as train_loop

        # Inductor compiles C++ for minutes on a CPU: the proxy traces the same graphs, runs them eagerly.
        augmenter.COMPILE_BACKEND = train_loop.COMPILE_BACKEND = "eager"
    device = torch.device("cuda" if cuda else "cpu")
    report(f"<!-- {args.section}: {machine_name(device)}, torch {torch.__version__}"
           f"{', PROXY at toy sizes: figures mean nothing' if args.proxy else ''} -->")
    section = {"projection": projection, "syncs": syncs, "loop": loop, "augment": augment}[args.section]
    section(report, device, PROXY if args.proxy else FULL, args.proxy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
