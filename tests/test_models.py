"""Backbones and head: shapes, stems, seeded initialisation, head replacement."""

import numpy as np
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


def test_stage2_head_is_drawn_on_the_cpu_generator_then_moved():
    # The CUDA crash at stage 2: the fresh layer was moved to the model's device before
    # being drawn with the run's CPU generator. "meta" stands in for a GPU here: every
    # draw goes through models.random_, which refuses a generator on another device.
    from medcne.train import Generators, tsimcne_stages
    from medcne.train.loop import begin_stage

    gens = Generators.from_rng(np.random.default_rng(0), torch.device("cpu"))
    model = TSimCNENet("resnet18", 3, 4, True, 128, gens.init).to("meta")
    for stage in tsimcne_stages((1, 1, 1)):
        begin_stage(model, stage, gens, fresh=True)
    assert model.last_layer.weight.device.type == "meta" and model.out_dim == 2


def test_random_draws_refuse_a_generator_on_another_device():
    from medcne.errors import MedcneError
    from medcne.models import random_

    t = torch.empty(3, device="meta")
    with pytest.raises(MedcneError, match="cpu generator cannot draw a meta tensor"):
        random_(t.normal_, t, torch.Generator())


@pytest.mark.parametrize("init,std", [("normal", 1.0), ("uniform", 1 / np.sqrt(3 * 1024))])
def test_head_init(init, std):
    model = TSimCNENet("resnet18", 3, 4, True, 128, torch.Generator().manual_seed(0))
    w = model.replace_last(2, torch.Generator().manual_seed(1), init).weight.detach()
    assert w.shape == (2, 1024) and float(w.std()) == pytest.approx(std, rel=0.05)
    again = model.replace_last(2, torch.Generator().manual_seed(1), init).weight.detach()
    assert torch.equal(w, again)  # seeded


def test_head_init_is_validated():
    from medcne.errors import MedcneError
    from medcne.train import tsimcne_stages

    with pytest.raises(MedcneError, match="head_init"):
        tsimcne_stages((1, 1, 1), head_init="xavier")


def test_embed_runs_256_images_a_pass_on_a_cpu_and_1024_on_an_accelerator():
    from medcne.models import embed, embed_chunk

    sizes = []

    def fn(x):
        sizes.append(len(x))
        return x.reshape(len(x), -1)[:, :2]

    images = np.random.default_rng(0).integers(0, 256, (600, 4, 4, 3), dtype=np.uint8)
    out = embed(fn, images, torch.device("cpu"))
    assert sizes == [256, 256, 88] and out.shape == (600, 2)
    # A quarter of the activations on a CPU at the same speed (bench/embed_chunk.py); width on a GPU.
    assert embed_chunk(torch.device("cuda")) == 1024 and embed_chunk(torch.device("cpu")) == 256
