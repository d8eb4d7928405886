"""ImageNet-pretrained ResNet features (the paper's "t-SNE of ImageNet ResNet" baseline).

Preprocessing is torchvision's for these weights: resize the shorter side to
256 (bilinear, antialiased), centre crop 224, ImageNet mean/std. Features are
the globally average-pooled output of the last block: 512-D (ResNet18) or
2048-D (ResNet152). Weights come from torch's hub cache or a file; nothing is
downloaded unless asked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets import ImageSet
from ..errors import MedcneError

# torchvision's IMAGENET1K_V1 weights: the classic ones (the paper's era).
WEIGHTS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224


class MissingWeightsError(MedcneError, FileNotFoundError):
    """Pretrained weights are neither cached nor given."""


def cached_weights_path(arch: str) -> Path:
    """Where torch's hub cache keeps the weights of ``arch`` ($TORCH_HOME/hub/checkpoints/...)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS[arch].rsplit("/", 1)[1]


def load_state(arch: str, weights=None, download: bool = False) -> dict:
    """The ImageNet state dict of ``arch`` from ``weights``, the hub cache, or (if allowed) the web."""
    import torch

    if arch not in WEIGHTS:
        raise MedcneError(f"arch must be one of {', '.join(WEIGHTS)}; got {arch!r}")
    path = Path(weights) if weights is not None else cached_weights_path(arch)
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated download, an HTML error page...
            raise MedcneError(f"{path}: not a readable {arch} weights file ({exc.__class__.__name__}); "
                              f"download {WEIGHTS[arch]} again") from exc
    if weights is not None:
        raise MissingWeightsError(f"`weights` {path}: no such file; download {WEIGHTS[arch]} and give its path")
    hint = (f"ImageNet weights for {arch} are not in the torch cache; download {WEIGHTS[arch]} and put it "
            f"at {path} (or pass `weights`)")
    if not download:
        raise MissingWeightsError(hint)
    try:
        return torch.hub.load_state_dict_from_url(WEIGHTS[arch], map_location="cpu", progress=False)
    except OSError as exc:  # URLError and socket errors: offline
        raise MissingWeightsError(f"{hint}; the download failed ({exc.__class__.__name__})") from exc


def build_resnet(arch: str, state: dict | None):
    """A torchvision ResNet without its classifier; ``state=None`` keeps random weights (tests only)."""
    import torch
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    if state is not None:
        model.load_state_dict(state)
    model.fc = torch.nn.Identity()
    return model.eval()


def preprocess(batch: np.ndarray, device) -> object:
    """uint8 (B, H, W, C) -> normalised float (B, 3, 224, 224) on ``device``."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(batch, device=device).permute(0, 3, 1, 2).float().div_(255)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    scale = RESIZE / min(h, w)
    size = (max(RESIZE, round(h * scale)), max(RESIZE, round(w * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - CROP) // 2, (size[1] - CROP) // 2
    x = x[..., top : top + CROP, left : left + CROP]
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def resnet_features(
    data: ImageSet,
    arch: str = "resnet18",
    weights="imagenet",
    download: bool = False,
    batch_size: int = 128,
    device: str = "auto",
) -> tuple[np.ndarray, dict]:
    """Pooled ImageNet ResNet features of every image.

    Parameters
    ----------
    data : ImageSet
    arch : {'resnet18', 'resnet152'}
    weights : 'imagenet', path or None
        'imagenet': the hub cache (or the web when ``download``); a path: that
        file; ``None``: random weights (tests of the feature path only).
    download : bool
        Fetch missing weights from download.pytorch.org.
    batch_size : int
    device : {'auto', 'cpu', 'cuda'}

    Returns
    -------
    features : ndarray, shape (N, 512) or (N, 2048), float32
    record : dict
        What was done, for ``params.json``.
    """
    import torch

    from ..device import resolve_device
    from ..models import embed

    if weights is None:
        state, source = None, "random (test only)"
    elif weights == "imagenet":
        state, source = load_state(arch, None, download), WEIGHTS.get(arch, "?")
    else:
        state, source = load_state(arch, weights), str(Path(weights).resolve())
    dev = resolve_device(device)
    model = build_resnet(arch, state).to(dev)

    def features(x):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            return model(x)

    out = embed(features, data.images, dev, prepare=preprocess, chunk=batch_size)
    record = {"features": arch, "weights": source, "dim": int(out.shape[1]),
              "preprocess": f"resize {RESIZE}, centre crop {CROP}, ImageNet mean/std"}
    return out, record
