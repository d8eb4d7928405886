"""Crop, flips and rotation with fixed parameters against torchvision's functional ops."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from medcne.augment import ViewParams, render

BILINEAR = InterpolationMode.BILINEAR
# Every test here runs with both engines (the compiled CPU kernel and torch ops).
pytestmark = pytest.mark.usefixtures("augment_engine")
ATOL = 1e-5  # float32 rounding between two bilinear implementations


def images(n: int = 1, c: int = 3, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed))


def params(n: int = 1, hflip=False, vflip=False, **kw) -> ViewParams:
    return ViewParams(
        hflip=torch.full((n,), hflip), vflip=torch.full((n,), vflip), **kw
    )


@pytest.mark.parametrize(
    "box, h, w",
    [((0, 0, 12, 12), 12, 12), ((2, 3, 7, 5), 12, 12), ((5, 0, 7, 12), 12, 12),
     ((1, 4, 9, 8), 10, 14), ((0, 0, 1, 1), 12, 12)],
)
def test_crop_matches_resized_crop(box, h, w):
    x = images(h=h, w=w)
    ours = render(x, params(box=torch.tensor([box])))
    # At most 1x down- or upsampling here, where antialias changes nothing.
    ref = TF.resized_crop(x, *box, [h, w], interpolation=BILINEAR, antialias=False)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_crop_then_flips_match_torchvision():
    x = images(n=1, h=10, w=12)
    box = (1, 2, 8, 7)
    crop = TF.resized_crop(x, *box, [10, 12], interpolation=BILINEAR, antialias=False)
    for hflip in (False, True):
        for vflip in (False, True):
            ours = render(x, params(box=torch.tensor([box]), hflip=hflip, vflip=vflip))
            ref = TF.horizontal_flip(crop) if hflip else crop
            ref = TF.vertical_flip(ref) if vflip else ref
            torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_flips_alone_are_exact():
    x = images(n=4)
    p = ViewParams(hflip=torch.tensor([False, True, False, True]),
                   vflip=torch.tensor([False, False, True, True]))
    ours = render(x, p)
    assert torch.equal(ours[0], x[0])
    assert torch.equal(ours[1], x[1].flip(-1))
    assert torch.equal(ours[2], x[2].flip(-2))
    assert torch.equal(ours[3], x[3].flip(-1).flip(-2))


def torchvision_inside(angle: float, h: int, w: int) -> torch.Tensor:
    """torchvision's own weight of the image (1 inside, 0 in uncovered corners)."""
    ones = torch.ones((1, 1, h, w))
    return TF.rotate(ones, angle, interpolation=BILINEAR, fill=[0.0])


@pytest.mark.parametrize("angle", [17.0, 45.0, 123.4, 301.0])
@pytest.mark.parametrize("h, w", [(12, 12), (10, 14)])
def test_rotation_matches_torchvision_rotate(angle, h, w):
    x = images(h=h, w=w)
    fill = (0.2, 0.5, 0.9)
    ours = render(x, params(angle=torch.tensor([angle])), fill)
    ref = TF.rotate(x, angle, interpolation=BILINEAR, fill=list(fill))
    inside = torchvision_inside(angle, h, w).expand_as(x)
    full, empty = inside == 1, inside == 0
    assert full.sum() > 0.5 * x.numel() and empty.sum() > 0
    # Wholly inside or wholly uncovered: the same up to rounding.
    torch.testing.assert_close(ours[full], ref[full], atol=ATOL, rtol=0)
    torch.testing.assert_close(ours[empty], ref[empty], atol=ATOL, rtol=0)
    # In the one-pixel band at the image edge torchvision weights the image twice
    # (m^2 v + (1 - m) fill); we blend once (m v + (1 - m) fill), so the two
    # differ by m (1 - m) v <= 0.25 there.
    assert (ours - ref).abs().max() <= 0.25
    fill_t = torch.tensor(fill).view(1, 3, 1, 1).expand_as(x)
    band = ~(full | empty)
    lo = torch.minimum(fill_t, torch.zeros_like(x))[band]
    assert (ours[band] >= lo - ATOL).all() and (ours[band] <= 1 + ATOL).all()


