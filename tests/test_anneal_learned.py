"""Learned kernel values of the annealed schedule (anneal:temperature=learned, dof=learned): the
spec, the loss against the reference's formula, the model's parameters, their optimiser group,
and a tiny fit that trains them, saves, reloads, resumes exactly and never syncs in a step."""

import math

import numpy as np
import pytest
import torch

from medcne.errors import MedcneError
from medcne.estimator import TSimCNE
from medcne.losses import student_t_infonce
from medcne.models import TSimCNENet
from medcne.train.anneal import (
    KERNEL_LR_SCALE,
    AnnealSpec,
    kernel_values,
    loss_of_step,
    param_groups,
    parse_schedule,
)
from medcne.train.stages import Stage, anneal_stages
from test_anneal import Stop, tiny, tiny_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the spec ---------------------------------------------------------------------------
def test_learned_and_fixed_values_parse_and_round_trip():
    spec = parse_schedule("anneal:temperature=learned,dof=learned")
    assert (spec.temperature, spec.dof, spec.learned) == ("learned", "learned", ("temperature", "dof"))
    stage = anneal_stages(5, 0.1, 1, spec)[0]
    assert Stage(**stage.to_dict()) == stage  # as params.json and checkpoints read it back
    fixed = parse_schedule("anneal:temperature=2.5,dof=3")
    assert (fixed.temperature, fixed.dof, fixed.learned) == (2.5, 3.0, ())
    assert AnnealSpec().temperature == 1.0 and AnnealSpec().learned == ()
    assert parse_schedule("anneal:dof=learned").learned == ("dof",)


@pytest.mark.parametrize("text,match", [
    ("anneal:temperature=0", "temperature .* must be a positive number or 'learned'"),
    ("anneal:temperature=hot", "temperature must be a number or 'learned'"),
    ("anneal:dof=learnt", "dof must be a number or 'learned'"),
    ("anneal:dof_end=learned", "dof_end must be a number; got 'learned'"),
    ("anneal:dof=learned,dof_end=4", "do not go together"),
    ("anneal:temp=2", "key one of .*temperature"),
])
def test_bad_learned_settings_name_themselves(text, match):
    with pytest.raises(MedcneError, match=match) as info:
        parse_schedule(text)
    assert "\n" not in str(info.value)


