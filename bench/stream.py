"""Streaming from an on-disk store against holding the images in memory, in one process.

Three measures on the same images (BloodMNIST by default, written to a store
under ``build/`` and deleted afterwards):

* **random batches**: images/s of reading batches of random indices (the
  training access pattern) from the memory-mapped store, and from the same
  images as a chunked zarr array (``--zarr``, if zarr is installed) and a
  chunked HDF5 file, to choose the store's format;
* **data path**: batches/s of an epoch's batches from :class:`ImageStore` (one
  tensor in memory) and :class:`StreamingStore` (read in the background);
* **training**: views/s of one-epoch fits with ``stream=False`` and
  ``stream=True`` in alternating rounds (the ratio is what counts on a shared
  machine; each rate is also given per CPU second).

The store's files are in the page cache right after they are written, so this
measures the cost of the streaming machinery, not of a cold disk.

    PYTHONPATH=src .venv/bin/python bench/stream.py --data ../shared/data/bloodmnist28.npz --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep on a shared machine (before torch; medcne itself leaves it unset, docs/cpu.md)
import torch  # noqa: E402

from medcne import TSimCNE
from medcne.datasets import load_dataset
from medcne.datasets.store_write import StoreWriter
from medcne.device import machine_name
from medcne.train.store import ImageStore, StreamingStore

ROOT = Path(__file__).resolve().parents[1]


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def write_store(data, path: Path) -> None:
    with StoreWriter(path, data.image_shape) as w:
        labels = [data.class_names[i] for i in data.labels] if data.labels is not None else None
        w.add_part("data", (b for _, b in data.iter_chunks(4096)), labels=labels, ids=data.ids,
                   class_names=data.class_names)


def random_batches(read, n: int, batch: int, batches: int, seed: int = 0) -> float:
    order = np.random.default_rng(seed).permutation(n)
    batches = min(batches, n // batch)  # whole batches of distinct images only
    t0 = time.perf_counter()
    for s in range(batches):
        read(np.sort(order[s * batch : (s + 1) * batch]))
    return batches * batch / (time.perf_counter() - t0)


def read_formats(data, store, folder: Path, batch: int, batches: int) -> dict:
    """images/s of random batches: memmap store, HDF5 (chunks of 1 image), zarr (chunks of 64 images)."""
    out = {"memmap store": random_batches(lambda i: store.images[i], len(store), batch, batches)}
    import h5py

    with h5py.File(folder / "x.h5", "w") as f:
        f.create_dataset("x", data=data.to_numpy(), chunks=(1, *data.image_shape))
    with h5py.File(folder / "x.h5", "r") as f:
        out["hdf5, chunk 1 image"] = random_batches(lambda i: f["x"][i], len(data), batch, batches)
    try:
        import zarr
    except ImportError:
        out["zarr"] = None
        return out
    z = zarr.open_array(str(folder / "x.zarr"), mode="w", shape=(len(data), *data.image_shape),
                        chunks=(64, *data.image_shape), dtype="uint8")
    z[:] = data.to_numpy()
    out["zarr, chunk 64 images (default compressor)"] = random_batches(
        lambda i: z.get_orthogonal_selection((i, slice(None), slice(None), slice(None))), len(data), batch, batches)
    return out


def data_path(data, store, batch: int) -> dict:
    cpu = torch.device("cpu")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    rows = [slice(s * batch, (s + 1) * batch) for s in range(len(data) // batch)]
    out = {}
    for name, source in (("in memory", ImageStore(data, cpu)), ("streaming", StreamingStore(store, cpu))):
        t0 = time.perf_counter()
        for _ in source.batches(order, rows):
            pass
        out[name] = len(rows) / (time.perf_counter() - t0)
    return out


class Watched(StreamingStore):
    """StreamingStore that keeps the last instance, to read its read and wait times after a fit."""

    last = None

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        Watched.last = self


def training(data, store, args) -> tuple[dict, list]:
    import medcne.train.store as train_store

    train_store.StreamingStore = Watched  # make_store builds this one (restored below)
    rates: dict[str, list] = {"in memory": [], "streaming": []}
    waits = []
    try:
        for _ in range(args.rounds):
            for name, source, stream in (("in memory", data, False), ("streaming", store, True)):
                w0, c0 = clocks()
                est = TSimCNE(epochs=(1, 0, 0), warmup=(0, 0, 0), batch_size=args.batch_size, width=args.width,
                              device="cpu", random_state=0, verbose=False, stream=stream).fit(source)
                w1, c1 = clocks()
                row = est.history_[0]
                rates[name].append((row["views_per_s"], w1 - w0, c1 - c0))
                if stream:
                    epoch = 2 * args.batch_size * (len(data) // args.batch_size) / row["views_per_s"]
                    waits.append((Watched.last.wait_seconds, Watched.last.read_seconds, epoch))
    finally:
        train_store.StreamingStore = StreamingStore
    return rates, waits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "bloodmnist28.npz"))
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--read-batches", type=int, default=40)
    ap.add_argument("--no-training", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    data = load_dataset(args.data, subset=args.subset)
    (ROOT / "build").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="stream-bench-", dir=ROOT / "build"))
    try:
        write_store(data, folder / "store")
        store = load_dataset(folder / "store")
        print(f"machine: {machine_name()}, torch threads {torch.get_num_threads()}; {len(data):,} images of "
              f"{data.image_shape}; batch {args.batch_size}")
        for name, rate in read_formats(data, store, folder, args.batch_size, args.read_batches).items():
            print(f"random batches, {name}: " + ("not installed" if rate is None else f"{rate:,.0f} images/s"))
        dp = data_path(data, store, args.batch_size)
        print(f"data path alone: in memory {dp['in memory']:,.0f} batches/s, streaming {dp['streaming']:,.0f} "
              f"batches/s (ratio {dp['streaming'] / dp['in memory']:.2f})")
        if not args.no_training:
            rates, waits = training(data, store, args)
            for wait, read, epoch in waits:
                print(f"streamed epoch of {epoch:.1f} s: the training thread waited {wait:.2f} s for batches "
                      f"({100 * wait / epoch:.1f}%); the background thread read for {read:.2f} s")
            for name, rows in rates.items():
                shown = ", ".join(f"{v:,.0f} views/s ({w:.1f} s wall, {c:.1f} s CPU)" for v, w, c in rows)
                print(f"training one epoch, {name}: {shown}")
            ratio = np.mean([s[0] for s in rates["streaming"]]) / np.mean([m[0] for m in rates["in memory"]])
            cpu = np.mean([m[2] for m in rates["in memory"]]) / np.mean([s[2] for s in rates["streaming"]])
            print(f"streaming / in memory: {ratio:.3f} (views/s, wall), {cpu:.3f} (per CPU second)")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
