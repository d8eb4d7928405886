"""Colour jitter and grayscale with fixed parameters against torchvision's functional ops."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from medcne.augment import ViewParams, render
from medcne.augment.colour import shift_hue, to_gray

ATOL = 2e-6
HUE_ATOL = 1e-5  # two different HSV round trips in float32

TV_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def jitter(x: torch.Tensor, apply: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Colour jitter alone (no geometry) with per-image flags, factors and order, through the torch engine."""
    flags = torch.zeros_like(apply)
    return render(x, ViewParams(hflip=flags, vflip=flags, jitter=apply, factors=factors, order=order), engine="torch")


def grayscale(x: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Random grayscale alone with per-image flags, through the torch engine."""
    flags = torch.zeros_like(apply)
    return render(x, ViewParams(hflip=flags, vflip=flags, gray=apply), engine="torch")


def images(n: int = 2, c: int = 3, size: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, c, size, size), generator=torch.Generator().manual_seed(seed))


def jitter_one_op(x: torch.Tensor, op: int, factor: float) -> torch.Tensor:
    """Our jitter with only ``op`` changing anything (the others at identity)."""
    n = x.shape[0]
    factors = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(n, 1)
    factors[:, op] = factor
    order = torch.tensor([[0, 1, 2, 3]]).repeat(n, 1)
    return jitter(x, torch.ones(n, dtype=torch.bool), factors, order)


@pytest.mark.parametrize("factor", [0.6, 0.9, 1.3, 1.4])
@pytest.mark.parametrize("op", [0, 1, 2])
def test_blend_ops_match_torchvision(op, factor):
    x = images()
    ref = torch.stack([TV_OPS[op](img, factor) for img in x])
    torch.testing.assert_close(jitter_one_op(x, op, factor), ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("shift", [-0.1, -0.03, 0.0, 0.05, 0.1, 0.5])
def test_hue_matches_torchvision(shift):
    x = images(n=3)
    # Include gray pixels, pure colours and ties between channels.
    x[0, :, 0, :3] = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.3, 0.3, 0.8]]).T
    ref = torch.stack([TF.adjust_hue(img, shift) for img in x])
    torch.testing.assert_close(shift_hue(x, torch.full((3,), shift)), ref, atol=HUE_ATOL, rtol=0)


def test_grayscale_matches_torchvision():
    x = images(n=3)
    apply = torch.tensor([True, False, True])
    ours = grayscale(x, apply)
    torch.testing.assert_close(ours[0], TF.rgb_to_grayscale(x[0], num_output_channels=3), atol=ATOL, rtol=0)
    assert torch.equal(ours[1], x[1])
    torch.testing.assert_close(to_gray(x), TF.rgb_to_grayscale(x), atol=ATOL, rtol=0)


def test_every_order_matches_torchvision_chain():
    # Factors that clamp (brightness 1.4 on bright pixels), so the order matters.
    x = images(n=24, seed=1)
    orders = torch.tensor(list(itertools.permutations(range(4))))
    factors = torch.tensor([[1.4, 0.6, 1.3, 0.08]]).repeat(24, 1)
    ours = jitter(x, torch.ones(24, dtype=torch.bool), factors, orders)
    outs = []
    for img, order in zip(x, orders.tolist(), strict=True):
        for op in order:
            img = TV_OPS[op](img, factors[0, op].item())
        outs.append(img)
    ref = torch.stack(outs)
    torch.testing.assert_close(ours, ref, atol=HUE_ATOL, rtol=0)
    # The order does change the result, so the test above can tell orders apart.
    assert (ref[0] - ref[-1]).abs().max() > 0.05


def test_images_without_jitter_are_unchanged_exactly():
    x = images(n=4)
    factors = torch.tensor([[1.4, 0.6, 1.3, 0.08]]).repeat(4, 1)
    order = torch.tensor([[3, 2, 1, 0]]).repeat(4, 1)
    apply = torch.tensor([True, False, True, False])
    ours = jitter(x, apply, factors, order)
    assert torch.equal(ours[1], x[1]) and torch.equal(ours[3], x[3])
    assert not torch.allclose(ours[0], x[0])


def test_one_channel_skips_saturation_and_hue():
    x = images(n=2, c=1)
    factors = torch.tensor([[1.2, 0.7, 0.5, 0.1], [0.8, 1.3, 1.4, -0.1]])
    order = torch.tensor([[2, 3, 0, 1], [1, 0, 3, 2]])
    ours = jitter(x, torch.ones(2, dtype=torch.bool), factors, order)
    for i in range(2):
        ref = x[i]
        for op in order[i].tolist():
            if op in (0, 1):  # saturation and hue leave gray images unchanged
                ref = TV_OPS[op](ref, factors[i, op].item())
        torch.testing.assert_close(ours[i], ref, atol=ATOL, rtol=0)
    # grayscale on one channel: no-op
    assert torch.equal(grayscale(x, torch.ones(2, dtype=torch.bool)), x)


def test_render_applies_jitter_after_geometry_and_grayscale_last():
    x = images(n=1, size=8)
    p = ViewParams(
        hflip=torch.tensor([True]), vflip=torch.tensor([False]),
        jitter=torch.tensor([True]), factors=torch.tensor([[1.2, 0.8, 1.1, 0.05]]),
        order=torch.tensor([[0, 1, 2, 3]]), gray=torch.tensor([True]),
    )
    ref = TF.horizontal_flip(x[0])
    for op, f in enumerate([1.2, 0.8, 1.1, 0.05]):
        ref = TV_OPS[op](ref, f)
    ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
    torch.testing.assert_close(render(x, p)[0], ref, atol=HUE_ATOL, rtol=0)


def test_hue_output_stays_in_unit_range_without_clamping():
    # Extreme pixels (0, 1, near-gray) and the largest shifts.
    g = torch.Generator().manual_seed(3)
    x = torch.rand((64, 3, 6, 6), generator=g)
    x[:16] = (x[:16] > 0.5).float()
    x[16:32] = x[16:32, :1] + 1e-7 * torch.rand((16, 3, 6, 6), generator=g)
    x = x.clamp(0, 1)
    shift = torch.linspace(-0.5, 0.5, 64)
    out = shift_hue(x, shift)
    assert out.min() >= 0 and out.max() <= 1
    # Value (max channel) is kept by a hue shift.
    torch.testing.assert_close(out.amax(1), x.amax(1), atol=1e-6, rtol=0)
