"""Colour jitter and random grayscale, vectorised over the batch.

Follows torchvision's ``ColorJitter`` on float images: brightness, contrast and
saturation are blends ``clamp(f * x + (1 - f) * target, 0, 1)`` with the target
black, the mean gray level of the image, or its gray image; hue shifts the H of
HSV. Each image applies the four in its own random order. One-channel images
skip saturation, hue and grayscale, which need colour (torchvision leaves
such images unchanged in those steps too).
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
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images by ``shift`` turns, keeping saturation and value.

    Parameters
    ----------
    x : FloatTensor (B, 3, H, W)
        Images in [0, 1].
    shift : FloatTensor (B,)
        Hue shift per image as a fraction of the colour circle, in [-0.5, 0.5].

    Returns
    -------
    FloatTensor (B, 3, H, W)
    """
    r, g, b = x.unbind(1)
    value = x.amax(1)
    chroma = value - x.amin(1)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # Hue in sixths of the circle, from whichever channel is largest (red wins ties,
    # then green, as torchvision's rgb_to_hsv).
    hue = torch.where(
        value == r, (g - b) / safe, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = (hue + 6.0 * shift.view(-1, 1, 1)).remainder(6.0)
    # HSV -> RGB without branches: channel n of (5, 3, 1) for (R, G, B) drops from
    # the value by the chroma times a trapezoid of the hue.
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = (hue.unsqueeze(1) + offsets).remainder(6.0)
    drop = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return (value.unsqueeze(1) - chroma.unsqueeze(1) * drop).clamp(0.0, 1.0)


def _blend_step(x: torch.Tensor, op: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """One step of the jitter for the brightness / contrast / saturation images.

    Images whose op at this step is hue get factor 1 (unchanged, exactly).
    """
    n, c = x.shape[:2]
    blend = op < HUE
    if c == 1:
        blend = blend & (op != SATURATION)
    factor = factors.gather(1, op.clamp(max=SATURATION).unsqueeze(1)).squeeze(1)
    factor = torch.where(blend, factor, torch.ones_like(factor)).view(n, 1, 1, 1)
    gray = to_gray(x)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    is_contrast = (op == CONTRAST).to(x.dtype).view(n, 1, 1, 1)
    is_saturation = (op == SATURATION).to(x.dtype).view(n, 1, 1, 1)
    target = is_contrast * mean + is_saturation * gray
    return (factor * x + (1.0 - factor) * target).clamp(0.0, 1.0)


def jitter(x: torch.Tensor, apply: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Colour jitter with per-image factors and order.

    Parameters
    ----------
    x : FloatTensor (B, C, H, W)
        Images in [0, 1], C in {1, 3}.
    apply : BoolTensor (B,)
        Which images are jittered (the others come back unchanged).
    factors : FloatTensor (B, 4)
        Brightness, contrast, saturation factors and hue shift.
    order : LongTensor (B, 4)
        Op index (0 brightness, 1 contrast, 2 saturation, 3 hue) per step.

    Returns
    -------
    FloatTensor (B, C, H, W)
    """
    b, c = x.shape[:2]
    # Group the images by the step at which they shift hue (4: not jittered), so
    # each step's hue runs on one contiguous slice: one sort instead of per-step
    # boolean indexing, and a single host sync for the group sizes.
    hue_step = torch.argmax((order == HUE).to(torch.uint8), dim=1)
    hue_step = torch.where(apply, hue_step, torch.full_like(hue_step, 4))
    perm = torch.argsort(hue_step, stable=True)
    counts = torch.bincount(hue_step, minlength=5).tolist()
    n_on = b - counts[4]
    if n_on == 0:
        return x
    y = x[perm[:n_on]]
    f = factors[perm[:n_on]]
    o = order[perm[:n_on]]
    start = 0
    for step in range(4):
        y = _blend_step(y, o[:, step], f)
        stop = start + counts[step]
        if c == 3 and stop > start:
            y[start:stop] = shift_hue(y[start:stop], f[start:stop, HUE])
        start = stop
    out = x.clone()
    out[perm[:n_on]] = y
    return out


def grayscale(x: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Replace the chosen RGB images, (B,) bool ``apply``, by their gray level in all 3 channels."""
    if x.shape[1] == 1:
        return x
    return torch.where(apply.view(-1, 1, 1, 1), to_gray(x).expand_as(x), x)


def apply_colour(x: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Jitter then grayscale, as ``params`` say; (B, C, H, W) in [0, 1] -> same."""
    if params.jitter is not None:
        x = jitter(x, params.jitter, params.factors, params.order)
    if params.gray is not None:
        x = grayscale(x, params.gray)
    return x
