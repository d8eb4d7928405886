"""Three stages against dimension annealing at equal numbers of optimisation steps.

A shared machine makes wall-clock budgets meaningless, so both schedules get
the same epochs (hence the same steps) on the same images: each run is a fresh
``python -m medcne fit`` process (wall time and peak RSS measured around it, as
in bench/budget.py); its metrics.json gives kNN accuracy (one split and the mean
of 5) and silhouette; the saved model then gives the kNN accuracy of its
backbone features (128-D at width 16) on the same images. One JSON line per
run is appended to ``--log`` and a table row printed.

    .venv/bin/python bench/anneal_steps.py --data ../shared/data/bloodmnist28.npz --subset 4000 \\
        --configs stages,anneal --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--width", "16", "--batch-size", "256", "--lr", "0.12", "--preset", "rotate"]
# 15 epochs each: the CPU budget's stages (12:1:6, stage-3 lr x0.1) scaled to 15, against one annealed stage.
A15 = ["--epochs", "15", "--warmup", "2"]
CONFIGS = {
    "stages": ["--epochs", "10,1,4", "--warmup", "2,0,1", "--stage3-lr-factor", "0.1"],
    "anneal": ["--schedule", "anneal", *A15],
    "anneal-lr0.06": ["--schedule", "anneal", *A15, "--lr", "0.06"],
    "anneal-pwcos": ["--schedule", "anneal:shape=piecewise-cosine", *A15],
    "anneal-end0.2": ["--schedule", "anneal:end_share=0.2", *A15],
    "anneal-end0.4": ["--schedule", "anneal:end_share=0.4", *A15],
    "anneal-dof2": ["--schedule", "anneal:dof=2", *A15],
    "anneal-dof0.5": ["--schedule", "anneal:dof=0.5", *A15],
    "anneal-noclip": ["--schedule", "anneal:clip=0", *A15],
    # The paper's default augmentations, where rotations are not part of the views.
    "stages-simclr": ["--epochs", "10,1,4", "--warmup", "2,0,1", "--stage3-lr-factor", "0.1", "--preset", "simclr"],
    "anneal-simclr": ["--schedule", "anneal", *A15, "--preset", "simclr"],
}
WRAPPER = """
import resource, subprocess, sys, time
t0 = time.monotonic()
code = subprocess.run(sys.argv[1:]).returncode
print("BENCH", code, time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def timed(argv: list[str], env: dict) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak RSS (GB) of a command, measured by a fresh wrapper process."""
    r = subprocess.run([sys.executable, "-c", WRAPPER, *argv], env=env, capture_output=True, text=True)
    sys.stderr.write(r.stderr[-1500:])
    line = next(x for x in r.stdout.splitlines() if x.startswith("BENCH"))
    _, code, wall, rss = line.split()
    return int(code), float(wall), int(rss) / 2**20


def feature_knn(run: Path, data: str, subset: int, seed: int) -> float:
    """kNN accuracy (one split) of the backbone features of the run's model on its training images."""
    from medcne import TSimCNE
    from medcne.datasets import load_dataset
    from medcne.metrics import knn_accuracy

    images = load_dataset(data, subset=subset, seed=seed)
    est = TSimCNE.load(run / "model.pt", device="cpu")
    return knn_accuracy(est.features(images), images.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--subset", type=int, default=4000)
    ap.add_argument("--configs", default="stages,anneal")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", default=str(ROOT / "build" / "anneal_steps"))
    ap.add_argument("--log", default=str(ROOT / "build" / "anneal_steps.jsonl"))
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for seed in map(int, args.seeds.split(",")):
        for name in args.configs.split(","):
            run = Path(args.out) / f"{name}-s{seed}"
            argv = [sys.executable, "-m", "medcne", "fit", args.data, "--subset", str(args.subset), "--out", str(run),
                    "--overwrite", "--seed", str(seed), *BASE, *CONFIGS[name]]
            code, wall, rss = timed(argv, env)
            row = {"config": name, "seed": seed, "code": code, "wall_s": round(wall, 1), "rss_gb": round(rss, 2),
                   "argv": " ".join(argv[1:])}
            if code == 0:
                m = json.loads((run / "metrics.json").read_text())
                row.update(knn=m["knn_accuracy"], knn5=m["knn_accuracy_mean"], sil=m["silhouette"],
                           feat_knn=feature_knn(run, args.data, args.subset, seed))
            with open(args.log, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
