"""Drawing the random parameters of one view per image, vectorised over the batch.

Every draw comes from the ``torch.Generator`` passed in, on the batch's device,
so the same seed gives the same views and nothing touches global RNG state.
The distributions are those of torchvision's ``RandomResizedCrop``,
``RandomHorizontalFlip``, ``RandomVerticalFlip``, ``RandomRotation``,
``RandomApply(ColorJitter)`` and ``RandomGrayscale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .presets import AugmentConfig

# The 24 orders of (brightness, contrast, saturation, hue), as rows of op indices.
_ORDERS = torch.tensor(
    [[a, b, c, d] for a in range(4) for b in range(4) for c in range(4) for d in range(4)
     if len({a, b, c, d}) == 4]
)
CROP_TRIES = 10  # as torchvision's RandomResizedCrop.get_params


@dataclass
class ViewParams:
    """The parameters of one view of each of B images (all tensors on one device).

    Attributes
    ----------
    box : LongTensor (B, 4) or None
        Crop box ``(top, left, height, width)`` in pixels, as torchvision's
        ``resized_crop`` takes it; ``None`` means the whole image (no crop).
    hflip, vflip : BoolTensor (B,)
        Flip left-right / top-bottom after cropping.
    angle : FloatTensor (B,) or None
        Rotation in degrees, counter-clockwise as ``torchvision...rotate``, about the
        image centre, applied before the crop. Multiples of 90 are exact.
    quarter : LongTensor (B,) or None
        Rotation by ``quarter * 90`` degrees (exclusive with ``angle``).
    jitter : BoolTensor (B,) or None
        Which images get colour jitter; ``None`` means none do.
    factors : FloatTensor (B, 4)
        Brightness, contrast, saturation factors and hue shift (ignored where
        ``jitter`` is False).
    order : LongTensor (B, 4)
        Op index (0 brightness, 1 contrast, 2 saturation, 3 hue) at each of the
        four steps of the jitter.
    gray : BoolTensor (B,) or None
        Which images are turned to grayscale; ``None`` means none.
    """

    hflip: torch.Tensor
    vflip: torch.Tensor
    box: torch.Tensor | None = None
    angle: torch.Tensor | None = None
    quarter: torch.Tensor | None = None
    jitter: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    order: torch.Tensor | None = None
    gray: torch.Tensor | None = None

    def take(self, index: torch.Tensor) -> ViewParams:
        """The parameters of the images at ``index`` (LongTensor), in that order."""
        return ViewParams(**{
            name: None if value is None else value[index] for name, value in vars(self).items()
        })


def sample_params(
    config: AugmentConfig, n: int, height: int, width: int, generator: torch.Generator,
    device: torch.device,
) -> ViewParams:
    """Draw the parameters of ``n`` views of ``height`` x ``width`` images."""

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, device=device)
        return low + (high - low) * u if (low, high) != (0.0, 1.0) else u

    params = ViewParams(
        hflip=uniform(n) < config.hflip_p,
        vflip=uniform(n) < config.vflip_p,
    )
    if config.crop:
        params.box = sample_boxes(n, height, width, config.scale, config.ratio, generator, device)
    if config.rotation == "angle":
        params.angle = uniform(n, high=360.0)
    elif config.rotation == "quarter":
        params.quarter = torch.randint(0, 4, (n,), generator=generator, device=device)
    if config.jitter:
        params.jitter = uniform(n) < config.jitter_p
        bounds = [
            (max(0.0, 1.0 - v), 1.0 + v)
            for v in (config.brightness, config.contrast, config.saturation)
        ] + [(-config.hue, config.hue)]
        u = uniform(n, 4)
        low = torch.tensor([b[0] for b in bounds], device=device)
        high = torch.tensor([b[1] for b in bounds], device=device)
        params.factors = low + (high - low) * u
        pick = torch.randint(0, len(_ORDERS), (n,), generator=generator, device=device)
        params.order = _ORDERS.to(device)[pick]
    if config.grayscale:
        params.gray = uniform(n) < config.grayscale_p
    return params


def sample_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: torch.Generator, device: torch.device,
) -> torch.Tensor:
    """Crop boxes drawn as ``RandomResizedCrop.get_params`` draws them, for n images at once.

    Each image gets 10 tries of (area fraction uniform in ``scale``, log aspect
    ratio uniform in ``log(ratio)``); the first box that fits is kept, placed
    uniformly; when none fits, the central crop of torchvision's fallback is used.

    Returns
    -------
    LongTensor (n, 4)
        ``(top, left, height, width)`` per image.
    """
    area = height * width
    u = torch.rand((n, CROP_TRIES, 2), generator=generator, device=device)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    # torch.round rounds half to even, as Python's round() in torchvision does.
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.to(torch.uint8), dim=1, keepdim=True)  # first True (or 0)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    found = fits.any(dim=1)
    fh, fw = _fallback(height, width, ratio)
    h = torch.where(found, h, torch.full_like(h, fh))
    w = torch.where(found, w, torch.full_like(w, fw))
    # Integer positions uniform in [0, H - h]; the clamp guards float rounding at the top end.
    pos = torch.rand((n, 2), generator=generator, device=device)
    top = torch.minimum(torch.floor(pos[:, 0] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(pos[:, 1] * (width - w + 1)), width - w)
    top = torch.where(found, top, torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], dim=1).to(torch.long)


def _fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """(h, w) of torchvision's central fallback crop."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width
