"""Backbones and the projection head of t-SimCNE (docs/design.md, "The method").

A :class:`TSimCNENet` is a ResNet backbone giving the feature ``h`` (``num_features``
wide: 512 for ResNet18/34 at width 64) and a head ``Linear(F, 1024), ReLU,
Linear(1024, d)`` giving the embedding ``z``. Stage 2 of t-SimCNE swaps the last
Linear for a fresh one with ``d = 2`` (:meth:`TSimCNENet.replace_last`).

Images up to 32 px use the small-image stem (3x3 convolution, stride 1, no
max-pool), as the paper does for MedMNIST; larger images use the standard
ImageNet stem (7x7, stride 2, max-pool). The input is float32 in [0, 1] with
``in_channels`` channels, no normalisation.

Weights are initialised from an explicit ``torch.Generator`` so that a seed
alone fixes the network (no global ``torch.manual_seed``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .defaults import BACKBONES as BACKBONE_NAMES
from .defaults import HEAD_INIT, HEAD_INITS, PRETRAIN_DIM
from .errors import MedcneError

_ARCHITECTURES = {
    # name: (block, blocks per layer)
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
# The choices offered are those of defaults.BACKBONES.
BACKBONES = {name: _ARCHITECTURES[name] for name in BACKBONE_NAMES}
HIDDEN = 1024
SMALL_STEM_MAX_PX = 32


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # Stride on the 3x3 convolution (torchvision's "ResNet v1.5").
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    """A ResNet without classifier; ``forward`` returns the pooled features.

    Parameters
    ----------
    name : {'resnet18', 'resnet34', 'resnet50'}
    in_channels : int
        1 or 3.
    width : int
        Channels of the first stage (64 in the paper); later stages double it.
    small_stem : bool
        3x3 stride-1 first convolution and no max-pool (for images <= 32 px).
    """

    def __init__(self, name: str = "resnet18", in_channels: int = 3, width: int = 64, small_stem: bool = True):
        super().__init__()
        kind, counts = BACKBONES[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        if small_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        layers, c_in = [], width
        for i, n in enumerate(counts):
            w = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(c_in, w, 2 if (j == 0 and i > 0) else 1))
                c_in = w * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float -> (B, num_features)."""
        return torch.flatten(self.pool(self.layers(self.stem(x))), 1)


