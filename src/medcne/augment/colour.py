"""Colour jitter and random grayscale, vectorised over the batch.

Follows torchvision's ``ColorJitter`` on float images: brightness, contrast and
saturation are blends ``clamp(f * x + (1 - f) * target, 0, 1)`` with the target
black, the mean gray level of the image, or its gray image; hue shifts the H of
HSV. Each image applies the four in its own random order. One-channel images
skip saturation, hue and grayscale, which need colour (torchvision leaves
such images unchanged in those steps too).

Speed: the images are grouped (sorted) by the step at which they shift hue and
by whether they turn gray, so every hue shift and every grayscale runs on one
contiguous slice, in place, with one host sync for the group sizes; the blend
steps run on all jittered images at once with per-image factors.
"""

from __future__ import annotations

import torch

from .sampling import ViewParams

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
_GROUPS = 10  # (hue step 0..3, or 4 = no jitter) x (gray or not)


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
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = (hue.unsqueeze(1) + offsets).remainder_(6.0)
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


def colour_groups(params: ViewParams, n: int) -> tuple[torch.Tensor | None, list[int]]:
    """The order that groups images for :func:`colour_grouped_`, and the group sizes.

    Returns
    -------
    perm : LongTensor (n,) or None
        Image indices sorted by group (None when nothing needs grouping).
    counts : list of 10 ints
        Images per group ``2 * hue_step + gray`` (hue_step 4: not jittered).
    """
    if params.jitter is None and params.gray is None:
        return None, [0] * (_GROUPS - 2) + [n, 0]
    device = params.hflip.device
    if params.jitter is not None:
        hue_step = torch.argmax((params.order == HUE).to(torch.uint8), dim=1)
        hue_step = torch.where(params.jitter, hue_step, torch.full_like(hue_step, 4))
    else:
        hue_step = torch.full((n,), 4, dtype=torch.long, device=device)
    key = 2 * hue_step + (params.gray.to(torch.long) if params.gray is not None else 0)
    perm = torch.argsort(key, stable=True)
    return perm, torch.bincount(key, minlength=_GROUPS).tolist()


def colour_grouped_(y: torch.Tensor, params: ViewParams, counts: list[int]) -> torch.Tensor:
    """Jitter then grayscale, in place, on images already sorted by :func:`colour_groups`.

    ``params`` must be sorted the same way. Returns ``y``.
    """
    c = y.shape[1]
    starts = [sum(counts[:i]) for i in range(_GROUPS + 1)]
    if params.jitter is not None:
        n_on = starts[8]
        f = params.factors[:n_on]
        coefficients = _blend_coefficients(params.order[:n_on], f, c)
        for step in range(4):
            # Images shifting hue at this step form one slice; blend the rest.
            lo, hi = starts[2 * step], starts[2 * step + 2]
            factor, on_mean, on_gray = (t[:, step] for t in coefficients)
            _blend_(y[:lo], factor[:lo], on_mean[:lo], on_gray[:lo])
            _blend_(y[hi:n_on], factor[hi:n_on], on_mean[hi:n_on], on_gray[hi:n_on])
            if c == 3 and hi > lo:
                shift_hue(y[lo:hi], f[lo:hi, HUE], out=y[lo:hi])
    if params.gray is not None and c == 3:
        for group in range(1, _GROUPS, 2):
            lo, hi = starts[group], starts[group + 1]
            if hi > lo:
                y[lo:hi] = to_gray(y[lo:hi])  # broadcasts over the 3 channels
    return y
