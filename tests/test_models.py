"""Backbones and head: shapes, stems, seeded initialisation, head replacement."""

import pytest
import torch

from medcne.errors import MedcneError
from medcne.models import TSimCNENet, use_small_stem

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def net(**kw):
    args = dict(backbone="resnet18", in_channels=3, width=4, small_stem=True, out_dim=128,
                generator=torch.Generator().manual_seed(0))
    args.update(kw)
    return TSimCNENet(**args)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_small_stem(channels):
    m = net(in_channels=channels)
    x = torch.rand(2, channels, 28, 28)
    assert m.num_features == 32  # 8 * width, 512 at width 64
    assert m.forward_features(x).shape == (2, 32)
    assert m(x).shape == (2, 128)
    assert m.head[0].in_features == 32 and m.head[0].out_features == 1024


def test_paper_sizes():
    m = TSimCNENet(width=64)
    assert m.num_features == 512
    assert TSimCNENet("resnet50", width=8).num_features == 8 * 8 * 4
    assert sum(p.numel() for p in TSimCNENet("resnet34", width=8).parameters()) > sum(
        p.numel() for p in TSimCNENet("resnet18", width=8).parameters())


def test_stem_choice():
    assert use_small_stem(28) and use_small_stem(32)
    assert not use_small_stem(96)
    assert use_small_stem(96, True) and not use_small_stem(28, False)
    small, big = net(), net(small_stem=False)
    assert small.backbone.stem[0].kernel_size == (3, 3) and small.backbone.stem[0].stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in small.modules())
    assert big.backbone.stem[0].kernel_size == (7, 7)
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in big.modules())
    assert big(torch.rand(2, 3, 64, 64)).shape == (2, 128)


def test_seeded_initialisation():
    a, b = net(), net()
    c = net(generator=torch.Generator().manual_seed(1))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(),
                                  strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.head[0].weight, c.head[0].weight)


def test_replace_last():
    m = net()
    hidden = m.head[0].weight.clone()
    new = m.replace_last(2, torch.Generator().manual_seed(5))
    assert m.out_dim == 2 and m.last_layer is new and new.in_features == 1024
    assert torch.equal(m.head[0].weight, hidden)
    assert m(torch.rand(3, 3, 16, 16)).shape == (3, 2)


@pytest.mark.parametrize("kw,match", [
    ({"backbone": "vgg"}, "backbone"), ({"in_channels": 4}, "channels"),
    ({"width": 0}, "width"), ({"out_dim": 0}, "dim"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(MedcneError, match=match):
        net(**kw)
    with pytest.raises(MedcneError, match="small_stem"):
        use_small_stem(28, "yes")
