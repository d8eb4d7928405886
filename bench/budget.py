"""A time budget on a CPU: `medcne fit --budget` on a dataset, against the old `--quick` and t-SNE of pixels.

Each run is a fresh process (`python -m medcne fit ...`) timed from start to
exit, with its peak resident memory; its metrics.json gives kNN accuracy (one
split and the mean of 5) and silhouette. Configurations are named sets of fit
options (the search that chose the CPU budget settings is in
bench/RESULTS.md); ``--reference COMMIT`` also runs that commit's ``--quick``
(checked out with ``git worktree`` under build/, nothing downloaded), and
``--tsne`` adds t-SNE of pixels. Results are appended to ``--log`` (JSON lines)
and printed as a table.

    .venv/bin/python bench/budget.py --data ../shared/data/bloodmnist28.npz --budget 15m \\
        --configs default --seeds 0,1,2 --reference 7d7c7cd --tsne
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Options of `medcne fit` on top of `--budget B --preset rotate --seed S`.
CONFIGS = {
    "default": [],  # the CPU budget settings of medcne.defaults.BUDGET_CPU
    "lr0.1": ["--lr", "0.1"],
    "width32": ["--width", "32"],
    "batch256": ["--batch-size", "256", "--lr", "0.12"],
    "batch512": ["--batch-size", "512", "--lr", "0.24"],
    "batch256-width32": ["--batch-size", "256", "--lr", "0.12", "--width", "32"],
    "batch256-lr0.24": ["--batch-size", "256", "--lr", "0.24"],
    "batch256-lr0.36": ["--batch-size", "256", "--lr", "0.36"],
    "lr0.24-stage1-heavy": ["--batch-size", "256", "--lr", "0.24", "--epochs", "16,1,4"],
    "lr0.24-stage3-heavy": ["--batch-size", "256", "--lr", "0.24", "--epochs", "12,1,12"],
    "stage2-long": ["--epochs", "12,4,6"],
    "s3-warmup3": ["--warmup", "2,0,3"],
    "lr0.24-s3-0.05": ["--batch-size", "256", "--lr", "0.24", "--stage3-lr-factor", "0.05"],
    "stage1-heavy": ["--epochs", "16,1,4"],
    "s3-0.3": ["--stage3-lr-factor", "0.3"],
    "batch128": ["--batch-size", "128", "--lr", "0.06"],
    "compile": ["--compile"],
    # One annealed stage (docs/schedules.md) under the same budget and CPU settings.
    "anneal": ["--schedule", "anneal"],
    "anneal-pwcos": ["--schedule", "anneal:shape=piecewise-cosine"],
    "anneal-pwcos-lr0.24": ["--schedule", "anneal:shape=piecewise-cosine", "--lr", "0.24"],
    # the temperature learned, as the reference offers (it starts at the fixed value)
    "anneal-pwcos-learnedT": ["--schedule", "anneal:shape=piecewise-cosine,temperature=learned"],
    "anneal-pwcos-learneddof": ["--schedule", "anneal:shape=piecewise-cosine,dof=learned"],
}
WRAPPER = """
import resource, subprocess, sys, time
t0 = time.monotonic()
code = subprocess.run(sys.argv[1:], env=None).returncode
print("BENCH", code, time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def timed(argv: list[str], env: dict) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak RSS (GB) of a command, measured by a fresh wrapper process."""
    r = subprocess.run([sys.executable, "-c", WRAPPER, *argv], env=env, capture_output=True, text=True)
    sys.stderr.write(r.stderr[-2000:])
    line = next(x for x in r.stdout.splitlines() if x.startswith("BENCH"))
    _, code, wall, rss = line.split()
    return int(code), float(wall), int(rss) / 2**20


def metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {k: m.get(k) for k in ("knn_accuracy", "knn_accuracy_mean", "knn_accuracy_std", "silhouette")}


def feature_knn(run: Path, data: str, subset: int | None = None, seed: int = 0) -> float:
    """kNN accuracy (one split) of the backbone features of the run's model on its training images."""
    from medcne import TSimCNE
    from medcne.datasets import load_dataset
    from medcne.metrics import knn_accuracy

    images = load_dataset(data, subset=subset, seed=seed)
    est = TSimCNE.load(run / "model.pt", device="cpu")
    return knn_accuracy(est.features(images), images.labels)


def reference_tree(commit: str) -> Path:
    """A checkout of ``commit`` under build/ (git worktree; reused)."""
    tree = ROOT / "build" / f"ref-{commit}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True,
                       capture_output=True)
    return tree


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--budget", default="15m")
    p.add_argument("--configs", default="default", help=f"comma-separated (empty: none), of {', '.join(CONFIGS)}")
    p.add_argument("--seeds", default="0")
    p.add_argument("--reference", metavar="COMMIT", help="also run this commit's `fit --quick --preset rotate`")
    p.add_argument("--tsne", action="store_true", help="also t-SNE of pixels")
    p.add_argument("--features", action="store_true",
                   help="also the kNN accuracy of each run's backbone features (one split), beside its 2-D map's")
    p.add_argument("--out", default="build/budget-runs")
    p.add_argument("--log", default="build/budget-runs/results.jsonl")
    args = p.parse_args()
    from medcne.device import machine_name

    out, log = Path(args.out), Path(args.log)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    print(f"machine: {machine_name()}; load average {os.getloadavg()[0]:.1f}; data {args.data}")
    jobs = []
    for seed in args.seeds.split(","):
        for name in filter(None, args.configs.split(",")):
            run = out / f"{name}-{args.budget}-seed{seed}"
            argv = [sys.executable, "-m", "medcne", "fit", args.data, "--out", str(run), "--overwrite",
                    "--budget", args.budget, "--preset", "rotate", "--seed", seed, *CONFIGS[name]]
            jobs.append((f"{name} ({args.budget})", seed, run, argv, env))
        if args.reference:
            tree = reference_tree(args.reference)
            run = out / f"quick-{args.reference}-seed{seed}"
            argv = [sys.executable, "-m", "medcne", "fit", args.data, "--out", str(run), "--overwrite", "--quick",
                    "--preset", "rotate", "--seed", seed]
            jobs.append((f"--quick at {args.reference}", seed, run, argv, {**env, "PYTHONPATH": str(tree / "src")}))
    if args.tsne:
        run = out / "tsne-pixels"
        argv = [sys.executable, "-m", "medcne", "baseline", args.data, "--method", "tsne-pixels", "--out", str(run),
                "--force"]
        jobs.append(("t-SNE of pixels", "0", run, argv, env))
    for name, seed, run, argv, job_env in jobs:
        load = os.getloadavg()[0]
        code, wall, rss = timed(argv, job_env)
        row = {"config": name, "seed": seed, "exit": code, "wall_s": round(wall, 1), "peak_rss_gb": round(rss, 2),
               "load_before": round(load, 2), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               **(metrics(run) if code == 0 else {})}
        if code == 0 and args.features and (run / "model.pt").exists():
            row["feature_knn"] = feature_knn(run, args.data)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
