"""Turned and flipped copies found by `medcne qc`: the space's candidates alone against those plus the
upright thumbnails.

The bundled sample (2,000 BloodMNIST images) gets 13 planted copies of images
drawn at random: 3 each mirrored left-right, turned 90 and 180 degrees and
mirrored top-bottom, and 1 exact copy. A short t-SimCNE run (``--epochs``,
default 3,1,2 at width 8: the kind of map whose features do not yet put every
turned copy among its original's 15 nearest) is fitted on them; then, on the
run's backbone features, the near-duplicate check of ``medcne qc`` counts the
planted pairs it flags with the space's candidates only (the check before the
upright thumbnails) and with both, in the same process.

    python bench/qc_turned.py --out build/qc-turned
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from medcne.curate import image_checks, nearest_neighbours, quality_control
from medcne.curate.images import aligned_distances
from medcne.curate.qc import near_duplicates
from medcne.datasets.sample import SAMPLE_PATH
from medcne.device import machine_name
from medcne.runs import read_run
from medcne.runs.curate import run_points

KINDS = ["left-right", "turn 90", "turn 180", "top-bottom"] * 3 + ["exact"]
TURNS = [lambda x: x[:, ::-1], lambda x: np.rot90(x, 1), lambda x: np.rot90(x, 2), lambda x: x[::-1]] * 3 + [lambda x: x]


def planted(out: Path, seed: int) -> np.ndarray:
    """Write OUT/planted.npz; returns the (original, copy) index pairs."""
    z = np.load(SAMPLE_PATH)
    images, labels = z["images"], z["labels"]
    src = np.random.default_rng(seed).choice(len(images), len(TURNS), replace=False)
    copies = np.stack([turn(images[i]) for turn, i in zip(TURNS, src, strict=True)])
    np.savez(out / "planted.npz", images=np.concatenate([images, copies]),
             labels=np.concatenate([labels, labels[src]]), class_names=z["class_names"])
    return np.stack([src, len(images) + np.arange(len(src))], 1)


def found(index: np.ndarray, likely: np.ndarray, pairs: np.ndarray) -> list[bool]:
    return [bool(likely[c] and index[c] == o or likely[o] and index[o] == c) for o, c in pairs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/qc-turned"))
    ap.add_argument("--epochs", default="3,1,2")
    ap.add_argument("--width", default="8")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = planted(args.out, args.seed)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medcne", "fit", str(args.out / "planted.npz"), "--out", str(args.out / "run"),
                    "--overwrite", "--epochs", args.epochs, "--width", args.width, "--batch-size", "128",
                    "--preset", "rotate", "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)
    fit_s = time.perf_counter() - start
    run = read_run(args.out / "run")
    data = run.load_images(None)
    X, _ = run_points(run, "features", data, None, "cpu")
    nb = nearest_neighbours(X, 15)
    checks = image_checks(data.images)
    aligned_distances(checks.thumbnails[:2], np.zeros((2, 1), np.int64))  # the kernel compiled before timing
    t0 = time.perf_counter()
    index, _, likely = near_duplicates(nb, aligned_distances(checks.thumbnails, nb.indices))  # the space alone
    t1 = time.perf_counter()
    both = quality_control(None, checks=checks, neighbours=nb)
    t2 = time.perf_counter()
    before, after = found(index, likely, pairs), found(both.duplicate_index, both.likely_duplicate, pairs)
    print(f"{machine_name()}; fit {args.epochs} width {args.width}: {fit_s:.0f} s")
    for kind in dict.fromkeys(KINDS):
        sel = [i for i, k in enumerate(KINDS) if k == kind]
        print(f"{kind:11s} space only {sum(before[i] for i in sel)}/{len(sel)}   with upright {sum(after[i] for i in sel)}/{len(sel)}")
    print(f"all        space only {sum(before)}/{len(pairs)}  with upright {sum(after)}/{len(pairs)}  "
          f"(ratio {sum(after) / max(sum(before), 1):.2f})")
    print(f"images flagged as likely duplicates: space only {int(likely.sum())}, with upright "
          f"{int(both.likely_duplicate.sum())} (both images of each found pair are flagged)")
    print(f"duplicate check: space only {t1 - t0:.2f} s, the whole quality_control with upright {t2 - t1:.2f} s")


if __name__ == "__main__":
    main()
