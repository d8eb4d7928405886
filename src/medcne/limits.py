"""Size-like parameters checked against the machine before anything starts.

A ``--width 100000`` (hundreds of GB of weights), ``--nproc 64`` on two cores
(64 copies of the model and the data) or a negative ``--seed`` would
otherwise end in a crash, an out-of-memory kill of other programs, or an
internal error. :func:`check_args` checks the options of any command in one
place (the CLI calls it before the command runs); :func:`check_training`
checks a training run once its images are known (from
:func:`medcne.resolve.resolve`).

The memory figures are lower bounds (weights, gradients and momentum in fp32;
the stored activations of both views at 2 bytes a value): a run refused here
could not run at all, and none that fits is refused.
"""

from __future__ import annotations

import os

from .datasets.memory import available_bytes, format_bytes
from .errors import MedcneError, check_seed

# (block kind, blocks per stage) of each backbone, as medcne.models builds them.
ARCHITECTURES = {"resnet18": (2, (2, 2, 2, 2)), "resnet34": (2, (3, 4, 6, 3)), "resnet50": (3, (3, 4, 6, 3))}
HEAD_HIDDEN = 1024
PRETRAIN_DIM = 128
SMALL_STEM_MAX_PX = 32
# Options that count things: at least this much.
AT_LEAST = {"subset": 1, "k": 1, "width": 1, "batch_size": 2, "n_images": 1, "n_views": 1, "grid": 1,
            "thumb": 1}  # --nproc: checked by fit with its own message


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def model_parameters(width: int, backbone: str = "resnet18", in_channels: int = 3) -> int:
    """Parameters of the backbone and the stage-1 head (convolutions and linear layers; BatchNorm left out)."""
    convs, blocks = ARCHITECTURES.get(backbone, ARCHITECTURES["resnet18"])
    total, c_in = 9 * in_channels * width, width
    for i, n in enumerate(blocks):
        w = width * 2**i
        c_out = w * (4 if convs == 3 else 1)
        for b in range(n):
            c = c_in if b == 0 else c_out
            total += 9 * c * w + 9 * w * w if convs == 2 else c * w + 9 * w * w + w * c_out
            total += c * c_out if b == 0 and (c != c_out or i > 0) else 0  # the shortcut's 1x1 convolution
        c_in = c_out
    return total + c_in * HEAD_HIDDEN + HEAD_HIDDEN * PRETRAIN_DIM


def activation_values(width: int, side: int, backbone: str = "resnet18") -> int:
    """Values stored for the backward pass of one view (a convolution and its BatchNorm output each)."""
    convs, blocks = ARCHITECTURES.get(backbone, ARCHITECTURES["resnet18"])
    px = side * side if side <= SMALL_STEM_MAX_PX else max(side // 4, 1) ** 2
    total = 2 * width * px
    for i, n in enumerate(blocks):
        total += 2 * convs * n * width * 2**i * max(px // 4**i, 1)
    return total


def weight_bytes(width: int, backbone: str = "resnet18") -> int:
    """Bytes of the network's weights, their gradients and momentum in fp32."""
    return 3 * 4 * model_parameters(width, backbone)


def training_bytes(width: int, batch: int, side: int, backbone: str = "resnet18", processes: int = 1,
                   data_bytes: int = 0) -> int:
    """A lower bound of the memory a training run needs on one machine (see the module's docstring)."""
    weights = weight_bytes(width, backbone)
    views = 2 * batch * activation_values(width, side, backbone) * 2
    return processes * (weights + data_bytes) + views


def _refuse_memory(need: int, available: int | None, what: str, fix: str) -> None:
    if available is not None and need > available:
        raise MedcneError(f"{what} needs at least {format_bytes(need)} of memory; about {format_bytes(available)} "
                          f"is available; {fix}")


def check_training(width, batch: int, side: int, *, backbone: str = "resnet18", processes: int = 1,
                   data_bytes: int = 0, device_free: int | None = None) -> None:
    """Refuse a training run that cannot fit (one line with the figures and what to lower).

    ``device_free``: free bytes of the GPU it runs on (None: the host's memory is checked).
    """
    if not isinstance(width, int) or not isinstance(batch, int):
        return  # their own checks name them
    need = training_bytes(width, batch, side, backbone, processes, data_bytes if device_free is None else 0)
    available = device_free if device_free is not None else available_bytes()
    where = "the GPU" if device_free is not None else f"{processes} process(es) on this machine"
    # Named as parameters (`width`): the command line shows them as its options.
    _refuse_memory(need, available, f"training at `width` {width}, `batch_size` {batch} on {side} px images "
                   f"({where})", "lower `width` or `batch_size` (or run fewer processes)")


def check_args(args) -> None:
    """Check the size-like options that ``args`` (a parsed command line) has, before the command runs."""
    if isinstance(getattr(args, "seed", None), int):
        check_seed(args.seed)
    for name, least in AT_LEAST.items():
        value = getattr(args, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value < least:
            raise MedcneError(f"--{name.replace('_', '-')} must be at least {least}; got {value}")
    nproc = getattr(args, "nproc", None)
    if isinstance(nproc, int) and nproc > 1:
        _check_processes(nproc, getattr(args, "device", "auto"))
    width = getattr(args, "width", None)
    if isinstance(width, int) and getattr(args, "command", "") in ("fit", "baseline"):
        # The weights alone: the batch is capped at the number of images and the images' side is not
        # known yet; resolve() checks the activations once the images are read.
        check_weights(width, processes=max(nproc or 1, 1), backbone=getattr(args, "backbone", None) or "resnet18")


def check_weights(width: int, processes: int = 1, backbone: str = "resnet18") -> None:
    """Refuse a ``--width`` whose weights alone (with their gradients and momentum) cannot fit."""
    need = processes * weight_bytes(width, backbone)
    per = f", a copy in each of {processes} processes" if processes > 1 else ""
    _refuse_memory(need, available_bytes(), f"--width {width} alone (the network's weights{per})",
                   "lower --width (64 as in the paper; 16 or 32 on a CPU)")


def _check_processes(n: int, device: str) -> None:
    """``--nproc n``: one process per GPU, or at most one per core on a CPU."""
    import torch

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if gpus:
        if n > gpus:
            raise MedcneError(f"`nproc` {n} but this machine has {gpus} GPU(s): one process per GPU; "
                              f"lower `nproc` to at most {gpus}")
        return
    cores = usable_cores()
    if n > cores:
        raise MedcneError(f"`nproc` {n} but this machine has {cores} CPU core(s) for this command and no GPU: "
                          f"each process needs a core and its own copy of the model and data; "
                          f"use at most `nproc` {cores}")
