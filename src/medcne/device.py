"""The one place where a device name becomes a ``torch.device``, and where a precision is chosen."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .defaults import DEVICES, PRECISIONS
from .errors import MedcneError

# CPU features that compute bf16 natively (x86: AVX512-BF16, AMX; Arm: the BF16 extension).
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


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
        raise MedcneError(f"`device` must be one of {', '.join(map(repr, DEVICES))}; got {device!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedcneError(f"`device` {name!r} but PyTorch sees no GPU; use `device` 'cpu' or 'auto'")
    return torch.device(name)


def machine_name(device=None) -> str:
    """What a benchmark prints as the machine: the GPU's name, or the CPU's model and core count."""
    import os
    import platform

    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.split(":")[0].strip() in ("model name", "Model"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    bf16 = " with native bf16" if (cpu_flags() or frozenset()) & NATIVE_BF16_FLAGS else ""
    return f"{model}{bf16}, {os.cpu_count()} cores"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def native_bf16(device) -> bool:
    """Whether ``device`` computes bf16 natively (then bf16 autocast is faster, not emulated)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    flags = cpu_flags()
    # oneDNN must be there too: it is what runs bf16 convolutions on a CPU.
    return bool(flags and NATIVE_BF16_FLAGS & flags and torch.backends.mkldnn.is_available())


def resolve_precision(precision: str, device) -> str:
    """``'auto'`` -> ``'bf16'`` where :func:`native_bf16`, else ``'fp32'``; ``'bf16'`` where the
    device cannot is an error that says what to use instead."""
    if precision not in PRECISIONS:
        raise MedcneError(f"`precision` must be one of {', '.join(map(repr, PRECISIONS))}; got {precision!r}")
    if precision == "fp32":
        return "fp32"
    native = native_bf16(device)
    if precision == "bf16" and not native:
        what = "GPU" if device.type == "cuda" else "CPU (no AVX512-BF16 or AMX)"
        raise MedcneError(
            f"precision 'bf16' was asked for, but this {what} has no native bf16 and would emulate it slowly; "
            "use `precision` auto (float32 here) or fp32"
        )
    return "bf16" if native else "fp32"


def amp_dtype(precision: str):
    """The autocast dtype of a resolved precision (None for float32)."""
    import torch

    return torch.bfloat16 if precision == "bf16" else None
