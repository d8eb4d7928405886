"""Colour jitter and random grayscale, vectorised over the batch.

Follows torchvision's ``ColorJitter`` on float images: brightness, contrast and
saturation are blends ``clamp(f * x + (1 - f) * target, 0, 1)`` with the target
black, the mean gray level of the image, or its gray image; hue shifts the H of
HSV. Each image applies the four in its own random order. One-channel images
skip saturation, hue and grayscale, which need colour (torchvision leaves
such images unchanged in those steps too).

Shapes never depend on the data: every step runs on the whole batch with
per-image coefficients (a blend with factor 1 leaves an image exactly as it is)
and the hue shift and the grayscale are computed for all images and kept where
a mask says so. No host synchronisation, and a GPU (or ``torch.compile``) runs
the batch as a fixed sequence of elementwise kernels.
"""

from __future__ import annotations

import torch

from .sampling import ViewParams

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """Gray level of RGB images, (B, 3, H, W) -> (B, 1, H, W); one channel passes through."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (r * _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


def shift_hue(x: torch.Tensor, shift: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate the hue of RGB images by ``shift`` turns, keeping saturation and value.

    Parameters
    ----------
    x : FloatTensor (B, 3, H, W)
        Images in [0, 1].
    shift : FloatTensor (B,)
        Hue shift per image as a fraction of the colour circle, in [-0.5, 0.5].
    out : FloatTensor (B, 3, H, W), optional
        Where to write the result (may be ``x`` itself).

    Returns
    -------
    FloatTensor (B, 3, H, W)
    """
    r, g, b = x.unbind(1)
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    # Hue in sixths of the circle from whichever channel is largest (red wins
    # ties, then green, as torchvision's rgb_to_hsv). Gray pixels (chroma 0)
    # have every difference 0, so dividing by a clamped chroma gives hue 0.
    hue = torch.where(
        value == r, g - b, torch.where(value == g, (b - r).add_(chroma, alpha=2), (r - g).add_(chroma, alpha=4))
    )
    hue = hue.div_(chroma.clamp(min=1e-12)).add_(6.0 * shift.view(-1, 1, 1)).remainder_(6.0)
    # HSV -> RGB without branches: channel n of (5, 3, 1) for (R, G, B) drops from
    # the value by the chroma times a trapezoid of the hue.
    k = torch.stack([(hue + n).remainder_(6.0) for n in (5.0, 3.0, 1.0)], dim=1)
    drop = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    # No clamp needed: 0 <= drop <= 1 and chroma <= value, so the result lies in
    # [value - chroma, value], which float rounding (monotonic) keeps inside [0, 1].
    return torch.addcmul(value.unsqueeze(1), chroma.unsqueeze(1), drop, value=-1.0, out=out)


def _blend_coefficients(order: torch.Tensor, factors: torch.Tensor, channels: int):
    """Per image and step (n, 4): the factor f on the image, and (1 - f) on its mean
    gray level (contrast) and on its gray image (saturation); brightness blends
    with black. Steps that shift hue (or need colour the image lacks) get f = 1."""
    blend = order < HUE
    if channels == 1:
        blend = blend & (order != SATURATION)
    factor = factors.gather(1, order.clamp(max=SATURATION))
    factor = torch.where(blend, factor, torch.ones_like(factor))
    rest = 1.0 - factor
    return factor, rest * (order == CONTRAST), rest * (order == SATURATION)


def _blend_(x: torch.Tensor, factor: torch.Tensor, on_mean: torch.Tensor, on_gray: torch.Tensor) -> None:
    """One jitter step in place: ``clamp(f x + c_mean mean(gray) + c_gray gray, 0, 1)``.

    ``x`` is (n, C, H, W); the coefficients are (n,) per image.
    """
    n = x.shape[0]
    if n == 0:
        return
    gray = to_gray(x)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    target = torch.addcmul(on_mean.view(n, 1, 1, 1) * mean, on_gray.view(n, 1, 1, 1), gray)
    torch.addcmul(target, x, factor.view(n, 1, 1, 1), out=x).clamp_(0.0, 1.0)


def colour(y: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Jitter (the four steps in each image's order) then grayscale, as ``params`` say.

    ``y`` is (B, C, H, W) float in [0, 1] and is modified in place where that
    is possible; use the returned tensor.
    """
    n, c = y.shape[:2]
    if params.jitter is not None:
        on = params.jitter.view(n, 1)
        factor, on_mean, on_gray = _blend_coefficients(params.order, params.factors, c)
        # Images without jitter blend with factor 1 (unchanged) and never shift hue.
        factor = torch.where(on, factor, torch.ones_like(factor))
        on_mean, on_gray = on_mean * on, on_gray * on
        hue_now = (params.order == HUE) & on
        for step in range(4):
            _blend_(y, factor[:, step], on_mean[:, step], on_gray[:, step])
            if c == 3:
                y = torch.where(hue_now[:, step].view(n, 1, 1, 1), shift_hue(y, params.factors[:, HUE]), y)
    if params.gray is not None and c == 3:
        y = torch.where(params.gray.view(n, 1, 1, 1), to_gray(y).expand_as(y), y)
    return y
