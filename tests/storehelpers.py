"""Jobs for the streaming-store tests that run in 2 gloo processes (started by ddphelpers' way of spawning)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import numpy as np
import torch

from ddphelpers import torchrun_env


def write_store(path: Path, n: int = 48, size: int = 16, parts: int = 2) -> Path:
    """A labelled store of ``n`` random images in ``parts`` parts."""
    from medcne.datasets.store_write import StoreWriter

    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    images = (rng.integers(0, 100, (n, size, size, 3)) + 60 * labels[:, None, None, None]).astype(np.uint8)
    with StoreWriter(path, (size, size, 3)) as w:
        for k, rows in enumerate(np.array_split(np.arange(n), parts)):
            w.add_part(f"p{k}", images[rows], labels=[f"c{c}" for c in labels[rows]], ids=[str(i) for i in rows])
    return path


def streamed_fit_entry(rank: int, world: int, port: int, store: str, out: str) -> None:
    """Fit with ``stream=True`` in one process of ``world``; save the store indices this rank read."""
    os.environ.update(torchrun_env(rank, world, port))
    torch.set_num_threads(1)
    from medcne.datasets import load_dataset
    from medcne.estimator import TSimCNE
    from medcne.train import distributed
    from medcne.train.store import StreamingStore

    read: list[np.ndarray] = []
    original = StreamingStore._read

    def logged(self, indices):
        read.append(np.array(indices))
        return original(self, indices)

    StreamingStore._read = logged
    import medcne.models

    embedded = []  # what each call of embed() was given: a rank's share must stay a lazy view of the store
    original_embed = medcne.models.embed

    def logged_embed(fn, images, *args, **kwargs):
        embedded.append((type(images).__name__, len(images)))
        return original_embed(fn, images, *args, **kwargs)

    medcne.models.embed = logged_embed
    try:
        distributed.setup("cpu", timeout_s=60)
        est = TSimCNE(epochs=(1, 0, 0), warmup=(0, 0, 0), batch_size=16, width=4, device="cpu",
                      random_state=0, verbose=False, stream=True).fit(load_dataset(store))
        torch.save({"read": read, "n": len(est.embedding_), "embedded": embedded}, Path(out) / f"rank{rank}.pt")
    except BaseException:
        (Path(out) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        distributed.teardown()
