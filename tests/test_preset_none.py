"""The orientation-preserving preset 'none': crops and colour only, no flips, no rotations."""

from __future__ import annotations

import pytest
import torch

from medcne.augment import PRESETS, Augmenter
from medcne.cli import main
from medcne.defaults import PRESETS as DEFAULT_PRESETS


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gradient_batch(n: int = 64, size: int = 32) -> torch.Tensor:
    """Gray images growing brighter to the right and downwards (values 25..125, nothing clips)."""
    ramp = torch.linspace(0.0, 1.0, size)
    image = 25 + 50 * ramp[None, :] + 50 * ramp[:, None]
    return image.round().to(torch.uint8).expand(n, 3, size, size).contiguous()


def orientation(views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per view: right half brighter than left? bottom half brighter than top?"""
    h, w = views.shape[-2:]
    right = views[..., w // 2:].mean((1, 2, 3)) > views[..., : w // 2].mean((1, 2, 3))
    down = views[..., h // 2:, :].mean((1, 2, 3)) > views[..., : h // 2, :].mean((1, 2, 3))
    return right, down


def test_none_is_a_preset_everywhere():
    assert "none" in PRESETS and PRESETS == DEFAULT_PRESETS


def test_none_has_no_flips_and_no_rotation_but_keeps_crops_and_colour():
    cfg = Augmenter("none").config
    assert cfg.hflip_p == 0.0 and cfg.vflip_p == 0.0 and cfg.rotation is None
    assert cfg.crop and cfg.jitter and cfg.grayscale
    assert cfg.scale == (0.2, 1.0) and cfg.brightness == 0.4 and cfg.grayscale_p == 0.2


def test_none_draws_crops_and_colour_but_no_flip_or_rotation():
    params = Augmenter("none").sample(torch.zeros((400, 3, 8, 8), dtype=torch.uint8), gen(4))
    assert params.angle is None and params.quarter is None
    assert not params.hflip.any() and not params.vflip.any()
    assert params.box is not None and 0.7 < params.jitter.float().mean() < 0.9 and params.gray.any()


def test_none_without_crop_and_colour_is_the_identity(augment_engine):
    x = torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8, generator=gen(1))
    v = Augmenter("none", crop=False, jitter=False, grayscale=False)(x, gen())
    assert torch.equal(v, x.float() / 255)


def test_none_keeps_every_view_the_right_way_round(augment_engine):
    # Crops and colour changes are monotonic on a gray gradient: only a flip or a rotation can turn it.
    x = gradient_batch()
    right, down = orientation(Augmenter("none")(x, gen(2)))
    assert right.all() and down.all()
    # The default preset mirrors about half of them (so this check can fail).
    right, down = orientation(Augmenter("simclr")(x, gen(2)))
    assert 10 < int((~right).sum()) < 54 and down.all()
    right, down = orientation(Augmenter("rot90")(x, gen(2)))
    assert (~down).sum() > 10


def test_none_views_still_vary(augment_engine):
    x = gradient_batch(n=8)
    aug = Augmenter("none")
    g = gen(3)
    assert not torch.allclose(aug(x, g), aug(x, g))


@pytest.mark.slow
def test_fit_accepts_preset_none(tmp_path, one_torch_thread):
    from medcne.datasets import SAMPLE_PATH
    from medcne.runs import read_run

    out = tmp_path / "run"
    assert main(["fit", str(SAMPLE_PATH), "--out", str(out), "--preset", "none", "--subset", "32", "--size", "16",
                 "--epochs", "1,1,1", "--warmup", "0,0,0", "--width", "4", "--batch-size", "16",
                 "--device", "cpu"]) == 0
    run = read_run(out)
    assert run.params["estimator"]["preset"] == "none" and run.embedding.shape == (32, 2)
