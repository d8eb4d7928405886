"""The public API: Augmenter, border_colour, PRESETS; errors; determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcne.augment import PRESETS, Augmenter, border_colour
from medcne.errors import MedcneError


def batch(n: int = 8, c: int = 3, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("c", [1, 3])
def test_views_are_float_in_unit_range_with_input_shape(preset, c):
    x = batch(c=c)
    v = Augmenter(preset)(x, gen())
    assert v.shape == x.shape and v.dtype == torch.float32 and v.device == x.device
    assert v.min() >= 0 and v.max() <= 1


@pytest.mark.parametrize("preset", PRESETS)
def test_same_seed_same_views_different_seed_different(preset):
    x = batch()
    aug = Augmenter(preset, fill=(0.5, 0.4, 0.3))
    a, b, c = aug(x, gen(1)), aug(x, gen(1)), aug(x, gen(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Two calls on one generator (the two views of a batch) differ.
    g = gen(1)
    assert not torch.allclose(aug(x, g), aug(x, g))


def test_uint8_and_float_inputs_give_the_same_views():
    x = batch()
    aug = Augmenter("rotate")
    torch.testing.assert_close(aug(x, gen(3)), aug(x.float() / 255, gen(3)), atol=1e-6, rtol=0)
    assert aug(x.double() / 255, gen(3)).dtype == torch.float32


def test_all_switches_off_leaves_only_flips():
    x = batch(n=32)
    v = Augmenter("simclr", crop=False, jitter=False, grayscale=False)(x, gen())
    xf = x.float() / 255
    same = (v == xf).flatten(1).all(1)
    flipped = (v == xf.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all() and same.any() and flipped.any()


def test_rot90_without_crop_or_colour_is_a_pixel_permutation():
    x = batch(n=16, size=9)
    v = Augmenter("rot90", crop=False, jitter=False, grayscale=False)(x, gen())
    xf = x.float() / 255
    assert torch.equal(v.flatten(2).sort().values, xf.flatten(2).sort().values)
    assert not torch.equal(v, xf)


def test_grayscale_only_makes_gray_or_unchanged_images():
    x = batch(n=64)
    v = Augmenter("simclr", crop=False, jitter=False, hflip_p=0.0, grayscale_p=0.5)(x, gen())
    gray = (v[:, 0] == v[:, 1]).flatten(1).all(1) & (v[:, 1] == v[:, 2]).flatten(1).all(1)
    unchanged = (v == x.float() / 255).flatten(1).all(1)
    assert (gray ^ unchanged).all() and 16 < int(gray.sum()) < 48


def test_empty_batch():
    x = torch.zeros((0, 3, 8, 8), dtype=torch.uint8)
    for preset in PRESETS:
        assert Augmenter(preset)(x, gen()).shape == (0, 3, 8, 8)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(preset="rotation"), ["`preset`", "'simclr', 'rot90', 'rotate'", "'rotation'"]),
        (dict(scale=(0.5, 0.2)), ["`scale`", "min <= max", "(0.5, 0.2)"]),
        (dict(scale=(0.0, 1.0)), ["`scale`", "(0, 1]"]),
        (dict(scale=0.5), ["`scale`", "two numbers"]),
        (dict(ratio=(-1, 2)), ["`ratio`"]),
        (dict(hue=0.7), ["`hue`", "[0, 0.5]", "0.7"]),
        (dict(brightness=-0.1), ["`brightness`", ">= 0"]),
        (dict(jitter_p=1.5), ["`jitter_p`", "probability", "1.5"]),
        (dict(grayscale_p="a lot"), ["`grayscale_p`", "'a lot'"]),
        (dict(rotation=30), ["'rotation'", "choose from", "hflip_p"]),
        (dict(fill=(0.5, 2.0, 0.1)), ["`fill`", "[0, 1]", "border colour"]),
        (dict(crop="yes"), ["`crop`", "True or False"]),
    ],
)
def test_bad_parameters_name_parameter_value_and_fix(kwargs, words):
    with pytest.raises(MedcneError) as info:
        Augmenter(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_bad_batches_and_generators():
    aug = Augmenter("rotate", fill=(0.1, 0.2, 0.3))
    with pytest.raises(MedcneError, match="channel"):
        aug(batch(c=1), gen())  # three fill values for one channel
    with pytest.raises(MedcneError, match=r"permute\(0, 3, 1, 2\)"):
        Augmenter()(torch.zeros((2, 8, 8, 3), dtype=torch.uint8), gen())
    with pytest.raises(MedcneError, match="torch tensor"):
        Augmenter()(np.zeros((2, 3, 8, 8), dtype=np.uint8), gen())
    with pytest.raises(MedcneError, match="uint8 or float"):
        Augmenter()(torch.zeros((2, 3, 8, 8), dtype=torch.int64), gen())
    with pytest.raises(MedcneError, match="torch.Generator"):
        Augmenter()(batch(), 0)
    # A batch on another device than the generator (meta stands in for a GPU here).
    on_meta = torch.empty((2, 3, 8, 8), dtype=torch.uint8, device="meta")
    with pytest.raises(MedcneError, match=r"generator` is on cpu but the batch is on meta"):
        Augmenter()(on_meta, gen())


def test_settings_are_plain_values():
    s = Augmenter("rot90", jitter=False, scale=(0.3, 1)).settings()
    assert s["preset"] == "rot90" and s["jitter"] is False and s["scale"] == [0.3, 1.0]
    assert s["vflip_p"] == 0.5 and Augmenter().settings()["vflip_p"] == 0.0


# -- border_colour ---------------------------------------------------------

def slow_border_colour(images: np.ndarray) -> np.ndarray:
    means = []
    for img in images.astype(np.float64) / 255:
        h, w = img.shape[:2]
        pixels = [img[i, j] for i in range(h) for j in range(w) if i in (0, h - 1) or j in (0, w - 1)]
        means.append(np.mean(pixels, axis=0))
    return np.mean(means, axis=0)


@pytest.mark.parametrize("shape", [(7, 6, 5, 3), (3, 1, 4, 1), (2, 2, 2, 3), (5, 9, 9, 1)])
def test_border_colour_matches_a_slow_loop(shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    expected = slow_border_colour(images)
    np.testing.assert_allclose(border_colour(images), expected, rtol=1e-12)
    np.testing.assert_allclose(border_colour(images, chunk=2), expected, rtol=1e-12)
    as_torch = torch.from_numpy(images).permute(0, 3, 1, 2)
    np.testing.assert_allclose(border_colour(as_torch), expected, rtol=1e-12)
    np.testing.assert_allclose(border_colour(as_torch.float() / 255), expected, rtol=1e-6)


def test_border_colour_ignores_the_inside():
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    images[:, 1:-1, 1:-1] = 255  # bright cell, black border
    images[0, 0, :] = (255, 0, 0)  # one red top row in one image
    r, g, b = border_colour(images)
    assert g == b == 0.0 and r == pytest.approx(8 / 28 / 4)
    assert len(border_colour(images[..., :1])) == 1


def test_border_colour_reads_lazy_stores_in_chunks():
    from medcne.datasets import LazyImages

    images = np.random.default_rng(1).integers(0, 256, (10, 5, 5, 3), dtype=np.uint8)
    reads = []

    def read(idx):
        reads.append(len(idx))
        return images[idx]

    lazy = LazyImages(read, 10, (5, 5, 3))
    np.testing.assert_allclose(border_colour(lazy, chunk=4), slow_border_colour(images), rtol=1e-12)
    assert max(reads) <= 4


@pytest.mark.parametrize("shape", [(0, 4, 4, 3), (4, 4, 3), (2, 4, 4, 2)])
def test_border_colour_rejects_bad_shapes(shape):
    with pytest.raises(MedcneError, match="C = 1 or 3"):
        border_colour(np.zeros(shape, dtype=np.uint8))


@pytest.mark.parametrize("preset", PRESETS)
def test_chunking_does_not_change_the_views(preset):
    from medcne.augment import render

    x = batch(n=10)
    aug = Augmenter(preset, fill=(0.2, 0.3, 0.4))
    params = aug.sample(x, gen(5))
    whole = render(x, params, aug.config.fill)
    torch.testing.assert_close(render(x, params, aug.config.fill, chunk=3), whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(aug(x, gen(5)), whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("crop", [True, False])
def test_the_input_batch_is_left_untouched(preset, crop):
    x = batch(n=6).float() / 255
    before = x.clone()
    Augmenter(preset, crop=crop)(x, gen())
    assert torch.equal(x, before)