def test_rotate_corners_equal_fill():
    x = images(n=3, h=16, w=16)
    fill = (0.3, 0.6, 0.1)
    ours = render(x, params(n=3, angle=torch.tensor([45.0, 135.0, 200.0])), fill)
    for corner in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        got = ours[:, :, corner[0], corner[1]]
        torch.testing.assert_close(got, torch.tensor([fill] * 3), atol=1e-6, rtol=0)
    # No fill given: black corners.
    black = render(x, params(n=3, angle=torch.tensor([45.0, 135.0, 200.0])))
    assert black[:, :, 0, 0].abs().max() < 1e-6


def test_one_fill_value_serves_all_channels():
    x = images(n=1, h=16, w=16)
    ours = render(x, params(angle=torch.tensor([45.0])), (0.7,))
    torch.testing.assert_close(ours[0, :, 0, 0], torch.full((3,), 0.7), atol=1e-6, rtol=0)


@pytest.mark.parametrize("quarter", [0, 1, 2, 3])
def test_quarter_turns_without_crop_are_exact_permutations(quarter):
    x = torch.randint(0, 256, (2, 3, 9, 9), dtype=torch.uint8)
    for hflip in (False, True):
        for vflip in (False, True):
            p = params(n=2, hflip=hflip, vflip=vflip, quarter=torch.full((2,), quarter))
            ours = render(x, p)
            ref = TF.rotate(x.float() / 255, 90.0 * quarter)  # nearest: exact at 90 degrees
            ref = ref.flip(-1) if hflip else ref
            ref = ref.flip(-2) if vflip else ref
            assert torch.equal(ours, ref)
            # A permutation: the same multiset of pixel values in each channel.
            assert torch.equal(ours.flatten(2).sort().values, (x.float() / 255).flatten(2).sort().values)


@pytest.mark.parametrize("angle", [90.0, 180.0, 270.0, -90.0, 450.0])
def test_angles_at_quarter_turns_are_exact(angle):
    # Exact cosines at quarter turns: no blur between neighbours (which on noise
    # would differ by ~0.3), only float rounding of the grid.
    x = images(n=1, h=11, w=11)
    ours = render(x, params(angle=torch.tensor([angle])), (0.5, 0.5, 0.5))
    ref = torch.rot90(x, round(angle / 90) % 4, dims=(-2, -1))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("quarter", [1, 2, 3])
def test_quarter_turn_with_crop_is_crop_of_rotated_image(quarter):
    x = images(n=1, h=12, w=12)
    box = (2, 1, 8, 10)
    ours = render(x, params(box=torch.tensor([box]), quarter=torch.tensor([quarter]), hflip=True))
    turned = torch.rot90(x, quarter, dims=(-2, -1))
    ref = TF.horizontal_flip(
        TF.resized_crop(turned, *box, [12, 12], interpolation=BILINEAR, antialias=False)
    )
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_rotation_then_crop_matches_torchvision_chain_on_smooth_image():
    # One resampling instead of two: equal where bilinear is exact (linear ramps),
    # away from the uncovered corners.
    h = w = 24
    yy, xx = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
    x = torch.stack([0.2 + 0.5 * xx, 0.1 + 0.6 * yy, 0.5 + 0.2 * xx - 0.2 * yy])[None]
    angle, box = 20.0, (6, 5, 12, 14)
    ours = render(x, params(box=torch.tensor([box]), angle=torch.tensor([angle]), vflip=True), (0, 0, 0))
    ref = TF.rotate(x, angle, interpolation=BILINEAR, fill=[0.0, 0.0, 0.0])
    ref = TF.vertical_flip(TF.resized_crop(ref, *box, [h, w], interpolation=BILINEAR, antialias=False))
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_one_channel_images():
    x = images(n=2, c=1, h=10, w=10)
    box = torch.tensor([[1, 1, 6, 7], [0, 2, 10, 8]])
    ours = render(x, ViewParams(hflip=torch.tensor([True, False]), vflip=torch.tensor([False, True]),
                                box=box, angle=torch.tensor([33.0, 0.0])), (0.4,))
    assert ours.shape == x.shape
    ref = TF.rotate(x[:1], 33.0, interpolation=BILINEAR, fill=[0.4])
    ref = TF.horizontal_flip(TF.resized_crop(ref, 1, 1, 6, 7, [10, 10], antialias=False))
    assert (ours[:1] - ref).abs().max() < 0.3  # two resamplings vs one on noise
    ref1 = TF.vertical_flip(TF.resized_crop(x[1:], 0, 2, 10, 8, [10, 10], antialias=False))
    torch.testing.assert_close(ours[1:], ref1, atol=ATOL, rtol=0)
