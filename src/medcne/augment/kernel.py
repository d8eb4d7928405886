"""The CPU engine: each view made in one fused pass per step, image by image.

The torch engine (:mod:`.geometry`, :mod:`.colour`) is a sequence of batched
tensor operations: ideal on a GPU, but on a CPU each of its ~25 elementwise
passes streams the whole chunk through memory. This engine, compiled with
numba, walks one image at a time while it sits in cache: convert to float
(with the rotation's one-pixel fill frame), resample bilinearly into the output,
then the four jitter steps in the image's own order and the grayscale, each one
loop over the pixels. Threads take disjoint runs of images.

It computes what the torch engine computes, with the same formulas (the torch
engine is the one tested against torchvision); the two agree to float32
rounding (tests/test_augment_kernel.py). Randomness is drawn before, by
:func:`~.sampling.sample_params`, so both engines give the same views for the
same seed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# No "arcp": x / 255 must be the correctly rounded quotient the torch engine
# computes; no "contract": fused multiply-adds would round the sampling
# positions differently from torch's, and quarter turns would no longer land
# exactly on pixel centres. "reassoc" lets the gray-level sums vectorise.
_FAST = {"nnan", "ninf", "nsz", "reassoc"}

# Geometry modes.
COPY, RESAMPLE = 0, 1
# Jitter steps, as in .colour.
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = 0, 1, 2, 3
_R, _G, _B = np.float32(0.2989), np.float32(0.587), np.float32(0.114)


@njit(cache=True, fastmath=_FAST, nogil=True)
def render_views(x, scale, out, mode, framed, fill, coef, cx, cy, jitter, factors, order, gray, start, stop):
    """Write one view of each image of ``x`` into ``out``.

    Parameters
    ----------
    x : (B, C, H, W) uint8 or float32
        Source images.
    scale : float32
        What ``x`` is divided by (255 for uint8, 1 for float).
    out : (B, C, H, W) float32, C-contiguous
        Receives the views.
    mode : int
        COPY (the geometry is already done: just convert) or RESAMPLE.
    framed : bool
        Sample from the image inside a one-pixel frame of colour ``fill``.
    fill : (C,) float32
    coef : (B, 4) float32
        Per image ``(a00, a01, a10, a11)``: the normalised source position of
        an output pixel is ``(a00 cx[j] + a01 cy[i], a10 cx[j] + a11 cy[i])``.
    cx, cy : (B, W) and (B, H) float32
        Pre-rotation normalised coordinates of output columns and rows.
    jitter : (B,) bool
    factors : (B, 4) float32
        Brightness, contrast, saturation factors and hue shift.
    order : (B, 4) int64
        Jitter step order per image.
    gray : (B,) bool
    start, stop : int
        The images to render (threads take disjoint runs; the GIL is released).
    """
    b_total, channels, h, w = x.shape
    hs = h + 2 if framed else h
    ws = w + 2 if framed else w
    src = np.empty((channels, hs, ws), np.float32)
    index, step_x, step_y = np.empty(w, np.uint32), np.empty(w, np.uint32), np.empty(w, np.uint32)
    weight_x, weight_y = np.empty(w, np.float32), np.empty(w, np.float32)
    for b in range(start, stop):
        img = out[b]
        if mode == COPY:
            for c in range(channels):
                for i in range(h):
                    for j in range(w):
                        img[c, i, j] = np.float32(x[b, c, i, j]) / scale
        else:
            _to_source(x[b], src, framed, fill, scale)
            _resample(src, img, coef[b], cx[b], cy[b], index, step_x, step_y, weight_x, weight_y)
        flat = img.reshape((channels, h * w))
        if jitter[b]:
            for step in range(4):
                op = order[b, step]
                f = factors[b, op]
                if op == _BRIGHTNESS:
                    _scale(flat, f)
                elif op == _CONTRAST:
                    _contrast(flat, f)
                elif channels == 3 and op == _SATURATION:
                    _saturation(flat, f)
                elif channels == 3 and op == _HUE:
                    _hue(flat, f)
        if gray[b] and channels == 3:
            _grayscale(flat)


@njit(cache=True, fastmath=_FAST, inline="always")
def _to_source(image, src, framed, fill, scale):
    """The image as float in [0, 1], inside a one-pixel frame of ``fill`` when framed."""
    channels, h, w = image.shape
    off = 1 if framed else 0
    for c in range(channels):
        if framed:
            for j in range(w + 2):
                src[c, 0, j] = fill[c]
                src[c, h + 1, j] = fill[c]
        for i in range(h):
            if framed:
                src[c, i + 1, 0] = fill[c]
                src[c, i + 1, w + 1] = fill[c]
            for j in range(w):
                src[c, i + off, j + off] = np.float32(image[c, i, j]) / scale


@njit(cache=True, fastmath=_FAST, inline="always")
def _resample(src, img, coef, cx, cy, index, step_x, step_y, weight_x, weight_y):
    """Bilinear sampling as ``F.grid_sample(..., padding_mode="border", align_corners=False)``.

    Row by row: first the source position of each output pixel of the row
    (grid_sample's unnormalise ``((g + 1) * size - 1) / 2`` and border clip)
    into the work arrays ``index`` (first pixel read), ``step_x`` / ``step_y``
    (offset to the second pixel, 0 at the last column / row) and the weights of
    the second pixels; then the reads, channel by channel. Unsigned indices
    spare numba's negative-index handling, which costs more than the reads.
    """
    channels, hs, ws = src.shape
    _, h, w = img.shape
    a00, a01, a10, a11 = coef[0], coef[1], coef[2], coef[3]
    size_x, size_y = np.float32(ws), np.float32(hs)
    last_x, last_y = np.float32(ws - 1), np.float32(hs - 1)
    one, zero, half = np.float32(1.0), np.float32(0.0), np.float32(0.5)
    s = src.reshape(channels * hs * ws)
    out = img.reshape(channels * h * w)
    plane, out_plane = hs * ws, h * w
    for i in range(h):
        bx, by = a01 * cy[i], a11 * cy[i]
        for j in range(w):
            px = min(max(((a00 * cx[j] + bx + one) * size_x - one) * half, zero), last_x)
            py = min(max(((a10 * cx[j] + by + one) * size_y - one) * half, zero), last_y)
            x0, y0 = np.int32(px), np.int32(py)  # floor: both are >= 0
            weight_x[j], weight_y[j] = px - np.float32(x0), py - np.float32(y0)
            step_x[j] = np.uint32(1) if x0 < ws - 1 else np.uint32(0)
            step_y[j] = np.uint32(ws) if y0 < hs - 1 else np.uint32(0)
            index[j] = np.uint32(y0 * np.int32(ws) + x0)
        for c in range(channels):
            sc = s[c * plane:(c + 1) * plane]
            oc = out[c * out_plane + i * w:c * out_plane + (i + 1) * w]
            for j in range(w):
                k, dx, dy, fx, fy = index[j], step_x[j], step_y[j], weight_x[j], weight_y[j]
                top = (one - fx) * sc[k] + fx * sc[k + dx]
                bottom = (one - fx) * sc[k + dy] + fx * sc[k + dy + dx]
                oc[j] = (one - fy) * top + fy * bottom


@njit(cache=True, fastmath=_FAST, inline="always")
def _clip(v):
    return min(max(v, np.float32(0.0)), np.float32(1.0))


@njit(cache=True, fastmath=_FAST, inline="always")
def _scale(flat, f):
    """Brightness: blend with black."""
    channels, n = flat.shape
    for c in range(channels):
        for p in range(n):
            flat[c, p] = _clip(f * flat[c, p])


@njit(cache=True, fastmath=_FAST, inline="always")
def _contrast(flat, f):
    """Contrast: blend with the image's mean gray level."""
    channels, n = flat.shape
    total = 0.0
    if channels == 3:
        for p in range(n):
            total += _R * flat[0, p] + _G * flat[1, p] + _B * flat[2, p]
    else:
        for p in range(n):
            total += flat[0, p]
    target = (np.float32(1.0) - f) * np.float32(total / n)
    for c in range(channels):
        for p in range(n):
            flat[c, p] = _clip(target + f * flat[c, p])


@njit(cache=True, fastmath=_FAST, inline="always")
def _saturation(flat, f):
    """Saturation: blend with the image's gray image."""
    rest = np.float32(1.0) - f
    for p in range(flat.shape[1]):
        r, g, b = flat[0, p], flat[1, p], flat[2, p]
        target = rest * (_R * r + _G * g + _B * b)
        flat[0, p] = _clip(target + f * r)
        flat[1, p] = _clip(target + f * g)
        flat[2, p] = _clip(target + f * b)


@njit(cache=True, fastmath=_FAST, inline="always")
def _sector(hue, n):
    """How far channel ``n`` (5 red, 3 green, 1 blue) drops below the value, in [0, 1]."""
    k = hue + n
    k = k - np.float32(6.0) if k >= np.float32(6.0) else k
    return min(max(min(k, np.float32(4.0) - k), np.float32(0.0)), np.float32(1.0))


@njit(cache=True, fastmath=_FAST, inline="always")
def _hue(flat, shift):
    """Rotate the hue by ``shift`` turns (the formulas of .colour.shift_hue)."""
    six = np.float32(6.0)
    turn = six * shift
    for p in range(flat.shape[1]):
        r, g, b = flat[0, p], flat[1, p], flat[2, p]
        value = max(max(r, g), b)
        chroma = value - min(min(r, g), b)
        if value == r:
            hue = g - b
        elif value == g:
            hue = (b - r) + np.float32(2.0) * chroma
        else:
            hue = (r - g) + np.float32(4.0) * chroma
        hue = hue / max(chroma, np.float32(1e-12)) + turn
        hue = hue - six * np.float32(np.floor(hue / six))
        hue = np.float32(0.0) if hue >= six else hue
        flat[0, p] = value - chroma * _sector(hue, np.float32(5.0))
        flat[1, p] = value - chroma * _sector(hue, np.float32(3.0))
        flat[2, p] = value - chroma * _sector(hue, np.float32(1.0))


@njit(cache=True, fastmath=_FAST, inline="always")
def _grayscale(flat):
    for p in range(flat.shape[1]):
        g = _R * flat[0, p] + _G * flat[1, p] + _B * flat[2, p]
        flat[0, p] = g
        flat[1, p] = g
        flat[2, p] = g


def render_cpu(x, params, fill, out=None, threads: int | None = None):
    """Views of a CPU batch with this engine: the glue between ViewParams and the kernel.

    ``x`` is a (B, C, H, W) uint8 or float CPU tensor; the float32 views go to
    ``out`` (a new tensor when None), which is returned. ``threads`` defaults
    to torch's CPU thread count (``torch.set_num_threads``).
    """
    import torch

    from ..parallel import split_run
    from .geometry import axis_coordinates, dihedral, frame_scale, plan, rotation_coefficients

    b, c, h, w = x.shape
    if out is None:
        out = torch.empty((b, c, h, w), dtype=torch.float32)
    if b == 0:
        return out
    exact, framed = plan(params, h, w)
    mode = RESAMPLE
    if exact:
        # Flips and quarter turns move pixels exactly: permute, then only convert.
        x, mode = dihedral(x, params.quarter, params.hflip, params.vflip), COPY
    if x.dtype != torch.uint8:
        x = x.to(torch.float32)
    scale = frame_scale(framed, h, w)
    if params.angle is not None or params.quarter is not None:
        coef = torch.stack(rotation_coefficients(params, h, w, scale, x.device), dim=1)
    else:
        coef = torch.tensor([[scale[0], 0.0, 0.0, scale[1]]]).expand(b, 4)
    fill_colour = np.zeros(c, np.float32)
    if fill is not None:
        fill_colour[:] = fill
    off = torch.zeros(b, dtype=torch.bool)

    def arr(t, default, dtype):
        return np.ascontiguousarray((default if t is None else t).numpy(), dtype=dtype)

    args = (
        x.detach().contiguous().numpy(), np.float32(255.0 if x.dtype == torch.uint8 else 1.0), out.numpy(),
        mode, framed, fill_colour, arr(coef, None, np.float32),
        arr(axis_coordinates(params, 1, b, w, x.device), None, np.float32),
        arr(axis_coordinates(params, 0, b, h, x.device), None, np.float32),
        arr(params.jitter, off, np.bool_), arr(params.factors, torch.zeros(b, 4), np.float32),
        arr(params.order, torch.zeros((b, 4), dtype=torch.long), np.int64), arr(params.gray, off, np.bool_),
    )
    threads = torch.get_num_threads() if threads is None else threads
    split_run(lambda start, stop: render_views(*args, start, stop), b, threads)
    return out
