"""Benchmark: medcne's exact silhouette against scikit-learn's, same machine, same run.

    .venv/bin/python bench/silhouette.py                 # 50,000 points vs sklearn, then 327,680
    .venv/bin/python bench/silhouette.py --n 20000 --big 0

Prints the machine, both times, their ratio and the difference of the scores.
Goals (issue 5): >= 20x faster than sklearn at 50,000 points; 327,680 points
(PCam size) in under 2 minutes on a 2-core CPU.

medcne's CPU kernel is compiled by numba (cached on disk after the first run);
the first call in a process also starts numba's runtime (~0.6 s, once). That
start is timed on its own (a call on 100 points) and reported beside the ratio;
the ratio with it added is printed too.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def machine() -> str:
    from medcne.device import machine_name

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{machine_name()}, load average {load:.2f}, {platform.platform()}"


def fake_map(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Blobs on a t-SNE-like scale (coordinates of tens), overlapping a little."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    centres = rng.uniform(-40, 40, size=(n_classes, 2))
    return centres[labels] + rng.normal(scale=8, size=(n, 2)), labels


def timed(fn, *args, **kw) -> tuple[float, float, float]:
    """Value, wall seconds and CPU seconds (all threads of this process).

    On a shared machine the wall time depends on the other jobs; the CPU time
    measures the work, and wall ~ CPU / cores when the machine is idle.
    """
    t, c = time.perf_counter(), time.process_time()
    value = fn(*args, **kw)
    return value, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    from sklearn.metrics import silhouette_score

    from medcne.metrics import silhouette

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="points for the comparison with sklearn")
    p.add_argument("--big", type=int, default=327_680, help="points of the large run (0: skip)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (medcne only)")
    args = p.parse_args()

    print(f"machine: {machine()}")
    Z, y = fake_map(100, 2, seed=2)
    _, t_start, _ = timed(silhouette, Z, y, device=args.device)
    silhouette_score(Z, y)
    print(f"first call of medcne's silhouette in this process (100 points; numba runtime start "
          f"and cached kernel load): {t_start:.2f} s")
    Z, y = fake_map(args.n, args.classes)
    ours, t_ours, c_ours = timed(silhouette, Z, y, device=args.device)
    ref, t_ref, c_ref = timed(silhouette_score, Z, y)
    print(f"N={args.n:,} C={args.classes}: medcne {t_ours:.2f} s wall / {c_ours:.2f} s CPU, "
          f"sklearn {t_ref:.2f} s wall / {c_ref:.2f} s CPU; ratio {t_ref / t_ours:.1f}x wall, "
          f"{c_ref / c_ours:.1f}x CPU ({t_ref / (t_ours + t_start):.1f}x wall with the first-call "
          f"start added); |difference| {abs(ours - ref):.1e} (score {ref:.6f})")
    if args.big:
        Z, y = fake_map(args.big, 2, seed=1)
        big, t_big, c_big = timed(silhouette, Z, y, device=args.device)
        print(f"N={args.big:,} C=2: medcne {t_big:.1f} s wall / {c_big:.1f} s CPU "
              f"(score {big:.6f}); goal < 120 s on 2 cores: {'met' if t_big < 120 else 'NOT met'} "
              f"(wall), CPU / cores = {c_big / (os.cpu_count() or 1):.1f} s")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
