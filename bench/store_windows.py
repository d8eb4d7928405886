"""A store read a window at a time: address space, a limit on virtual memory, and random batches.

A store's parts are mapped a window of rows at a time, and a process keeps a
few windows mapped (``medcne.datasets.store_read``). The baseline maps every
part whole at once (``np.load(mmap_mode='r')``), as the reader did before. This
script writes a store of random images in a temporary folder, then

1. runs ``medcne info STORE`` in a child process and reads its peak address
   space (VmPeak), and runs it again under ``ulimit -v`` of half the store's
   size plus what the child needs without the store;
2. reads random batches of 256 in this process through the windows and
   through whole-part maps (the baseline), in alternating rounds, and prints
   both rates and their ratio.

    PYTHONPATH=src .venv/bin/python bench/store_windows.py --parts 4 --per-part 12000 --size 96
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

INFO = ("import sys; from medcne.cli import main; rc = main(sys.argv[1:]); "
        "peak = next(l for l in open('/proc/self/status') if l.startswith('VmPeak')); "
        "print('VMPEAK', int(peak.split()[1]) * 1024, file=sys.stderr); sys.exit(rc)")


def write_store(path: Path, parts: int, per_part: int, size: int) -> int:
    from medcne.datasets.store_write import StoreWriter

    rng = np.random.default_rng(0)
    with StoreWriter(path, (size, size, 3)) as writer:
        for k in range(parts):
            blocks = (rng.integers(0, 256, (min(2048, per_part - s), size, size, 3), dtype=np.uint8)
                      for s in range(0, per_part, 2048))
            writer.add_part(f"p{k}", blocks, labels=[f"c{i % 3}" for i in range(per_part)],
                            ids=[f"{k}/{i}" for i in range(per_part)])
    return parts * per_part * size * size * 3


def info_peak(store: Path, limit_kb: int | None = None) -> tuple[int, int, str]:
    """(exit status, VmPeak bytes, last line of stderr) of `medcne info STORE`, under `ulimit -v` when given."""
    cmd = [sys.executable, "-c", INFO, "info", str(store)]
    if limit_kb is not None:
        cmd = ["bash", "-c", f"ulimit -v {limit_kb}; exec \"$@\"", "bash", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "src"})
    peak = next((int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("VMPEAK")), 0)
    last = next((line for line in reversed(done.stderr.splitlines()) if line and not line.startswith("VMPEAK")), "")
    return done.returncode, peak, last


WHOLE = ("import json, sys; import numpy as np; from pathlib import Path; s = Path(sys.argv[1]); "
         "m = [np.load(s / p['dir'] / 'images.npy', mmap_mode='r') for p in json.loads((s / 'manifest.json')"
         ".read_text())['parts']]; print(sum(int(a[::997].sum()) for a in m))")


def whole_under(store: Path, limit_kb: int) -> tuple[int, str]:
    """(exit status, last line of stderr) of the baseline, every part mapped whole, under `ulimit -v`."""
    cmd = ["bash", "-c", f"ulimit -v {limit_kb}; exec \"$@\"", "bash", sys.executable, "-c", WHOLE, str(store)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def whole_maps(store: Path):
    """The baseline reader: every part mapped whole, gathered by global index."""
    manifest = json.loads((store / "manifest.json").read_text())
    maps = [np.load(store / p["dir"] / "images.npy", mmap_mode="r") for p in manifest["parts"]]
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in maps])])

    def read(indices: np.ndarray) -> np.ndarray:
        parts = np.searchsorted(offsets, indices, side="right") - 1
        out = np.empty((len(indices), *maps[0].shape[1:]), dtype=np.uint8)
        for p in np.unique(parts):
            where = np.flatnonzero(parts == p)
            out[where] = maps[p][indices[where] - offsets[p]]
        return out

    return read


def batch_rates(store: Path, rounds: int, batches: int) -> tuple[float, float]:
    from medcne.datasets.store_read import open_store

    data = open_store(store)
    windows, baseline, n = data.images._read.for_random_access(), whole_maps(store), len(data)
    rng = np.random.default_rng(0)
    rates: dict[str, list[float]] = {"windows": [], "whole": []}
    for r in range(rounds):
        for name, read in (("windows", windows), ("whole", baseline))[:: 1 if r % 2 == 0 else -1]:
            picks = [rng.choice(n, 256, replace=False) for _ in range(batches)]
            assert (read(picks[0]) == data.images[picks[0]]).all()
            start = time.perf_counter()
            for p in picks:
                read(p)
            rates[name].append(256 * batches / (time.perf_counter() - start))
    return float(np.median(rates["windows"])), float(np.median(rates["whole"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--per-part", type=int, default=12000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batches", type=int, default=100)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}, python {platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        store = Path(tmp) / "store"
        nbytes = write_store(store, args.parts, args.per_part, args.size)
        print(f"store: {args.parts} parts of {args.per_part:,} images of {args.size} px, {nbytes / 2**30:.2f} GiB")
        rc, peak, _ = info_peak(store)
        print(f"medcne info: exit {rc}, peak address space {peak / 2**30:.2f} GiB")
        small = Path(tmp) / "small"
        write_store(small, 1, 64, args.size)
        _, base, _ = info_peak(small)
        limit = (base + nbytes // 2) // 1024
        rc, _, last = info_peak(store, limit)
        print(f"medcne info under ulimit -v {limit:,} kB (the command's own {base / 2**30:.2f} GiB + half the "
              f"store): exit {rc}{'' if rc == 0 else ': ' + last}")
        rc, last = whole_under(store, limit)
        print(f"baseline (every part mapped whole, then read) under the same limit: exit {rc}"
              f"{'' if rc == 0 else ': ' + last[-100:]}")
        w, b = batch_rates(store, args.rounds, args.batches)
        print(f"random batches of 256 (median of {args.rounds} rounds, files in the page cache): windows "
              f"{w:,.0f} images/s, every part mapped whole {b:,.0f} images/s, ratio {w / b:.2f}")


if __name__ == "__main__":
    main()
