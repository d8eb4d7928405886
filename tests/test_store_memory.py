"""Training and placing a store's images in a process whose memory stays far below the dataset's size.

A cgroup limit (``systemd-run --scope -p MemoryMax=``) needs a systemd this
test cannot count on, and ``RLIMIT_AS`` counts torch's address-space
reservations, so the process's anonymous memory (``RssAnon``: what no limit
can reclaim; the store's pages are file-backed page cache) is sampled every
few milliseconds in a subprocess instead. The peak while fitting and
embedding the whole store is compared with the peak of the same fit on
2,048 of its images: the difference is what grows with the number of images.
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

from medcne.datasets.store import StoreWriter

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
    small = data.take(np.arange(2048))  # more than one chunk of embed(): the same buffers as the whole
    TSimCNE(**params).fit(small)  # first use of every kernel and allocator pool
    out = {"small": measured(lambda: TSimCNE(**params).fit(small).transform(small))}
    out["whole"] = measured(lambda: TSimCNE(**params).fit(data).transform(data))
    out["read_whole"] = measured(lambda: data.to_numpy())  # the measure sees a dataset held in memory
    stop.set()
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_fit_and_embed_of_a_store_stay_far_below_its_size(tmp_path):
    n, shape = 32_000, (16, 16, 3)
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "store", shape) as w:
        for k in range(6):
            block = rng.integers(0, 256, (n // 6, *shape), dtype=np.uint8)
            w.add_part(f"p{k}", block, labels=None, ids=[f"{k}/{i}" for i in range(len(block))])
    size = n * int(np.prod(shape))  # 24.6 MB
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
    if sys.argv[2] == "whole":
        data.to_numpy()  # planted: the images read into memory, as a non-streaming path would
    est = TSimCNE(epochs=(1, 0, 0), warmup=(0, 0, 0), batch_size=256, width=2, device="cpu", random_state=0,
                  verbose=False, stream=True).fit(data)
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
    """A real memory limit: the cgroup of the run is allowed its own needs (measured on a small store)
    plus half of the large store's size, so a run that held the images would be killed; the streamed
    fit and embedding complete, and the planted whole read is killed (the limit can fail)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from memlimit import cgroup_available, measure

    why = cgroup_available()
    if why:
        pytest.skip(why)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    _store(tmp_path / "small", 2048)
    size = _store(tmp_path / "large", 120_000)  # 88 MiB of pixels
    argv = [sys.executable, "-c", LIMITED]
    base = measure([*argv, str(tmp_path / "small"), "stream"], env=env, limit_bytes=4 * 2**30)
    assert base["exit"] == 0, base["tail"]
    limit = base["cgroup_peak"] + size // 2
    done = measure([*argv, str(tmp_path / "large"), "stream"], env=env, limit_bytes=limit)
    print(f"store {size / 2**20:.0f} MiB; cgroup peak on 2,048 images {base['cgroup_peak'] / 2**20:.0f} MiB; "
          f"limit {limit / 2**20:.0f} MiB; peak streaming the store {done.get('cgroup_peak', 0) / 2**20:.0f} MiB")
    assert done["exit"] == 0 and "placed 120000" in done["tail"], done["tail"]
    planted = measure([*argv, str(tmp_path / "large"), "whole"], env=env, limit_bytes=limit)
    assert planted["exit"] != 0, "reading the store whole was not stopped: the limit does not limit"