def test_a_bad_learned_setting_on_the_command_line_is_one_line(tmp_path, capsys):
    from medcne.cli import main
    from medcne.datasets import SAMPLE_PATH

    out = tmp_path / "run"
    assert main(["fit", str(SAMPLE_PATH), "--out", str(out), "--schedule", "anneal:temperature=-1", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "temperature" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


# -- the loss ---------------------------------------------------------------------------
def reference_kernel_loss(z: torch.Tensor, temperature: float, dof: float) -> torch.Tensor:
    """The reference's Student-t InfoNCE (tsimcne 0.4, InfoNCET), written out: log-similarity
    ``-(dof+1)/2 log(1 + T d^2 / (dof/2))``, anchors over all other views."""
    n, b = z.shape[0], z.shape[0] // 2
    d2 = torch.cdist(z, z).square()
    logsim = torch.log1p(d2 * temperature / (0.5 * dof)) * (-0.5 * (dof + 1))
    logsim.fill_diagonal_(-math.inf)
    partner = (torch.arange(n) + b) % n
    return (torch.logsumexp(logsim, 1) - logsim[torch.arange(n), partner]).mean()


def test_medcne_temperature_is_twice_the_references():
    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t, dof in ((1.0, 1.0), (0.3, 1.0), (2.0, 3.0)):
        ours = student_t_infonce(z, dof=dof, temperature=t).item()
        assert ours == pytest.approx(reference_kernel_loss(z, t / 2, dof).item(), rel=1e-5), (t, dof)
    # the defaults are the reference's defaults (its temperature 0.5) and the Cauchy kernel
    assert student_t_infonce(z).item() == pytest.approx(reference_kernel_loss(z, 0.5, 1.0).item(), rel=1e-5)


def test_learned_values_get_gradients():
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    t, dof = torch.ones((), requires_grad=True), torch.full((), 2.0, requires_grad=True)
    student_t_infonce(z, dof=dof, temperature=t).backward()
    assert t.grad.abs() > 0 and dof.grad.abs() > 0
    assert student_t_infonce(z, dof=dof, temperature=t).item() == pytest.approx(
        student_t_infonce(z, dof=2.0).item(), rel=1e-6)


# -- the model and its optimiser ---------------------------------------------------------
def model(learned=()):
    return TSimCNENet("resnet18", 3, 2, True, 128, torch.Generator().manual_seed(0), learned=learned)


def test_only_a_learned_schedule_adds_parameters():
    plain, learned = model(), model(parse_schedule("anneal:temperature=learned").learned)
    n = len(list(plain.parameters()))
    assert not hasattr(plain, "kernel") and not hasattr(model(AnnealSpec().learned), "kernel")
    assert len(list(learned.parameters())) == n + 1 and "kernel.log_temperature" in learned.state_dict()
    # the kernel is drawn after the network: the same weights with or without it
    assert all(torch.equal(v, learned.state_dict()[k]) for k, v in plain.state_dict().items())
    assert kernel_values(learned) == {"temperature": 1.0} and kernel_values(plain) == {}
    params = list(plain.parameters())
    assert param_groups(plain, params) is params  # no kernel: one plain group, as before
    groups = param_groups(learned, list(learned.parameters()))
    assert len(groups) == 2 and groups[1]["params"] == [learned.kernel.log_temperature]
    assert groups[1]["lr_scale"] == KERNEL_LR_SCALE == 0.01 and len(groups[0]["params"]) == n


def test_the_step_loss_uses_the_learned_values():
    stage = anneal_stages(2, 0.1, 0, parse_schedule("anneal:temperature=learned,dof=learned"))[0]
    net = model(stage.anneal.learned)
    fn, _ = loss_of_step(None, stage, 0, 4, torch.device("cpu"), net.kernel)
    assert fn.keywords["temperature"].requires_grad and fn.keywords["dof"].requires_grad
    with pytest.raises(MedcneError, match="learned kernel"):
        loss_of_step(None, stage, 0, 4, torch.device("cpu"))
    fixed = anneal_stages(2, 0.1, 0, parse_schedule("anneal:temperature=3"))[0]
    assert loss_of_step(None, fixed, 0, 4, torch.device("cpu"))[0].keywords["temperature"] == 3.0


# -- fits -------------------------------------------------------------------------------
LEARNED = "anneal:temperature=learned,dof=learned"


def test_a_learned_fit_trains_saves_reloads_and_resumes_exactly(tmp_path):
    data = tiny_images()
    groups = []

    def watch(end):
        groups.append([(g["lr"], len(g["params"])) for g in end.optimizer.param_groups])

    full = tiny(schedule=LEARNED, lr=0.5).fit(data, callback=watch)
    kernel = {k: v.detach().clone() for k, v in full.model_.kernel.state_dict().items()}
    assert all(v != 0 for v in kernel.values())  # both trained away from their start at 1
    # their own group at a hundredth of the learning rate, the same SGD otherwise
    assert all(len(g) == 2 and g[1] == (pytest.approx(g[0][0] * 0.01), 2) for g in groups)
    rows = full.history_
    assert [r["temperature"] for r in rows][-1] == pytest.approx(math.exp(kernel["log_temperature"]), rel=1e-6)
    assert len({r["dof"] for r in rows}) == 3

    full.save(tmp_path / "m.pt")
    back = TSimCNE.load(tmp_path / "m.pt")
    assert back.schedule == LEARNED and back.model_.out_dim == 2
    for k, v in back.model_.kernel.state_dict().items():
        assert torch.equal(v, kernel[k])
    np.testing.assert_allclose(back.transform(data), full.embedding_, atol=1e-5)

    def stop_after_two(end):
        if end.position.epoch == 2:
            raise Stop

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Stop):
        tiny(schedule=LEARNED, lr=0.5, checkpoint=ckpt, checkpoint_minutes=0).fit(data, callback=stop_after_two)
    saved = torch.load(ckpt, weights_only=True)
    assert "kernel.log_temperature" in saved["model"] and len(saved["optimizer"]["param_groups"]) == 2
    resumed = tiny(schedule=LEARNED, lr=0.5, checkpoint=ckpt).fit(data, resume_from=ckpt)
    np.testing.assert_allclose(resumed.embedding_, full.embedding_, atol=1e-5)
    for k, v in resumed.model_.kernel.state_dict().items():
        assert v.item() == pytest.approx(kernel[k].item(), abs=1e-7)


def test_a_learned_fit_never_syncs_in_a_step():
    # The learned values are read once per epoch, after the epoch's loss: no read inside a step.
    from test_syncaudit import audited_fit

    audit, est = audited_fit(3, schedule=LEARNED, dim=2)
    assert audit.judged() >= 3 and audit.step_syncs() == [], audit.summary()
    assert [[s.op for s in e.end] for e in audit.epochs] == [["_local_scalar_dense"] * 3] * 3
    assert {"temperature", "dof"} <= set(est.history_[-1])
