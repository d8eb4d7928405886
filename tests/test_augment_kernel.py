"""The compiled CPU engine against the torch engine and torchvision.

The torch engine is tested against torchvision in test_augment_geometry.py and
test_augment_colour.py; here the kernel must give the same views for the same
random parameters, for every preset, switch, channel count, dtype and shape.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from medcne.augment import Augmenter, ViewParams, render
from medcne.augment.kernel import render_cpu
from medcne.errors import MedcneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ATOL = 2e-6
HUE_ATOL = 2e-5  # two HSV round trips in float32 after a bilinear rotation (1.15e-5 seen on one pixel)
TV_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
FILL = (0.8, 0.7, 0.9)


def batch(n: int, c: int, h: int, w: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    return x if dtype == torch.uint8 else x.to(dtype) / 255


def both_engines(x, aug: Augmenter, seed: int = 1):
    params = aug.sample(x, torch.Generator().manual_seed(seed))
    return render(x, params, aug.config.fill, engine="kernel"), render(x, params, aug.config.fill, engine="torch")


@pytest.mark.parametrize("preset", ["simclr", "rot90", "rotate"])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("h, w", [(28, 28), (13, 17), (40, 40)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_kernel_matches_torch_engine(preset, c, h, w, dtype):
    x = batch(24, c, h, w, dtype)
    ours, ref = both_engines(x, Augmenter(preset, fill=FILL[:c]))
    assert ours.dtype == torch.float32 and ours.shape == x.shape
    torch.testing.assert_close(ours, ref, atol=HUE_ATOL, rtol=0)
    assert ours.min() >= 0 and ours.max() <= 1


@pytest.mark.parametrize("preset", ["simclr", "rot90", "rotate"])
@pytest.mark.parametrize("switch", ["crop", "jitter", "grayscale"])
def test_kernel_matches_torch_engine_in_ablations(preset, switch):
    x = batch(24, 3, 20, 20, torch.uint8)
    ours, ref = both_engines(x, Augmenter(preset, fill=FILL, **{switch: False}))
    torch.testing.assert_close(ours, ref, atol=HUE_ATOL, rtol=0)


def test_kernel_matches_torch_engine_with_strong_overrides():
    x = batch(64, 3, 16, 16, torch.uint8)
    aug = Augmenter("rotate", fill=FILL, brightness=0.9, contrast=0.9, saturation=0.9, hue=0.5,
                    jitter_p=1.0, grayscale_p=0.5, scale=(0.05, 1.0))
    ours, ref = both_engines(x, aug)
    torch.testing.assert_close(ours, ref, atol=HUE_ATOL, rtol=0)


def colour_only(n: int, factors, order, gray=False) -> ViewParams:
    off = torch.zeros(n, dtype=torch.bool)
    return ViewParams(
        hflip=off, vflip=off, jitter=torch.ones(n, dtype=torch.bool),
        factors=torch.tensor([factors] * n, dtype=torch.float32), order=torch.tensor([order] * n),
        gray=torch.full((n,), gray),
    )


@pytest.mark.parametrize("op, factor", [(0, 0.6), (0, 1.4), (1, 0.6), (1, 1.4), (2, 0.6), (2, 1.4),
                                        (3, -0.1), (3, 0.05), (3, 0.5)])
def test_kernel_colour_steps_match_torchvision(op, factor):
    x = torch.rand((3, 3, 10, 10), generator=torch.Generator().manual_seed(op))
    factors = [1.0, 1.0, 1.0, 0.0]
    factors[op] = factor
    ours = render(x, colour_only(3, factors, [0, 1, 2, 3]), engine="kernel")
    for i in range(3):
        torch.testing.assert_close(ours[i], TV_OPS[op](x[i], factor), atol=HUE_ATOL, rtol=0)


def test_kernel_every_order_then_grayscale_matches_torchvision():
    x = torch.rand((1, 3, 9, 9), generator=torch.Generator().manual_seed(3))
    factors = [1.3, 0.7, 1.2, -0.08]
    for order in itertools.permutations(range(4)):
        ours = render(x, colour_only(1, factors, list(order), gray=True), engine="kernel")
        ref = x[0]
        for op in order:
            ref = TV_OPS[op](ref, factors[op])
        ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        torch.testing.assert_close(ours[0], ref, atol=HUE_ATOL, rtol=0)


def test_kernel_quarter_turns_are_exact_permutations_of_uint8():
    x = batch(16, 3, 12, 12, torch.uint8)
    aug = Augmenter("rot90", crop=False, jitter=False, grayscale=False)
    p = aug.sample(x, torch.Generator().manual_seed(0))
    ours = render(x, p, engine="kernel")
    for i in range(16):
        ref = torch.rot90(x[i], int(p.quarter[i]), dims=(-2, -1))
        ref = ref.flip(-1) if p.hflip[i] else ref
        ref = ref.flip(-2) if p.vflip[i] else ref
        assert torch.equal(ours[i], ref.float() / 255)


def test_threads_do_not_change_the_views():
    x = batch(37, 3, 20, 20, torch.uint8)
    aug = Augmenter("rotate", fill=FILL)
    p = aug.sample(x, torch.Generator().manual_seed(4))
    one = render_cpu(x, p, FILL, threads=1)
    assert torch.equal(render_cpu(x, p, FILL, threads=3), one)
    assert torch.equal(render_cpu(x, p, FILL, threads=64), one)


def test_out_buffer_is_filled_and_returned():
    x = batch(8, 3, 12, 12, torch.uint8)
    out = torch.full(x.shape, -1.0)
    for engine in ("kernel", "torch"):
        aug = Augmenter("rotate", fill=FILL, engine=engine)
        fresh = aug(x, torch.Generator().manual_seed(2))
        got = aug(x, torch.Generator().manual_seed(2), out=out)
        assert got is out
        assert torch.equal(out, fresh)


@pytest.mark.parametrize("out", [torch.empty(8, 3, 12, 11), torch.empty(8, 3, 12, 12, dtype=torch.float64),
                                 torch.empty(8, 12, 12, 3).permute(0, 3, 1, 2), "buffer"])
def test_bad_out_is_refused(out):
    with pytest.raises(MedcneError, match="`out` must be a contiguous float32 tensor"):
        Augmenter()(batch(8, 3, 12, 12, torch.uint8), torch.Generator(), out=out)


def test_engine_is_checked():
    with pytest.raises(MedcneError, match="`engine` must be one of auto, kernel, torch"):
        Augmenter(engine="numba")


def test_auto_engine_falls_back_to_torch_without_numba(augment_engine):
    x = batch(8, 3, 12, 12, torch.uint8)
    aug = Augmenter("simclr")
    params = aug.sample(x, torch.Generator().manual_seed(0))
    # Both paths of "auto" (kernel present / monkeypatched away) agree with the torch engine.
    torch.testing.assert_close(render(x, params), render(x, params, engine="torch"), atol=HUE_ATOL, rtol=0)
    assert repr(Augmenter(engine="torch")).endswith("engine='torch')")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("preset", ["simclr", "rot90", "rotate"])
def test_cuda_views_match_the_cpu_kernel(preset):
    x = batch(64, 3, 28, 28, torch.uint8)
    aug = Augmenter(preset, fill=FILL)
    params = aug.sample(x, torch.Generator().manual_seed(5))
    on_gpu = type(params)(**{k: None if v is None else v.cuda() for k, v in vars(params).items()})
    gpu = render(x.cuda(), on_gpu, FILL)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), render(x, params, FILL, engine="kernel"), atol=HUE_ATOL, rtol=0)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert aug(x.cuda(), g).shape == x.shape
