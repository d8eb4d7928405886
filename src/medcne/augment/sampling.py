"""Drawing the random parameters of one view per image, vectorised over the batch.

All randomness of a call is one ``torch.rand`` of shape (B, K) from the
``torch.Generator`` passed in, on the batch's device (:func:`draw_uniforms`), so
the same seed gives the same views and nothing touches global RNG state. The
parameters are then a pure function of those numbers (:func:`params_from_uniforms`):
fixed shapes, no tensors made from Python data, nothing read back by the host.
That is what lets a GPU run a whole batch without waiting, and what
``torch.compile(fullgraph=True)`` needs. The distributions are those of
torchvision's ``RandomResizedCrop``, ``RandomHorizontalFlip``,
``RandomVerticalFlip``, ``RandomRotation``, ``RandomApply(ColorJitter)`` and
``RandomGrayscale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .presets import AugmentConfig

# The 24 orders of (brightness, contrast, saturation, hue), as rows of op indices.
ORDERS = tuple(
    (a, b, c, d) for a in range(4) for b in range(4) for c in range(4) for d in range(4) if len({a, b, c, d}) == 4
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


@dataclass(frozen=True)
class Layout:
    """Which columns of the (B, K) uniforms feed which parameter (fixed by the config)."""

    flips: int = 0  # 2 columns: hflip, vflip
    crop: int | None = None  # 2 * CROP_TRIES + 2 columns: (area, log ratio) per try, then (top, left)
    rotation: int | None = None  # 1 column
    jitter: int | None = None  # 6 columns: apply, 4 factors, order
    gray: int | None = None  # 1 column
    width: int = 2

    @classmethod
    def of(cls, config: AugmentConfig) -> Layout:
        cols, at = {}, 2
        for name, used, size in (
            ("crop", config.crop, 2 * CROP_TRIES + 2), ("rotation", config.rotation is not None, 1),
            ("jitter", config.jitter, 6), ("gray", config.grayscale, 1),
        ):
            if used:
                cols[name], at = at, at + size
        return cls(width=at, **cols)


def draw_uniforms(config: AugmentConfig, n: int, generator: torch.Generator, device) -> torch.Tensor:
    """Every random number of ``n`` views in one call: (n, K) uniform in [0, 1)."""
    return torch.rand((n, Layout.of(config).width), generator=generator, device=device)


def order_table(device) -> torch.Tensor:
    """(24, 4) LongTensor of the jitter orders (the rows of :data:`ORDERS`), made on ``device``.

    Built from ``arange`` by arithmetic and a fixed-size sort (not a boolean mask,
    whose result size a GPU would have to report to the host), so nothing is copied
    from or read back to host memory; make it once per device and pass it to
    :func:`params_from_uniforms`.
    """
    codes = torch.arange(256, device=device)
    digits = torch.stack([codes // 64, codes // 16 % 4, codes // 4 % 4, codes % 4], dim=1)
    repeated = ((digits.unsqueeze(1) == digits.unsqueeze(2)).sum(dim=(1, 2)) != 4).to(torch.uint8)
    # The 24 codes without a repeated digit, in increasing order: first in a stable sort.
    return digits[torch.argsort(repeated, stable=True)[:24]]


def params_from_uniforms(
    config: AugmentConfig, u: torch.Tensor, height: int, width: int, orders: torch.Tensor | None = None,
) -> ViewParams:
    """The parameters of ``len(u)`` views of ``height`` x ``width`` images from their uniforms.

    ``orders`` is :func:`order_table` on ``u``'s device (needed with jitter);
    pass it in so it is made once, not per call.
    """
    lay = Layout.of(config)
    params = ViewParams(hflip=u[:, lay.flips] < config.hflip_p, vflip=u[:, lay.flips + 1] < config.vflip_p)
    if lay.crop is not None:
        tries = u[:, lay.crop : lay.crop + 2 * CROP_TRIES].reshape(-1, CROP_TRIES, 2)
        pos = u[:, lay.crop + 2 * CROP_TRIES : lay.crop + 2 * CROP_TRIES + 2]
        params.box = boxes_from_uniforms(tries, pos, height, width, config.scale, config.ratio)
    if config.rotation == "angle":
        params.angle = u[:, lay.rotation] * 360.0
    elif config.rotation == "quarter":
        params.quarter = _pick(u[:, lay.rotation], 4)
    if lay.jitter is not None:
        j = lay.jitter
        params.jitter = u[:, j] < config.jitter_p
        low = [max(0.0, 1.0 - v) for v in (config.brightness, config.contrast, config.saturation)] + [-config.hue]
        high = [1.0 + v for v in (config.brightness, config.contrast, config.saturation)] + [config.hue]
        params.factors = torch.stack(
            [lo + (hi - lo) * u[:, j + 1 + i] for i, (lo, hi) in enumerate(zip(low, high, strict=True))], dim=1
        )
        table = orders if orders is not None else order_table(u.device)
        params.order = table[_pick(u[:, j + 5], len(ORDERS))]
    if lay.gray is not None:
        params.gray = u[:, lay.gray] < config.grayscale_p
    return params


def _pick(u: torch.Tensor, k: int) -> torch.Tensor:
    """Uniform integers in [0, k) from uniforms in [0, 1)."""
    return torch.clamp(torch.floor(u * k), max=k - 1).to(torch.long)


def sample_params(
    config: AugmentConfig, n: int, height: int, width: int, generator: torch.Generator,
    device: torch.device,
) -> ViewParams:
    """Draw the parameters of ``n`` views of ``height`` x ``width`` images."""
    return params_from_uniforms(config, draw_uniforms(config, n, generator, device), height, width)


def sample_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: torch.Generator, device: torch.device,
) -> torch.Tensor:
    """Crop boxes of ``n`` views drawn with ``generator`` (see :func:`boxes_from_uniforms`)."""
    u = torch.rand((n, 2 * CROP_TRIES + 2), generator=generator, device=device)
    return boxes_from_uniforms(u[:, : 2 * CROP_TRIES].reshape(n, CROP_TRIES, 2), u[:, 2 * CROP_TRIES :],
                               height, width, scale, ratio)


def boxes_from_uniforms(
    tries: torch.Tensor, pos: torch.Tensor, height: int, width: int, scale: tuple[float, float],
    ratio: tuple[float, float],
) -> torch.Tensor:
    """Crop boxes as ``RandomResizedCrop.get_params`` draws them, for n images at once.

    Each image gets 10 tries of (area fraction uniform in ``scale``, log aspect
    ratio uniform in ``log(ratio)``) from ``tries`` (n, 10, 2); the first box that
    fits is kept, placed uniformly by ``pos`` (n, 2); when none fits, the central
    crop of torchvision's fallback is used.

    Returns
    -------
    LongTensor (n, 4)
        ``(top, left, height, width)`` per image.
    """
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * tries[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * tries[..., 1])
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
