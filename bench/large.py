"""Datasets larger than memory: peak memory of fit, embed, evaluate and qc on a generated store.

Writes a store of ``--n`` generated images (``--size`` px, 3 channels, 8 classes
of coloured patterns plus noise) in parts of 100,000 (each part an append),
then runs each command in its own process and samples its memory every 50 ms
(anonymous memory, what no limit can reclaim, and the whole resident set,
which also counts the store's pages in the page cache):

* ``train``: ``medcne fit STORE --stream on`` for ``--train-seconds``, then
  interrupted (an epoch of millions of images takes hours on a CPU), and the
  same with ``--stream off`` (the store read into memory first) when
  ``--in-memory`` is given: training views/s of both from the progress bar;
* ``place``: what fit does after training, on all images: the map of every
  image, the run folder, its metrics and figure (a model trained on
  ``--small`` images of the same store, the run then written for all of them);
* ``embed``, ``evaluate`` and ``qc`` on that run;
* with ``--limit GB``: the same commands again in a memory cgroup of that size
  (bench/memlimit.py), which must be smaller than the store. A page of the
  store already in the page cache stays charged to whoever read it first:
  ``--drop-caches`` empties the cache before each limited step, so that the
  limit counts every page the step reads.

The store is deleted at the end unless ``--keep``.

    PYTHONPATH=src .venv/bin/python bench/large.py --n 2000000 --size 28 --limit 2 --in-memory
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlimit import cgroup_available, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PART = 100_000
CLASSES = 8


def generate(path: Path, n: int, size: int, seed: int = 0) -> float:
    """Write the store block by block (never all images in memory); returns seconds."""
    from medcne.datasets.store_write import StoreWriter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    templates = np.stack([
        np.stack([96 * (1 + np.sin(2 * np.pi * (k + 1) * (xx + c * yy) + k)) / 2 for c in range(3)], -1)
        for k in range(CLASSES)
    ]).astype(np.uint8)  # values 0..96, room for noise below 256
    t0 = time.perf_counter()
    with StoreWriter(path, (size, size, 3)) as w:
        for start in range(0, n, PART):
            m = min(PART, n - start)
            labels = rng.integers(0, CLASSES, m)

            def blocks(labels=labels):
                for s in range(0, len(labels), 10_000):
                    lab = labels[s : s + 10_000]
                    yield templates[lab] + rng.integers(0, 160, (len(lab), size, size, 3), dtype=np.uint8)

            w.add_part(f"part{start // PART}", blocks(), labels=[f"c{k}" for k in labels],
                       ids=[f"img{start + i}" for i in range(m)], class_names=[f"c{k}" for k in range(CLASSES)])
    return time.perf_counter() - t0


PLACE = """
import sys, time
from pathlib import Path
from medcne import TSimCNE
from medcne.datasets import load_dataset
from medcne.runs.tsimcne import write_tsimcne_run
store, small, out = sys.argv[1:4]
Path(out).mkdir(parents=True, exist_ok=True)
data = load_dataset(store)
est = TSimCNE.load(Path(small) / "model.pt", device="cpu")
t0 = time.perf_counter()
est.embedding_ = est.transform(data)
print(f"placed {len(data)} images in {time.perf_counter() - t0:.0f} s", flush=True)
write_tsimcne_run(out, est, data, {"path": str(Path(store).resolve())})
"""


def drop_caches() -> bool:
    """Write back dirty pages and empty the page cache (needs root); whether it was done."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