class TSimCNENet(nn.Module):
    """Backbone + projection head.

    Attributes
    ----------
    num_features : int
        Width of ``h`` (512 for ResNet18 at width 64).
    out_dim : int
        Width of ``z`` (128 in stage 1, 2 afterwards).
    amp_dtype : torch.dtype or None
        Autocast dtype of the backbone (bf16 on GPUs); the head is always float32.
    kernel : LearnedKernel
        Only with ``learned`` (an annealed schedule's learned temperature or dof):
        the loss's learned scalars, so that they are saved and trained with the model.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        in_channels: int = 3,
        width: int = 64,
        small_stem: bool = True,
        out_dim: int = PRETRAIN_DIM,
        generator: torch.Generator | None = None,
        precision: str = "fp32",
        learned: tuple[str, ...] = (),
    ):
        super().__init__()
        check_model_args(backbone, in_channels, width, out_dim)
        # Mixed precision of the backbone (e.g. torch.bfloat16), or None for float32.
        self.amp_dtype: torch.dtype | None = torch.bfloat16 if precision == "bf16" else None
        with _global_rng_kept(generator):
            self.backbone = ResNet(backbone, in_channels, width, small_stem)
            self.num_features = self.backbone.num_features
            self.head = nn.Sequential(
                nn.Linear(self.num_features, HIDDEN), nn.ReLU(inplace=True), nn.Linear(HIDDEN, out_dim)
            )
        init_weights(self, generator)
        if learned:  # after the draws of the weights: they are the same with or without it
            self.kernel = LearnedKernel(learned)

    @property
    def out_dim(self) -> int:
        return self.head[-1].out_features

    @property
    def last_layer(self) -> nn.Linear:
        """The Linear that stage 2 replaces and trains alone."""
        return self.head[-1]

    def forward_features(self, x: torch.Tensor, backbone=None) -> torch.Tensor:
        """(B, C, H, W) float in [0, 1] -> h, (B, num_features) float32.

        The backbone runs under ``amp_dtype`` autocast when set; ``backbone``
        replaces ``self.backbone`` for this call (e.g. its compiled form).
        """
        amp = self.amp_dtype is not None
        with torch.autocast(x.device.type, dtype=self.amp_dtype if amp else torch.bfloat16, enabled=amp):
            h = (self.backbone if backbone is None else backbone)(x)
        return h.float()

    def forward(self, x: torch.Tensor, backbone=None) -> torch.Tensor:
        """(B, C, H, W) float in [0, 1] -> z, (B, out_dim) float32.

        The head always runs in float32, whatever autocast is active around the
        call: the map's coordinates keep 24 significant bits, not bf16's 8.
        """
        h = self.forward_features(x, backbone)
        with torch.autocast(x.device.type, enabled=False):
            return self.head(h)

    def replace_last(self, out_dim: int, generator: torch.Generator | None = None,
                     init: str = HEAD_INIT) -> nn.Linear:
        """Swap the last Linear for a fresh ``Linear(1024, out_dim)`` on the model's device.

        ``init``: ``'normal'``, weights ~ N(0, 1) as the reference t-SimCNE code
        draws its stage-2 layer, or ``'uniform'``, PyTorch's default
        U(±1/sqrt(1024)); the bias is PyTorch's default in both. The weights are
        drawn on the CPU (where ``generator`` lives) and then moved, so a seed
        gives the same layer on any device.
        """
        old = self.head[-1]
        with _global_rng_kept(generator):
            new = nn.Linear(HIDDEN, out_dim)
        _init_linear(new, generator, init)
        self.head[-1] = new.to(device=old.weight.device, dtype=old.weight.dtype)
        return self.head[-1]


class LearnedKernel(nn.Module):
    """The annealed kernel's learned scalars as parameters of the model (``model.kernel``).

    Each is stored as its logarithm (so it stays positive), starts at 1 (the
    reference's start: temperature 0.5 in its units, dof 1) and trains with the
    model: saved in its state dict, averaged over processes with its other
    gradients, clipped with them; in an optimiser group of its own at
    a hundredth of the learning rate (:func:`medcne.train.anneal.param_groups`).
    """

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.names = tuple(names)
        for name in self.names:
            self.register_parameter(f"log_{name}", nn.Parameter(torch.zeros(())))

    def values(self) -> dict[str, torch.Tensor]:
        """{name: exp(log value)}: tensors in the autograd graph (nothing read by the host)."""
        return {name: getattr(self, f"log_{name}").exp() for name in self.names}


def _global_rng_kept(generator: torch.Generator | None):
    """Around the construction of layers whose weights ``generator`` then draws: PyTorch's constructors
    draw default weights from the global generator, which is put back as it was, so that a fit leaves
    the user's ``torch.rand`` sequence alone. Without a generator the global one draws, as usual."""
    return torch.random.fork_rng(devices=[]) if generator is not None else contextlib.nullcontext()


def check_model_args(backbone: str, in_channels: int, width: int, out_dim: int) -> None:
    if backbone not in BACKBONES:
        raise MedcneError(f"`backbone` must be one of {', '.join(map(repr, BACKBONES))}; got {backbone!r}")
    if in_channels not in (1, 3):
        raise MedcneError(f"images must have 1 or 3 channels; got {in_channels}")
    if not isinstance(width, int) or width < 1:
        raise MedcneError(f"`width` must be a positive integer (64 as in the paper; 16 or 32 on CPU); got {width!r}")
    if not isinstance(out_dim, int) or out_dim < 1:
        raise MedcneError(f"`dim` must be a positive integer (2 for a map, 3 for a 3D map); got {out_dim!r}")


def use_small_stem(image_size: int, small_stem: bool | str = "auto") -> bool:
    """Resolve ``small_stem='auto'``: the small stem for images up to 32 px."""
    if small_stem == "auto":
        return image_size <= SMALL_STEM_MAX_PX
    if isinstance(small_stem, bool):
        return small_stem
    raise MedcneError(f"small_stem must be 'auto', True or False; got {small_stem!r}")


def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """He-normal convolutions, unit BatchNorm, PyTorch-default Linear; all from ``generator``."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            random_(nn.init.kaiming_normal_, m.weight, generator, m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            _init_linear(m, generator)


def _init_linear(m: nn.Linear, generator: torch.Generator | None, weights: str = "uniform") -> None:
    # PyTorch's default distribution (as nn.Linear.reset_parameters), seeded; the
    # weights may instead be standard normal (the reference's stage-2 layer).
    if weights not in HEAD_INITS:
        raise MedcneError(f"`head_init` must be one of {', '.join(map(repr, HEAD_INITS))}; got {weights!r}")
    bound = 1.0 / math.sqrt(m.in_features)
    with torch.no_grad():
        if weights == "normal":
            random_(m.weight.normal_, m.weight, generator)
        else:
            random_(m.weight.uniform_, m.weight, generator, -bound, bound)
        random_(m.bias.uniform_, m.bias, generator, -bound, bound)


def random_(draw: Callable, tensor: torch.Tensor, generator: torch.Generator | None, *args, **kwargs):
    """``draw(*args, generator=generator)`` (an in-place random op of ``tensor``), refusing a
    generator on another device than the tensor: every random draw of the weights goes through
    here, so that a draw on the GPU with the run's CPU generator fails in CPU tests too."""
    if generator is not None and generator.device.type != tensor.device.type:
        raise MedcneError(
            f"internal: a {generator.device.type} generator cannot draw a {tensor.device.type} tensor; "
            "draw on the generator's device, then move the tensor"
        )
    return draw(*args, generator=generator, **kwargs)


# channels_last on a CPU too: oneDNN's convolutions run faster in that layout (bench/RESULTS.md).
CPU_CHANNELS_LAST = True


def uses_channels_last(device: torch.device) -> bool:
    """Whether the network runs in channels_last memory layout on ``device``."""
    return device.type == "cuda" or (device.type == "cpu" and CPU_CHANNELS_LAST)


def to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, C) images -> the network's input: float32 (B, C, H, W) in [0, 1] on ``device``,
    in the memory layout of :func:`uses_channels_last`."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if uses_channels_last(device) else x


