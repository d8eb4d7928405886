"""Crop, flips and rotation of a batch in one resampling.

The view of each image is, in forward order: rotate the whole image about its
centre (uncovered corners take the fill colour), take the crop box and resize it
to the image size, then flip. Sampling goes backwards: for each output pixel,
undo the flips and the crop (an axis-aligned affine map per image), clamp to the
crop box (as resizing a crop clamps at its edges), undo the rotation (a 2 x 2
matrix per image): one sampling grid, which is what ``F.affine_grid`` would
give for the composed matrix, plus the clamp. Then one bilinear
``F.grid_sample`` reads the whole batch.

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
    x: torch.Tensor, params: ViewParams, fill: tuple[float, ...] | None = None,
    table: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop, flip and rotate each image of a batch as ``params`` say.

    Parameters
    ----------
    x : Tensor (B, C, H, W)
        uint8, or float in [0, 1].
    params : ViewParams
        ``box``, ``hflip``, ``vflip`` and ``angle`` or ``quarter`` per image.
    fill : tuple of C (or 1) floats, optional
        Colour of the area a rotation uncovers; black when None.
    table : LongTensor (16, H*W), optional
        :func:`dihedral_table` on ``x``'s device, for the exact path (made here
        when not given).

    Returns
    -------
    FloatTensor (B, C, H, W), float32 in [0, 1]
    """
    b, c, h, w = x.shape
    if b == 0:
        return to_float(x)
    exact, framed = plan(params, h, w)
    if exact:
        # Permute before converting: moving uint8 is cheaper than moving floats.
        return to_float(dihedral(x, params.quarter, params.hflip, params.vflip, table))
    source = to_float(x, frame=(fill if fill is not None else (0.0,)) if framed else None)
    grid = _sampling_grid(params, b, h, w, x.device, scale=frame_scale(framed, h, w))
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)


def needs_fill(rotation: str | None, h: int, w: int) -> bool:
    """Whether views can show area outside the image, which then takes the fill colour.

    The one decision, for training, previews and both engines: any free
    rotation (``rotation='angle'``) can uncover corners, and so can a quarter
    turn (``'quarter'``) of a non-square image; flips and crops never do.
    ``rotation`` is :attr:`AugmentConfig.rotation`.
    """
    return rotation == "angle" or (rotation == "quarter" and h != w)


def plan(params: ViewParams, h: int, w: int) -> tuple[bool, bool]:
    """How a batch's views are made: ``(exact, framed)``.

    ``exact``: flips and quarter turns only (no crop; quarter turns only on
    square images), a pure permutation of pixels. ``framed``: the resampling
    reads the image inside a one-pixel frame of the fill colour (any rotation
    that can uncover corners): bilinear sampling then blends image and fill
    over one pixel at the edge (as the bilinear weight of an all-ones image
    would) and border padding gives pure fill beyond, with no mask to compute
    or blend afterwards.
    """
    rotation = "angle" if params.angle is not None else "quarter" if params.quarter is not None else None
    exact = params.box is None and params.angle is None and (params.quarter is None or h == w)
    return exact, needs_fill(rotation, h, w)


def frame_scale(framed: bool, h: int, w: int) -> tuple[float, float]:
    """Factors on normalised (x, y) that express positions in a source with a one-pixel frame."""
    return (w / (w + 2), h / (h + 2)) if framed else (1.0, 1.0)


def rotation_coefficients(
    params: ViewParams, h: int, w: int, scale: tuple[float, float], device
) -> tuple[torch.Tensor, ...]:
    """Per image ``(a00, a01, a10, a11)``, each (B,): the normalised source position of
    an output pixel is ``(a00 cx + a01 cy, a10 cx + a11 cy)`` for its pre-rotation
    coordinates ``(cx, cy)`` (see :func:`axis_coordinates`).

    The rotation is in pixel units about the centre, in normalised coordinates,
    where the two axes have different scales when H != W.
    """
    sx, sy = scale
    cos, sin = _cos_sin(params, device)
    return cos * sx, -sin * (sx * h / w), sin * (sy * w / h), cos * sy


def to_float(x: torch.Tensor, frame: tuple[float, ...] | None = None) -> torch.Tensor:
    """``x`` as float32 in [0, 1] (uint8 / 255), with a one-pixel frame of colour ``frame``.

    (B, C, H, W) -> (B, C, H, W), or (B, C, H + 2, W + 2) with a frame; one pass
    over ``x``. Without a frame, a float32 input comes back as is (not a copy).
    """
    b, c, h, w = x.shape
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    if frame is None:
        return torch.div(x, scale).to(torch.float32) if scale != 1.0 else x.to(torch.float32)
    out = F.pad(torch.div(x, scale).to(torch.float32), (1, 1, 1, 1))
    # The frame is filled channel by channel with Python numbers: no tensor from host memory.
    for ch in range(c):
        value = float(frame[ch] if len(frame) > 1 else frame[0])
        for edge in (out[:, ch, :1], out[:, ch, -1:], out[:, ch, :, :1], out[:, ch, :, -1:]):
            edge.fill_(value)
    return out