def views_per_s(tail: str, batch: int = 256) -> float | None:
    """Training views/s from the progress bar's last step rate (two views per image)."""
    rates = re.findall(r"([\d.]+)step/s", tail)
    return round(float(rates[-1]) * 2 * batch) if rates else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--small", type=int, default=4000, help="images the model of place/embed/qc is trained on")
    ap.add_argument("--train-seconds", type=float, default=150)
    ap.add_argument("--in-memory", action="store_true", help="also train with the store read into memory")
    ap.add_argument("--limit", type=float, help="GB: run place, embed, evaluate, qc and train again under this")
    ap.add_argument("--steps", default="train,place,embed,evaluate,qc")
    ap.add_argument("--limited-steps", default="train,place,embed,evaluate,qc", help="steps repeated under --limit")
    ap.add_argument("--dir", default=str(ROOT / "build" / "large"))
    ap.add_argument("--log", default=str(ROOT / "build" / "large.jsonl"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--drop-caches", action="store_true",
                    help="empty the page cache before each limited step (root), so that every store page the "
                         "step reads is charged to its cgroup, not to whoever read it before")
    args = ap.parse_args()
    from medcne.device import machine_name

    work = Path(args.dir) / f"n{args.n}-s{args.size}"
    store, small, big = work / "store", work / "small-run", work / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    py = [sys.executable, "-m", "medcne"]
    print(f"machine: {machine_name()}; load {os.getloadavg()[0]:.1f}; {args.n} images of {args.size} px")

    def log(step: str, row: dict) -> None:
        row = {"step": step, "n": args.n, "size": args.size, "date": time.strftime("%Y-%m-%d %H:%M UTC"),
               **row}
        tail = row.pop("tail", "")
        print(json.dumps(row), flush=True)
        if row.get("exit", 0) not in (0, None) and not row.get("stopped"):
            print(tail[-1500:], flush=True)
        with open(args.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    if not (store / "manifest.json").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        seconds = generate(store, args.n, args.size)
        size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        log("generate", {"wall_s": round(seconds, 1), "store_gb": round(size / 2**30, 2)})
    store_gb = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**30
    if not (small / "params.json").exists():
        log("small-fit", measure([*py, "fit", str(store), "--subset", str(args.small), "--epochs", "2,1,1",
                                  "--out", str(small), "--overwrite"], env=env))
    fit = [*py, "fit", str(store), "--epochs", "0,0,1", "--out", str(work / "train-run"), "--overwrite"]

    def commands(run: Path) -> dict:
        return {
            "place": [sys.executable, "-c", PLACE, str(store), str(small), str(run)],
            "embed": [*py, "embed", str(small), str(store), "--out", str(work / "embedded.npz"), "--overwrite"],
            "evaluate": [*py, "evaluate", str(run)],
            "qc": [*py, "qc", str(run)],
        }
    limits = [None] + ([int(args.limit * 2**30)] if args.limit else [])
    if args.limit:
        why = cgroup_available()
        if why:
            sys.exit(f"--limit: {why}")
        if args.limit >= store_gb:
            sys.exit(f"--limit {args.limit} GB is not below the store's {store_gb:.2f} GB")
    for limit in limits:
        suffix = "" if limit is None else f" (limit {args.limit} GB, store {store_gb:.2f} GB)"
        steps = args.steps.split(",") if limit is None else args.limited_steps.split(",")
        if "train" in steps:
            r = measure([*fit, "--stream", "on"], env=env, limit_bytes=limit, stop_after=args.train_seconds)
            log("train streamed" + suffix, {**r, "views_s": views_per_s(r["tail"])})
            if args.in_memory and limit is None:
                r = measure([*fit, "--stream", "off"], env=env, stop_after=args.train_seconds + 120)
                log("train in memory", {**r, "views_s": views_per_s(r["tail"])})
        # A limited place writes its own run (a killed one leaves the other intact); evaluate and qc
        # under the limit read that one, or the unlimited run when place is not repeated.
        run = big if limit is None or "place" not in steps else work / "run-limited"
        for step in ("place", "embed", "evaluate", "qc"):
            if step not in steps:
                continue
            if step == "place":
                shutil.rmtree(run, ignore_errors=True)
            cold = limit is not None and args.drop_caches and drop_caches()
            r = measure(commands(run)[step], env=env, limit_bytes=limit)
            log(step + suffix, {**r, **({"cold_cache": True} if cold else {})})
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        print(f"deleted {work}")


if __name__ == "__main__":
    main()
