"""Losses against a slow double loop, symmetry, gradients, and a few SGD steps."""

import math

import pytest
import torch

from medcne.errors import MedcneError
from medcne.losses import cauchy_infonce, cosine_infonce, get_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def slow_infonce(z, sim):
    """The definition, one anchor and one other view at a time."""
    n = z.shape[0]
    b = n // 2
    total = 0.0
    for i in range(n):
        p = (i + b) % n
        denom = sum(sim(z[i], z[k]) for k in range(n) if k != i)
        total += -math.log(sim(z[i], z[p]) / denom)
    return total / n


def cauchy(x, y):
    return 1.0 / (1.0 + float(((x - y) ** 2).sum()))


def cosine(x, y, t=0.5):
    return math.exp(float(torch.dot(x, y) / (x.norm() * y.norm())) / t)


@pytest.fixture
def z():
    return torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_cauchy_matches_slow_loop(z):
    assert cauchy_infonce(z).item() == pytest.approx(slow_infonce(z, cauchy), rel=1e-5)


def test_cosine_matches_slow_loop(z):
    assert cosine_infonce(z).item() == pytest.approx(slow_infonce(z, cosine), rel=1e-5)
    t2 = slow_infonce(z, lambda x, y: cosine(x, y, 0.2))
    assert cosine_infonce(z, temperature=0.2).item() == pytest.approx(t2, rel=1e-5)


@pytest.mark.parametrize("loss", [cauchy_infonce, cosine_infonce])
def test_symmetric_in_views_and_images(loss, z):
    b = z.shape[0] // 2
    swapped = torch.cat([z[b:], z[:b]])
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(1))
    permuted = torch.cat([z[:b][perm], z[b:][perm]])
    assert loss(swapped).item() == pytest.approx(loss(z).item(), rel=1e-6)
    assert loss(permuted).item() == pytest.approx(loss(z).item(), rel=1e-6)


@pytest.mark.parametrize("loss", [cauchy_infonce, cosine_infonce])
def test_partners_matter(loss, z):
    # Breaking the i <-> i+B pairing must change the loss: the layout is real.
    b = z.shape[0] // 2
    shifted = torch.cat([z[:b], z[b:].roll(1, 0)])
    assert loss(shifted).item() != pytest.approx(loss(z).item(), rel=1e-3)


@pytest.mark.parametrize("loss", [cauchy_infonce, cosine_infonce])
def test_finite_gradients_even_for_identical_points(loss):
    for z in (torch.zeros(8, 2), torch.randn(8, 128) * 100):
        z = z.clone().requires_grad_(True)
        value = loss(z)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("loss", [cauchy_infonce, cosine_infonce])
def test_float32_under_low_precision_input(loss, z):
    out = loss(z.to(torch.bfloat16))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", ["cauchy", "cosine"])
def test_decreases_over_sgd_steps(name):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, generator=g)
    views = torch.cat([x + 0.3 * torch.randn(16, 5, generator=g), x + 0.3 * torch.randn(16, 5, generator=g)])
    layer = torch.nn.Linear(5, 2 if name == "cauchy" else 8)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    loss = get_loss(name)
    first = loss(layer(views)).item()
    for _ in range(30):
        value = loss(layer(views))
        opt.zero_grad()
        value.backward()
        opt.step()
    assert value.item() < first - 0.05


def test_bad_input():
    with pytest.raises(MedcneError, match="2B"):
        cauchy_infonce(torch.zeros(5, 2))
    with pytest.raises(MedcneError, match="temperature"):
        cosine_infonce(torch.zeros(4, 2), temperature=0)
    with pytest.raises(MedcneError, match="'cauchy', 'cosine'"):
        get_loss("tsne")


@pytest.mark.parametrize("name", ["cauchy", "cosine"])
def test_float32_inside_an_autocast_region(name):
    from medcne.losses import get_loss

    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(3)) * 5
    loss = get_loss(name)
    exact = loss(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(z)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, exact, rtol=1e-6, atol=1e-6)
