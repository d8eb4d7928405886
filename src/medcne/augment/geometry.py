"""Crop, flips and rotation of a batch in one resampling.

The view of each image is, in forward order: rotate the whole image about its
centre (uncovered corners take the fill colour), take the crop box and resize it
to the image size, then flip. Sampling goes backwards: for each output pixel,
undo the flips and the crop (one affine map per image, ``F.affine_grid``),
clamp to the crop box (as resizing a crop clamps at its edges), undo the
rotation (a 2 x 2 matrix per image), and read the source with one bilinear
``F.grid_sample`` for the whole batch.

Quarter turns use exact cosines and sines (0, 1, -1), so they move pixel
centres onto pixel centres; without a crop on square images they are done as a
pure index permutation (one ``gather``), which is exact to the bit.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from .sampling import ViewParams


def apply_geometry(
    x: torch.Tensor, params: ViewParams, fill: tuple[float, ...] | None = None
) -> torch.Tensor:
    """Crop, flip and rotate each image of a batch as ``params`` say.

    Parameters
    ----------
    x : FloatTensor (B, C, H, W)
        Images in [0, 1].
    params : ViewParams
        ``box``, ``hflip``, ``vflip`` and ``angle`` or ``quarter`` per image.
    fill : tuple of C (or 1) floats, optional
        Colour of the area a rotation uncovers; black when None.

    Returns
    -------
    FloatTensor (B, C, H, W)
    """
    b, c, h, w = x.shape
    if b == 0:
        return x
    rotating = params.angle is not None or params.quarter is not None
    if params.box is None and params.angle is None and (params.quarter is None or h == w):
        return _dihedral(x, params.quarter, params.hflip, params.vflip)

    grid = F.affine_grid(_crop_flip_matrix(params, b, h, w, x.device), [b, c, h, w], align_corners=False)
    if params.box is not None:
        # Resizing a crop reads nothing outside the crop: sample positions up to
        # half an output pixel beyond its edge pixels are clamped onto them.
        lo, hi = _box_limits(params.box, h, w)
        grid = torch.maximum(torch.minimum(grid, hi), lo)
    needs_fill = False
    if rotating:
        cos, sin = _cos_sin(params, x.device)
        # A rotation in pixel units, written in normalised coordinates, where the
        # two axes have different scales when H != W.
        gx, gy = grid.unbind(-1)
        sx = gx * (w / 2.0)
        sy = gy * (h / 2.0)
        cos = cos.view(b, 1, 1)
        sin = sin.view(b, 1, 1)
        grid = torch.stack(
            [(cos * sx - sin * sy) / (w / 2.0), (sin * sx + cos * sy) / (h / 2.0)], dim=-1
        )
        needs_fill = params.angle is not None or h != w
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if needs_fill:
        out = _blend_fill(out, grid, fill)
    return out


def _crop_flip_matrix(params: ViewParams, b: int, h: int, w: int, device) -> torch.Tensor:
    """(B, 2, 3) maps from output to pre-crop normalised coordinates."""
    if params.box is None:
        scale_x = torch.ones(b, device=device)
        scale_y = scale_x
        centre_x = torch.zeros(b, device=device)
        centre_y = centre_x
    else:
        top, left, bh, bw = params.box.to(torch.float32).unbind(1)
        scale_x, scale_y = bw / w, bh / h
        centre_x, centre_y = (2 * left + bw) / w - 1, (2 * top + bh) / h - 1
    sign_x = 1.0 - 2.0 * params.hflip.to(torch.float32)
    sign_y = 1.0 - 2.0 * params.vflip.to(torch.float32)
    zero = torch.zeros(b, device=device)
    return torch.stack(
        [
            torch.stack([scale_x * sign_x, zero, centre_x], dim=1),
            torch.stack([zero, scale_y * sign_y, centre_y], dim=1),
        ],
        dim=1,
    )


def _box_limits(box: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised coordinates of the first and last pixel centres in each box, (B, 1, 1, 2)."""
    top, left, bh, bw = box.to(torch.float32).unbind(1)
    lo = torch.stack([(2 * left + 1) / w - 1, (2 * top + 1) / h - 1], dim=1)
    hi = torch.stack([(2 * (left + bw) - 1) / w - 1, (2 * (top + bh) - 1) / h - 1], dim=1)
    return lo.view(-1, 1, 1, 2), hi.view(-1, 1, 1, 2)


def _cos_sin(params: ViewParams, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine of the rotation that maps output to source coordinates.

    torchvision rotates counter-clockwise on screen (y pointing down); the source
    of an output point (x, y) about the centre is (cos x - sin y, sin x + cos y).
    """
    cos_table = torch.tensor([1.0, 0.0, -1.0, 0.0], device=device)
    sin_table = torch.tensor([0.0, 1.0, 0.0, -1.0], device=device)
    if params.quarter is not None:
        k = params.quarter.remainder(4)
        return cos_table[k], sin_table[k]
    angle = params.angle.to(torch.float32)
    # Exact values at multiples of 90 degrees keep quarter turns free of interpolation.
    k = torch.round(angle / 90.0)
    exact = angle == k * 90.0
    k = k.to(torch.long).remainder(4)
    rad = angle * (math.pi / 180.0)
    cos = torch.where(exact, cos_table[k], torch.cos(rad))
    sin = torch.where(exact, sin_table[k], torch.sin(rad))
    return cos, sin


def _blend_fill(out: torch.Tensor, grid: torch.Tensor, fill) -> torch.Tensor:
    """Blend the fill colour where the grid leaves the image.

    The weight of the image is the bilinear interpolation of an all-ones image
    padded with zeros: 1 inside the outermost pixel centres, falling linearly
    to 0 one pixel outside. Computed from the grid, so no extra channel is resampled.
    """
    _, c, h, w = out.shape
    gx, gy = grid.unbind(-1)
    inside = (((1 - gx.abs()) * w + 1) / 2).clamp(0, 1) * (((1 - gy.abs()) * h + 1) / 2).clamp(0, 1)
    inside = inside.unsqueeze(1)
    colour = torch.tensor(fill if fill is not None else (0.0,), dtype=out.dtype, device=out.device)
    colour = colour.view(1, -1, 1, 1).expand(1, c, 1, 1)
    return torch.lerp(colour, out, inside)


@lru_cache(maxsize=16)
def _dihedral_table(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(16, H*W) source index of each output pixel for quarter * 4 + hflip * 2 + vflip."""
    base = torch.arange(h * w, device=device).view(h, w)
    rows = []
    for quarter in range(4):
        # torch.rot90 from the column axis towards the row axis turns
        # counter-clockwise on screen, as torchvision's rotate does.
        turned = torch.rot90(base, quarter, dims=(0, 1))
        for hflip in (False, True):
            for vflip in (False, True):
                t = turned.flip(1) if hflip else turned
                t = t.flip(0) if vflip else t
                rows.append(t.reshape(-1))
    return torch.stack(rows)


def _dihedral(x: torch.Tensor, quarter, hflip: torch.Tensor, vflip: torch.Tensor) -> torch.Tensor:
    """Flips and quarter turns as one exact gather (square images, or no turns)."""
    b, c, h, w = x.shape
    code = hflip.to(torch.long) * 2 + vflip.to(torch.long)
    if quarter is not None:
        code = code + quarter.remainder(4) * 4
    index = _dihedral_table(h, w, x.device)[code]  # (B, H*W)
    out = x.reshape(b, c, h * w).gather(2, index.unsqueeze(1).expand(b, c, h * w))
    return out.view(b, c, h, w)