def _sampling_grid(
    params: ViewParams, b: int, h: int, w: int, device, scale: tuple[float, float] = (1.0, 1.0)
) -> torch.Tensor:
    """(B, H, W, 2) source position of every output pixel, normalised as grid_sample wants.

    ``scale`` multiplies the final (x, y): ``w / (w + 2)`` and ``h / (h + 2)``
    express the positions in a source with a one-pixel frame.

    What ``F.affine_grid`` computes, built per axis: crop and flips are
    axis-aligned, so the pre-rotation x depends on the output column only and y
    on the row only. That makes the clamp to the crop box a (B, W) and (B, H)
    operation, and the grid costs one broadcast add per coordinate instead of a
    (B, H*W, 3) x (3, 2) batched matmul.
    """
    cx = axis_coordinates(params, 1, b, w, device).unsqueeze(1)  # (B, 1, W)
    cy = axis_coordinates(params, 0, b, h, device).unsqueeze(2)  # (B, H, 1)
    sx, sy = scale
    if params.angle is None and params.quarter is None:
        gx, gy = (cx * sx if sx != 1.0 else cx), (cy * sy if sy != 1.0 else cy)
        return torch.stack([gx.expand(b, h, w), gy.expand(b, h, w)], dim=-1)
    a00, a01, a10, a11 = (t.view(b, 1, 1) for t in rotation_coefficients(params, h, w, scale, device))
    return torch.stack([a00 * cx + a01 * cy, a10 * cx + a11 * cy], dim=-1)


def axis_coordinates(params: ViewParams, axis: int, b: int, size: int, device) -> torch.Tensor:
    """(B, size) pre-rotation coordinate along ``axis`` (0 rows, 1 columns) of each output pixel."""
    # Output pixel centres, normalised to (-1, 1) as grid_sample with align_corners=False.
    base = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
    flip = params.hflip if axis == 1 else params.vflip
    sign = (1.0 - 2.0 * flip.to(torch.float32)).unsqueeze(1)
    if params.box is None:
        return sign * base
    start, extent = params.box[:, axis].to(torch.float32), params.box[:, axis + 2].to(torch.float32)
    # The crop maps (-1, 1) onto (start, start + extent) in pixels.
    centre = ((2 * start + extent) / size - 1).unsqueeze(1)
    coord = torch.addcmul(centre, sign * (extent / size).unsqueeze(1), base)
    # Resizing a crop reads nothing outside it: positions up to half an output
    # pixel beyond its edge pixels are clamped onto them (as F.interpolate does).
    lo = ((2 * start + 1) / size - 1).unsqueeze(1)
    hi = ((2 * (start + extent) - 1) / size - 1).unsqueeze(1)
    return torch.clamp(coord, lo, hi)


def _cos_sin(params: ViewParams, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine of the rotation that maps output to source coordinates.

    torchvision rotates counter-clockwise on screen (y pointing down); the source
    of an output point (x, y) about the centre is (cos x - sin y, sin x + cos y).
    """
    if params.quarter is not None:
        return _quarter_cos_sin(params.quarter)
    angle = params.angle.to(torch.float32)
    # Exact values at multiples of 90 degrees keep quarter turns free of interpolation.
    k = torch.round(angle / 90.0)
    exact = angle == k * 90.0
    qcos, qsin = _quarter_cos_sin(k.to(torch.long))
    rad = angle * (math.pi / 180.0)
    return torch.where(exact, qcos, torch.cos(rad)), torch.where(exact, qsin, torch.sin(rad))


def _quarter_cos_sin(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cosine and sine of k quarter turns (1, 0, -1, 0 and 0, 1, 0, -1), by arithmetic."""
    k = k.remainder(4)
    sign = 1.0 - 2.0 * (k // 2).to(torch.float32)
    odd = (k % 2).to(torch.float32)
    return (1.0 - odd) * sign, odd * sign


@lru_cache(maxsize=16)
def dihedral_table(h: int, w: int, device: torch.device) -> torch.Tensor:
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


def dihedral(x: torch.Tensor, quarter, hflip: torch.Tensor, vflip: torch.Tensor,
             table: torch.Tensor | None = None) -> torch.Tensor:
    """Flips and quarter turns as one exact gather (square images, or no turns)."""
    b, c, h, w = x.shape
    code = hflip.to(torch.long) * 2 + vflip.to(torch.long)
    if quarter is not None:
        code = code + quarter.remainder(4) * 4
    table = dihedral_table(h, w, x.device) if table is None else table
    index = table[code]  # (B, H*W)
    out = x.reshape(b, c, h * w).gather(2, index.unsqueeze(1).expand(b, c, h * w))
    return out.view(b, c, h, w)
