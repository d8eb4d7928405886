"""The dataset as one uint8 tensor, with batched gather onto the training device, or streamed.

Speed comes from the data path (docs/design.md, "Speed"): all images live in one
N x C x H x W uint8 tensor, on the GPU when they fit, else in pinned host memory
from which each batch is copied asynchronously. Batches are index tensors; no
DataLoader, no per-image Python. A dataset larger than memory (an on-disk store)
is streamed instead (:class:`StreamingStore`): the same batches, read from disk
by a background thread; the estimator resolves which (``stream_``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..datasets import ImageSet
from ..datasets.store_read import StoreReader

# Keep the data under this share of free GPU memory, so activations still fit.
GPU_DATA_SHARE = 0.4


def to_nchw_tensor(data: ImageSet, pin: bool = False) -> torch.Tensor:
    """All images as an (N, C, H, W) uint8 CPU tensor (a lazy store is read in chunks); whether they
    fit in memory was decided with the parameters (:func:`medcne.datasets.memory.training_streams`)."""
    n, (h, w, c) = len(data), data.image_shape
    out = torch.empty((n, c, h, w), dtype=torch.uint8, pin_memory=pin)
    for start, block in data.iter_chunks():
        out[start : start + len(block)] = torch.from_numpy(np.ascontiguousarray(block)).permute(0, 3, 1, 2)
    return out


class ImageStore:
    """The images of a dataset as one tensor, with batched gather onto ``device``."""

    def __init__(self, data: ImageSet, device: torch.device):
        self.device = device
        cuda = device.type == "cuda"
        n, (h, w, c) = len(data), data.image_shape
        nbytes = n * h * w * c
        on_device = not cuda or nbytes < GPU_DATA_SHARE * torch.cuda.mem_get_info(device)[0]
        host = to_nchw_tensor(data, pin=cuda and not on_device)
        self.images = host.to(device) if on_device else host
        self.on_device = on_device

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 (len(indices), C, H, W) on the training device."""
        if self.on_device:
            return self.images[indices.to(self.device)]
        # Indexing a pinned tensor gives an unpinned copy; pin it so the copy is async.
        return self.images[indices].pin_memory().to(self.device, non_blocking=True)

    def batches(self, order: torch.Tensor, rows: Iterable[slice]) -> Iterator[torch.Tensor]:
        """The batches ``order[r]`` for each ``r`` of ``rows`` (an epoch's, in the loop's order)."""
        if not self.on_device:
            order = order.to(self.images.device)  # once per epoch
        for r in rows:
            yield self.batch(order[r])


# Batches gathered ahead by the background thread of a streaming store.
PREFETCH = 4


class StreamingStore:
    """Batches gathered from a (lazily read) dataset by a background thread, a few ahead of training.

    Nothing but the batches is held in memory: each epoch's order (drawn by the
    loop as for :class:`ImageStore`) is cut into this process's batches, which
    a thread reads from the store (``data.images``: a memory-mapped store, an
    HDF5 file or an array) while the device trains on the previous ones. On
    CUDA a batch is read into pinned memory and copied asynchronously. For the
    same order the batches are the same tensors as :class:`ImageStore`'s.
    """

    on_device = False

    def __init__(self, data: ImageSet, device: torch.device, prefetch: int = PREFETCH):
        self.device = device
        self.images = data.images
        reader = getattr(data.images, "_read", None)
        # A whole store gathers in any order straight from its memory maps (no sort and re-order, as
        # LazyImages does for readers that need increasing indices).
        whole_store = isinstance(reader, StoreReader) and getattr(data.images, "_index", 0) is None
        self._gather = reader.for_random_access() if whole_store else data.images.__getitem__
        self.n = len(data)
        self.prefetch = max(int(prefetch), 1)
        self.pin = device.type == "cuda"
        self.read_count = 0  # images read from the store (a test counts what each process reads)
        # Seconds the background thread spent reading, and the training thread spent waiting for a batch.
        self.read_seconds = self.wait_seconds = 0.0

    def __len__(self) -> int:
        return self.n

    def _read(self, indices: np.ndarray) -> torch.Tensor:
        block = torch.from_numpy(np.ascontiguousarray(self._gather(indices))).permute(0, 3, 1, 2)
        self.read_count += len(indices)
        if not self.pin:
            return block.contiguous()
        out = torch.empty(block.shape, dtype=torch.uint8, pin_memory=True)
        out.copy_(block)
        return out

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 (len(indices), C, H, W) on the training device, read now."""
        return self._read(indices.cpu().numpy()).to(self.device, non_blocking=self.pin)

    def batches(self, order: torch.Tensor, rows: Iterable[slice]) -> Iterator[torch.Tensor]:
        """The batches ``order[r]`` for each ``r`` of ``rows``, read by a background thread."""
        order = order.cpu().numpy()
        jobs = [order[r] for r in rows]
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def hand_over(item) -> bool:
            """Queue ``item`` unless training stopped listening; whether it was queued."""
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for indices in jobs:
                    t0 = time.perf_counter()
                    item = self._read(indices)
                    self.read_seconds += time.perf_counter() - t0
                    if not hand_over(item):
                        return
            except BaseException as exc:  # handed to the training thread, which raises it
                hand_over(exc)

        worker = threading.Thread(target=produce, name="medcne-stream", daemon=True)
        worker.start()
        try:
            for _ in jobs:
                t0 = time.perf_counter()
                item = ready.get()
                self.wait_seconds += time.perf_counter() - t0
                if isinstance(item, BaseException):
                    raise item
                yield item.to(self.device, non_blocking=self.pin)
        finally:
            stop.set()
            worker.join()


def make_store(data: ImageSet, device: torch.device, stream: bool) -> ImageStore | StreamingStore:
    """The training store for ``data``: streamed or in memory, as resolved before training
    (:func:`medcne.datasets.memory.training_streams`)."""
    return StreamingStore(data, device) if stream else ImageStore(data, device)