def embed_chunk(device: torch.device) -> int:
    """Images per forward pass of :func:`embed` on ``device``: 256 on a CPU, where they run as fast
    per image as 1,024 and hold a quarter of the activations (1.25 against 0.30 GB for a ResNet-18
    on 32 px images, bench/embed_chunk.py); 1,024 on an accelerator, as before (not measured there)."""
    return 256 if torch.device(device).type == "cpu" else 1024


@torch.no_grad()
def embed(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images,
    device: torch.device,
    *,
    prepare: Callable[[np.ndarray, torch.device], torch.Tensor] = to_input,
    chunk: int | None = None,
) -> np.ndarray:
    """``fn`` of every image, chunk by chunk: the one batched inference of the package.

    Parameters
    ----------
    fn : callable
        A network (or one of its methods) in eval mode, e.g. ``model.forward``
        or ``model.forward_features``.
    images : array-like (N, H, W, C) uint8
        A numpy array or a lazily read store (anything with ``len`` and slices).
    device : torch.device
        Where ``fn`` runs (a TSimCNENet method applies its own ``amp_dtype``).
    prepare : callable
        uint8 chunk -> input tensor on ``device`` (default :func:`to_input`).
    chunk : int, optional
        Images per forward pass (default :func:`embed_chunk` of ``device``).

    Returns
    -------
    ndarray (N, d) float32
    """
    out = None
    n = len(images)
    chunk = chunk or embed_chunk(device)
    for start in range(0, n, chunk):
        y = fn(prepare(np.asarray(images[start : start + chunk]), device)).float().cpu().numpy()
        if out is None:
            out = np.empty((n, y.shape[1]), dtype=np.float32)
        out[start : start + len(y)] = y
    return out if out is not None else np.empty((0, 0), dtype=np.float32)
