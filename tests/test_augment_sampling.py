"""The random parameters follow torchvision's samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import RandomResizedCrop

from medcne.augment import Augmenter
from medcne.augment.sampling import sample_boxes

N = 4000


def ours_boxes(h: int, w: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), seed: int = 0, n: int = N) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return sample_boxes(n, h, w, scale, ratio, g, torch.device("cpu")).numpy()


def torchvision_boxes(h: int, w: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), seed: int = 0, n: int = N) -> np.ndarray:
    image = torch.empty((1, h, w))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return np.array([RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(n)])


def area_and_log_ratio(boxes: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return boxes[:, 2] * boxes[:, 3] / (h * w), np.log(boxes[:, 3] / boxes[:, 2])


@pytest.mark.parametrize("h, w", [(28, 28), (96, 96), (20, 32)])
def test_crop_area_and_ratio_follow_random_resized_crop(h, w):
    ours = ours_boxes(h, w)
    ref = torchvision_boxes(h, w)
    for a, b in zip(area_and_log_ratio(ours, h, w), area_and_log_ratio(ref, h, w), strict=True):
        assert stats.ks_2samp(a, b).pvalue > 0.01
    # Boxes lie inside the image and are placed uniformly.
    top, left, bh, bw = ours.T
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
    assert stats.ks_2samp(left / (w - bw + 1), ref[:, 1] / (w - ref[:, 3] + 1)).pvalue > 0.01


def test_ks_check_can_tell_a_different_scale_apart():
    # The same check would fail for ImageNet's default scale (0.08, 1).
    ours = area_and_log_ratio(ours_boxes(28, 28, scale=(0.08, 1.0)), 28, 28)[0]
    ref = area_and_log_ratio(torchvision_boxes(28, 28), 28, 28)[0]
    assert stats.ks_2samp(ours, ref).pvalue < 1e-6


@pytest.mark.parametrize(
    "h, w, scale, ratio",
    [(10, 10, (1.0, 1.0), (2.0, 3.0)), (10, 30, (1.0, 1.0), (0.5, 1.0)), (30, 10, (1.0, 1.0), (1.0, 2.0))],
)
def test_impossible_boxes_fall_back_to_torchvision_central_crop(h, w, scale, ratio):
    ours = ours_boxes(h, w, scale, ratio, n=200)
    ref = torchvision_boxes(h, w, scale, ratio, n=20)
    assert (ours == ours[0]).all()
    assert tuple(ours[0]) == tuple(ref[0]) and (ref == ref[0]).all()


def test_flip_rotation_and_colour_probabilities():
    x = torch.zeros((N, 3, 4, 4), dtype=torch.uint8)
    p = Augmenter("rotate").sample(x, torch.Generator().manual_seed(0))
    for flags, prob in [(p.hflip, 0.5), (p.vflip, 0.5), (p.jitter, 0.8), (p.gray, 0.2)]:
        k = int(flags.sum())
        assert stats.binomtest(k, N, prob).pvalue > 0.001
    assert stats.kstest(p.angle.numpy() / 360.0, "uniform").pvalue > 0.01
    assert p.angle.min() >= 0 and p.angle.max() < 360
    lo = torch.tensor([0.6, 0.6, 0.6, -0.1])
    assert (p.factors >= lo).all() and (p.factors <= torch.tensor([1.4, 1.4, 1.4, 0.1])).all()
    for j in range(4):
        u = (p.factors[:, j] - lo[j]) / (0.8 if j < 3 else 0.2)
        assert stats.kstest(u.numpy(), "uniform").pvalue > 0.01
    # Each order is a permutation, and all 24 turn up about equally often.
    assert (p.order.sort(dim=1).values == torch.arange(4)).all()
    _, counts = torch.unique(p.order, dim=0, return_counts=True)
    assert len(counts) == 24 and stats.chisquare(counts.numpy()).pvalue > 0.001


def test_presets_draw_the_right_rotation():
    x = torch.zeros((N, 3, 4, 4), dtype=torch.uint8)
    g = torch.Generator().manual_seed(1)
    simclr = Augmenter("simclr").sample(x, g)
    assert simclr.angle is None and simclr.quarter is None and not simclr.vflip.any()
    rot90 = Augmenter("rot90").sample(x, g)
    assert rot90.angle is None
    assert stats.chisquare(torch.bincount(rot90.quarter, minlength=4).numpy()).pvalue > 0.001
    off = Augmenter("simclr", crop=False, jitter=False, grayscale=False).sample(x, g)
    assert off.box is None and off.jitter is None and off.gray is None


def test_overrides_reach_the_sampler():
    x = torch.zeros((N, 3, 4, 4), dtype=torch.uint8)
    g = torch.Generator().manual_seed(2)
    p = Augmenter("simclr", hflip_p=0.0, grayscale_p=1.0, jitter_p=0.0, brightness=0.0).sample(x, g)
    assert not p.hflip.any() and p.gray.all() and not p.jitter.any()
    assert (p.factors[:, 0] == 1.0).all()
