"""Training and placing a store's images in a process whose memory stays far below the dataset's size.

Two measures. The first samples the process's anonymous memory (``RssAnon``:
what no limit can reclaim; the store's pages are file-backed page cache)
every few milliseconds while fitting and embedding the whole store, and
compares its peak with that of the same fit on 8,192 of its images: the
difference is what grows with the number of images. The second runs the fit
under a real memory limit, a cgroup made by hand (bench/memlimit.py; it needs
root and a writable memory controller, and is skipped otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from medcne.datasets.store_write import StoreWriter

SRC = Path(__file__).resolve().parents[1] / "src"
SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from medcne import TSimCNE
    from medcne.datasets import load_dataset

    def anon():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon:"))

    peak, stop = [0], threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], anon())
            time.sleep(0.002)
    threading.Thread(target=sample, daemon=True).start()

    def measured(fn):
        time.sleep(0.01)
        peak[0] = anon()
        fn()
        time.sleep(0.01)
        return peak[0]

    data = load_dataset(sys.argv[1])
    params = dict(epochs=(1, 0, 0), warmup=(0, 0, 0), batch_size=256, width=2, device="cpu",
                  random_state=0, verbose=False, stream=True)
    # 32 batches and several chunks of embed(): the background readers and allocator pools reach the same
    # steady state as on the whole store, so that the difference is what grows with the number of images
    small = data.take(np.arange(8192))
    TSimCNE(**params).fit(small)  # first use of every kernel and allocator pool
    out = {"small": measured(lambda: TSimCNE(**params).fit(small).transform(small))}
    out["whole"] = measured(lambda: TSimCNE(**params).fit(data).transform(data))
    out["read_whole"] = measured(lambda: data.to_numpy())  # the measure sees a dataset held in memory
    stop.set()
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_fit_and_embed_of_a_store_stay_far_below_its_size(tmp_path):
    n, shape = 64_002, (28, 28, 3)  # MedMNIST-sized: per-image ids and labels are small beside the pixels
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "store", shape) as w:
        for k in range(6):
            block = rng.integers(0, 256, (n // 6, *shape), dtype=np.uint8)
            w.add_part(f"p{k}", block, labels=None, ids=[f"{k}/{i}" for i in range(len(block))])
    size = n * int(np.prod(shape))  # 150 MB
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "store")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    grown = peaks["whole"] - peaks["small"]
    print(f"dataset {size / 2**20:.1f} MiB; peak RssAnon growth fitting + embedding it streamed "
          f"{grown / 2**20:.1f} MiB; reading it whole {(peaks['read_whole'] - peaks['small']) / 2**20:.1f} MiB")
    assert grown < 0.3 * size, (grown, size, peaks)
    assert peaks["read_whole"] - peaks["small"] > 0.9 * size, peaks  # the measure would have caught it


LIMITED = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads(1)
    from medcne import TSimCNE
    from medcne.datasets import load_dataset

    data = load_dataset(sys.argv[1])
    # "memory" is the planted bug, on the real code path: the images held in memory while training
    est = TSimCNE(epochs=(1, 0, 0), warmup=(0, 0, 0), batch_size=256, width=2, device="cpu", random_state=0,
                  verbose=False, stream=sys.argv[2] == "stream").fit(data)
    print("placed", len(est.transform(data)))
""")


def _store(path: Path, n: int, shape=(16, 16, 3)) -> int:
    rng = np.random.default_rng(1)
    with StoreWriter(path, shape) as w:
        blocks = (rng.integers(0, 256, (min(25_000, n - s), *shape), dtype=np.uint8) for s in range(0, n, 25_000))
        w.add_part("all", blocks, labels=None, ids=[str(i) for i in range(n)])
    return n * int(np.prod(shape))


@pytest.mark.slow
def test_fit_and_embed_complete_under_a_cgroup_limit_below_baseline_plus_the_store(tmp_path):
    """A real memory limit: the run's cgroup is allowed its own needs (measured on a small store) plus a
    third of the large store's size. The streamed fit and embedding complete; the same fit holding the
    images in memory (``stream=False``, the path a store too large for memory must not take) is killed.

    The page cache a cgroup first reads is charged to it and counts towards its limit, though the kernel
    can reclaim it: a first run in a throwaway cgroup reads the libraries, so that the baseline measures
    what the run needs rather than what a cold cache cost (2 GB against 0.5 GB on one machine).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from memlimit import cgroup_available, measure

    why = cgroup_available()
    if why:
        pytest.skip(why)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    _store(tmp_path / "small", 2048)
    n = 200_000
    size = _store(tmp_path / "large", n)  # 146 MiB of pixels
    argv = [sys.executable, "-c", LIMITED]
    for _ in range(2):  # the first warms the page cache (see above); the second is the baseline
        base = measure([*argv, str(tmp_path / "small"), "stream"], env=env, limit_bytes=4 * 2**30)
        assert base["exit"] == 0, base["tail"]
    limit = base["cgroup_peak"] + size // 3
    done = measure([*argv, str(tmp_path / "large"), "stream"], env=env, limit_bytes=limit)
    mib = 2**20
    print(f"store {size / mib:.0f} MiB; cgroup peak on 2,048 images {base['cgroup_peak'] / mib:.0f} MiB; "
          f"limit {limit / mib:.0f} MiB; peak streaming the store {done.get('cgroup_peak', 0) / mib:.0f} MiB")
    assert done["exit"] == 0 and f"placed {n}" in done["tail"], done["tail"]
    held = measure([*argv, str(tmp_path / "large"), "memory"], env=env, limit_bytes=limit)
    # Stopped: refused before training, medcne seeing the cgroup's limit (its DataError naming the memory
    # needed and available), or else killed by the kernel's out-of-memory killer (-9).
    refused = held["exit"] == 1 and "DataError" in held["tail"] and "of memory; about" in held["tail"]
    assert refused or held["exit"] == -9, f"holding the images in memory was not stopped: the limit does not limit ({held})"
