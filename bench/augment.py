"""Views/s of medcne.augment against the reference pipeline, in the same run.

Reference: torchvision transforms on PIL images, one image at a time, two views
per image, in a DataLoader with one worker process per core (as the t-SimCNE
reference code feeds its GPU). Ours: ``Augmenter`` called twice per batch of
1024 on a uint8 tensor, using all cores; on CPU three ways: the compiled kernel
engine (the default there) writing new tensors, the same writing into two
reused ``out=`` buffers, and the torch engine (batched tensor ops).

    .venv/bin/python bench/augment.py                   # 28x28 and 96x96, simclr and rotate
    .venv/bin/python bench/augment.py --sizes 28 --recipes simclr --device cuda
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# Spinning OpenMP threads steal the core their partner needs on a busy, shared
# machine: measured here at load 8 on 2 cores, 1.8 s per call spinning against
# 0.11 s waiting passively. Must be set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms as T  # noqa: E402

from medcne.augment import Augmenter, border_colour  # noqa: E402
from medcne.device import machine_name

ROOT = Path(__file__).resolve().parents[1]
BLOODMNIST = ROOT.parent / "shared" / "data" / "bloodmnist28.npz"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return machine_name()


def load_images(n: int, size: int) -> tuple[np.ndarray, str]:
    """n BloodMNIST images (N x H x W x 3 uint8), upsampled bilinearly when size > 28."""
    if BLOODMNIST.exists():
        images, source = np.load(BLOODMNIST)["images"][:n], "bloodmnist28.npz"
    else:
        from medcne.datasets import load_sample

        images, source = load_sample().to_numpy()[:n], "bundled BloodMNIST sample"
    if len(images) < n:
        images = np.concatenate([images] * (n // len(images) + 1))[:n]
    if size != images.shape[1]:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        images = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        source += f" upsampled to {size}x{size}"
    return images, source


def reference_transform(recipe: str, size: int, fill: tuple[float, ...]) -> T.Compose:
    steps = []
    if recipe == "rotate":
        steps.append(T.RandomRotation((0, 360), interpolation=T.InterpolationMode.BILINEAR,
                                      fill=tuple(round(255 * c) for c in fill)))
    steps += [T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomHorizontalFlip()]
    if recipe == "rotate":
        steps.append(T.RandomVerticalFlip())
    steps += [
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
    ]
    return T.Compose(steps)


class TwoViews(torch.utils.data.Dataset):
    """Two views of each PIL image, as the reference t-SimCNE dataset returns them."""

    def __init__(self, images: np.ndarray, transform):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        return self.transform(img), self.transform(img)


def reference_views_per_s(images: np.ndarray, transform, workers: int, batch: int) -> float:
    loader = torch.utils.data.DataLoader(
        TwoViews(images, transform), batch_size=batch, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0, drop_last=True,
    )
    for _ in loader:  # start the workers (not timed)
        break
    start = time.perf_counter()
    n = sum(2 * len(a) for a, _ in loader)
    return n / (time.perf_counter() - start)


def ours_views_per_s(
    images: np.ndarray, aug: Augmenter, batch: int, device: str, seconds: float, reuse: bool = False
) -> float:
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    g = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    shape = (batch,) + tuple(x_all.shape[1:])
    out1, out2 = (torch.empty(shape, device=device) for _ in range(2)) if reuse else (None, None)
    idx = torch.randint(0, len(x_all), (batch,), generator=g, device=device)
    aug(x_all[idx], g, out=out1), aug(x_all[idx], g, out=out2)  # warm-up (and compile)
    sync()
    views, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or views == 0:
        idx = torch.randint(0, len(x_all), (batch,), generator=g, device=device)
        x = x_all[idx]
        aug(x, g, out=out1), aug(x, g, out=out2)
        views += 2 * batch
        sync()
    return views / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[28, 96])
    p.add_argument("--recipes", nargs="+", default=["simclr", "rotate"], choices=["simclr", "rotate"])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--ref-images", type=int, default=4096,
                   help="images per timed reference pass at 28x28 (a quarter of that at 96x96)")
    p.add_argument("--seconds", type=float, default=5.0, help="time per measurement of ours")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="reference worker processes")
    p.add_argument("--device", default="cpu", help="device of ours (the reference is CPU only)")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count())

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}; ours on {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print(f"reference: torchvision on PIL, DataLoader with {args.workers} workers; "
          f"ours: {torch.get_num_threads()} threads; batch {args.batch}; "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; load average {_load()}")
    cpu = args.device == "cpu"
    variants = [("auto", False), ("auto", True), ("torch", False)] if cpu else [("auto", False)]
    names = ["kernel", "kernel out=", "torch ops"] if cpu else ["ours"]
    print(f"{'size':>5} {'recipe':>7} {'reference':>10} " + " ".join(f"{n:>12} {'ratio':>6}" for n in names)
          + "   (views/s)")
    for size in args.sizes:
        n_ref = args.ref_images if size <= 32 else max(args.batch, args.ref_images // 4)
        images, source = load_images(max(n_ref, args.batch), size)
        fill = border_colour(images)
        for recipe in args.recipes:
            ref = reference_views_per_s(
                images[:n_ref], reference_transform(recipe, size, fill), args.workers, args.batch
            )
            ours = [
                ours_views_per_s(images, Augmenter(recipe, fill=fill, engine=engine), args.batch,
                                 args.device, args.seconds, reuse)
                for engine, reuse in variants
            ]
            print(f"{size:>5} {recipe:>7} {ref:>10,.0f} "
                  + " ".join(f"{v:>12,.0f} {v / ref:>5.1f}x" for v in ours), flush=True)
    print(f"data: {source}; load average at the end {_load()}")


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
