"""Laterality: does the orientation-preserving preset 'none' keep left and right apart where 'simclr' cannot?

CT and X-ray images have a canonical orientation (the patient's left is on the
image's right), and some classes differ only by side (kidney left / kidney
right). We build such a dataset from BloodMNIST offline: a stratified subset of
N cells is given a fixed left-right asymmetry, as anatomy has (``--frame ramp``:
brightness falling from 100% on the right edge to ``--ramp`` on the left;
``--frame none`` keeps the cells as they are), then every image is mirrored and
the mirrored copies get their own class ("basophil (mirrored)"...): 2N images,
2C classes. t-SimCNE with ``none`` (crops and colour only) and with ``simclr``
(horizontal flips, which make an image and its mirror the same) run as one
``medcne sweep``; for each map we report kNN accuracy (k = 15, the paper's
split) on the 2C classes (metrics.json), on the side alone (original or
mirrored) and on the cell type alone, and the ratio none / simclr.

    python bench/laterality.py --n 250 --seeds 1 --out build/laterality        # minutes (small scale)
    python bench/laterality.py --n 2000 --seeds 3 --out build/laterality-full  # the full run

The sweep folder (``OUT/sweep``) is resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from medcne.datasets import load_dataset
from medcne.device import machine_name
from medcne.io import save_npz
from medcne.metrics import knn_accuracy
from medcne.runs import read_run
from medcne.sweep import is_finished, run_sweep, shorthand

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "bloodmnist28.npz"


def mirrored_dataset(data, frame: str, ramp: float):
    """Images (2N, H, W, C) uint8, labels (2N,), class names (2C): originals, then their mirrors."""
    images = data.to_numpy().astype(np.float32)
    if frame == "ramp":
        width = images.shape[2]
        images *= np.linspace(ramp, 1.0, width, dtype=np.float32)[None, None, :, None]
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    mirrored = images[:, :, ::-1]
    names = list(data.class_names)
    labels = np.concatenate([data.labels, data.labels + len(names)])
    ids = np.concatenate([data.ids, np.char.add(data.ids.astype(str), "-mirrored")])
    return np.concatenate([images, mirrored]), labels, names + [f"{n} (mirrored)" for n in names], ids


def machine() -> str:
    import torch

    return f"{machine_name()}, torch threads {torch.get_num_threads()}"


def scores(run, n_classes: int) -> dict:
    labels = run.labels
    return {
        "both": run.metrics["knn_accuracy"],
        "side": knn_accuracy(run.embedding, (labels >= n_classes).astype(np.int64)),
        "type": knn_accuracy(run.embedding, labels % n_classes),
        "seconds": run.metrics.get("seconds"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA), help="a labelled dataset (default: ../shared/data/bloodmnist28.npz)")
    p.add_argument("--n", type=int, default=250, help="original images (a stratified subset); the set has 2N")
    p.add_argument("--seeds", default="1", help="a count or a list, as for medcne sweep")
    p.add_argument("--frame", choices=["ramp", "none"], default="ramp")
    p.add_argument("--ramp", type=float, default=0.6, help="brightness at the left edge with --frame ramp")
    p.add_argument("--epochs", help="t-SimCNE epochs (default: --quick's 12,1,6)")
    p.add_argument("--width", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    p.add_argument("--out", default=str(ROOT / "build" / "laterality"))
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = load_dataset(args.data, subset=args.n, seed=0)
    images, labels, names, ids = mirrored_dataset(data, args.frame, args.ramp)
    path = save_npz(out / "laterality.npz", images=images, labels=labels, class_names=np.array(names), ids=ids)
    print(f"{len(images)} images {images.shape[1:]}, {len(names)} classes, frame {args.frame}; {machine()}",
          flush=True)
    overrides = {"quick": True, "device": "cpu", "epochs": args.epochs, "width": args.width,
                 "batch_size": args.batch_size}
    config = shorthand(path, {}, ["none", "simclr"], [], args.seeds)
    start = time.perf_counter()
    run_sweep(config, out / "sweep", {k: v for k, v in overrides.items() if v is not None}, verbose=False)
    print(f"sweep: {time.perf_counter() - start:.0f} s")
    rows = {}
    for preset in ("none", "simclr"):
        folders = sorted((out / "sweep" / "laterality" / preset).glob("seed*"))
        rows[preset] = [scores(read_run(f), len(data.class_names)) for f in folders if is_finished(f)]
    print(f"{'preset':8s} {'kNN, 2C classes':>16s} {'kNN, side':>10s} {'kNN, type':>10s} {'seconds':>8s}")
    for preset, runs in rows.items():
        mean = {k: float(np.mean([r[k] for r in runs])) for k in ("both", "side", "type", "seconds")}
        print(f"{preset:8s} {mean['both']:16.1f} {mean['side']:10.1f} {mean['type']:10.1f} {mean['seconds']:8.0f}"
              f"   ({len(runs)} seed(s))")
    ratio = {k: np.mean([r[k] for r in rows["none"]]) / np.mean([r[k] for r in rows["simclr"]])
             for k in ("both", "side", "type")}
    print("ratio none / simclr: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))


if __name__ == "__main__":
    main()
