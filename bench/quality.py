"""Quality of t-SimCNE maps on real data, on a CPU (issue 4).

BloodMNIST subset of 4,000 images (``numpy.random.default_rng(0).choice(17092,
4000, replace=False)`` of ``../shared/data/bloodmnist28.npz``), a narrow
ResNet18 and a short schedule; kNN accuracy (k = 15, stratified 9:1) and
silhouette of the 2D map, next to t-SNE of the pixels of the same images
(openTSNE defaults) computed in the same run with ``--tsne``.

    .venv/bin/python bench/quality.py --presets rotate --epochs 60,5,15 --batch-size 128 --width 16
    .venv/bin/python bench/quality.py --tsne --presets simclr,rot90,rotate

Each result is printed and appended as one JSON line to ``--log``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from medcne.datasets import load_dataset
from medcne.device import machine_name
from medcne.estimator import TSimCNE
from medcne.metrics import knn_accuracy, silhouette

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "bloodmnist28.npz"


def subset():
    data = load_dataset(DATA)
    idx = np.random.default_rng(0).choice(len(data), 4000, replace=False)
    return data.take(idx)


def machine() -> str:
    return f"{machine_name()}, torch threads {torch.get_num_threads()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="rotate", help="comma-separated presets")
    p.add_argument("--epochs", default="60,5,15")
    p.add_argument("--warmup", default="5,0,2")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", default="auto")
    p.add_argument("--stage3-lr-factor", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--knn-every", type=int, default=0, help="kNN of the current output every K epochs")
    p.add_argument("--tsne", action="store_true", help="also t-SNE of the pixels (openTSNE defaults)")
    p.add_argument("--tag", default="")
    p.add_argument("--log", default=str(ROOT / "build" / "quality_log.jsonl"), help="JSON lines (build/ is git-ignored)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    data = subset()
    print(f"{len(data)} images {data.image_shape}; {machine()}", flush=True)
    results = []
    if args.tsne:
        from openTSNE import TSNE

        t0 = time.perf_counter()
        X = data.to_numpy().reshape(len(data), -1).astype(np.float32) / 255.0
        Z = np.asarray(TSNE(random_state=args.seed, n_jobs=max(torch.get_num_threads(), 1)).fit(X))
        results.append({"method": "tsne-pixels", "seconds": time.perf_counter() - t0, "Z": Z})
    for preset in args.presets.split(","):
        lr = args.lr if args.lr == "auto" else float(args.lr)
        est = TSimCNE(
            epochs=args.epochs, warmup=args.warmup, batch_size=args.batch_size, lr=lr,
            stage3_lr_factor=args.stage3_lr_factor, width=args.width, preset=preset, device="cpu",
            random_state=args.seed, verbose=False, knn_every=args.knn_every,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        Z = est.fit_transform(data)
        # CPU seconds too: on a shared machine wall time says more about the neighbours.
        results.append({"method": f"tsimcne-{preset}", "seconds": time.perf_counter() - t0,
                        "cpu_seconds": time.process_time() - c0, "Z": Z,
                        "final_loss": est.history_[-1]["loss"],
                        "knn_curve": [(r["stage"], r["epoch"], round(r["knn"], 1)) for r in est.history_ if "knn" in r],
                        "views_per_s": float(np.median([r["views_per_s"] for r in est.history_]))})
    for r in results:
        Z = r.pop("Z")
        r.update(
            knn=knn_accuracy(Z, data.labels), silhouette=silhouette(Z, data.labels),
            epochs=args.epochs, warmup=args.warmup, batch_size=args.batch_size, lr=args.lr,
            stage3_lr_factor=args.stage3_lr_factor, width=args.width, seed=args.seed, tag=args.tag,
            machine=machine(), date=time.strftime("%Y-%m-%d %H:%M"),
        )
        print(json.dumps(r), flush=True)
        with open(args.log, "a") as fh:
            fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
