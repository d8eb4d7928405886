"""The dataset as one uint8 tensor, with batched gather onto the training device.

Speed comes from the data path (docs/design.md, "Speed"): all images live in one
N x C x H x W uint8 tensor, on the GPU when they fit, else in pinned host memory
from which each batch is copied asynchronously. Batches are index tensors; no
DataLoader, no per-image Python.
"""

from __future__ import annotations

import numpy as np
import torch

from ..datasets import ImageSet
from ..datasets.memory import check_memory

# Keep the data under this share of free GPU memory, so activations still fit.
GPU_DATA_SHARE = 0.4


def to_nchw_tensor(data: ImageSet, pin: bool = False) -> torch.Tensor:
    """All images as an (N, C, H, W) uint8 CPU tensor (a lazy store is read in chunks)."""
    n, (h, w, c) = len(data), data.image_shape
    # A lazily read store (PCam) becomes one tensor here: refuse, with the figure, what memory cannot hold.
    check_memory(n * c * h * w, str(data.source), f"training on {n:,} images of {h}x{w}x{c} (one uint8 tensor)",
                 "train on a --subset of the images or a smaller --size")
    out = torch.empty((n, c, h, w), dtype=torch.uint8, pin_memory=pin)
    for start, block in data.iter_chunks(4096):
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
