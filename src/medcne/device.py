"""The one place where a device name becomes a ``torch.device``."""

from __future__ import annotations

from .defaults import DEVICES
from .errors import MedcneError


def resolve_device(device="auto"):
    """``'auto'`` -> CUDA when available, else CPU; ``'cuda'`` without a GPU is an error.

    Accepts a ``torch.device`` (returned as is), ``'auto'``, ``'cpu'``, ``'cuda'``
    or ``'cuda:N'``. torch is imported here, on first use, so that callers that
    only ever compute on the CPU (metrics) do not need it.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES and not name.startswith("cuda:"):
        raise MedcneError(f"device must be one of {', '.join(map(repr, DEVICES))}; got {device!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedcneError(f"device={name!r} but PyTorch sees no GPU; use device='cpu' or 'auto'")
    return torch.device(name)
