"""Dimension annealing: the schedule's shape, the masked Student-t loss, clipping, and fits
that learn, resume exactly, follow a budget, compile once and never sync per step."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from medcne.datasets import from_array
from medcne.errors import MedcneError
from medcne.estimator import TSimCNE
from medcne.losses import cauchy_infonce, student_t_infonce
from medcne.metrics import knn_accuracy
from medcne.models import TSimCNENet
from medcne.train.anneal import (
    AnnealSpec,
    clip_gradients,
    dim_at,
    dim_mask,
    dof_at,
    keep_first,
    loss_of_step,
    parse_schedule,
    share_of,
)
from medcne.train.stages import Stage, anneal_stages, annealed_schedule, tsimcne_stages

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dims(spec: AnnealSpec, epochs: int, spe: int = 1) -> list[int]:
    return [dim_at(spec, share_of(s, epochs, spe)) for s in range(epochs * spe)]


# -- the schedule's shape ---------------------------------------------------------------
def test_cosine_goes_from_128_to_2_as_the_reference_per_epoch():
    spec = AnnealSpec()
    got = dims(spec, 1000)
    # The reference's per-epoch values, written out independently: floor(2 + 127 * (1 + cos(pi e / E)) / 2)
    # for e = 1..E, capped at 128.
    e = np.arange(1, 1001)
    ref = np.minimum(np.floor(2 + 0.5 * 127 * (1 + np.cos(np.pi * e / 1000))), 128).astype(int)
    assert got == ref.tolist()
    assert got[0] == 128 and got[-1] == 2 and all(a >= b for a, b in zip(got, got[1:], strict=False))
    assert got[499] in (64, 65)  # halfway: half of the way down


def test_piecewise_shapes_hold_then_descend_then_stay():
    for shape in ("piecewise-cosine", "piecewise-linear"):
        got = dims(AnnealSpec(shape=shape), 240)
        assert set(got[:160]) == {128}, shape  # 2/3 at full width
        assert set(got[-50:]) == {2}, shape  # the last 5/24 at the map's dimension
        assert 2 < got[180] < 128
    linear = dims(AnnealSpec(shape="linear"), 100)
    assert linear[49] == math.floor(2 + 127 * 0.5)  # a straight line: halfway at the middle


def test_end_share_and_end_dim():
    got = dims(AnnealSpec(end_share=0.25, end_dim=3), 100)
    assert set(got[75:]) == {3} and got[60] > 3 and got[0] == 128


def test_replanning_moves_the_end_not_the_shape():
    # The dimension is a function of the share of the planned training: a run planned for
    # 10 epochs and one re-planned to 20 pass the same dimensions at the same shares.
    spec = AnnealSpec()
    short, long = dims(spec, 10, spe=7), dims(spec, 20, spe=7)
    assert short == long[1::2] and long[-1] == short[-1] == 2
    # and the step of a resumed run sees the dimension the uninterrupted one saw (a pure function)
    assert dim_at(spec, share_of(33, 10, 7)) == short[33]


def test_dof_fixed_or_cosine():
    assert dof_at(AnnealSpec(dof=3), 0.7) == 3.0
    spec = AnnealSpec(dof=1, dof_end=5)
    assert dof_at(spec, 0.0) == pytest.approx(1) and dof_at(spec, 1.0) == pytest.approx(5)
    assert dof_at(spec, 0.5) == pytest.approx(3)


@pytest.mark.parametrize("text,match", [
    ("anneal:shape=square", "shape must be one of"), ("anneal:speed=2", "key one of"),
    ("anneal:dof=0", "degrees of freedom"), ("anneal:dof=one", "must be a number"),
    ("anneal:end_share=0.5,hold_share=0.5", "sum < 1"), ("anneal:clip=-1", "clip"),
    ("stage", "'stages' or 'anneal'"), ("stages:dof=2", "'stages' or 'anneal'"),
])
def test_bad_schedules_name_themselves(text, match):
    with pytest.raises(MedcneError, match=match):
        parse_schedule(text)


def test_parse_schedule_and_the_stage_record_round_trip():
    assert parse_schedule("stages") is None
    assert parse_schedule("anneal") == AnnealSpec()
    spec = parse_schedule("anneal: shape=piecewise-linear, dof=2, end_share=0.1, clip=0", end_dim=3)
    assert (spec.shape, spec.dof, spec.end_share, spec.clip, spec.end_dim) == ("piecewise-linear", 2, 0.1, 0, 3)
    stage = anneal_stages(20, 0.1, 2, spec)[0]
    assert Stage(**stage.to_dict()) == stage and stage.out_dim == 128
    assert annealed_schedule("stages", (1, 2, 3), (0, 0, 0), 0.1, 2, "cauchy") is None
    assert annealed_schedule("anneal", "30,5,5", "4,0,1", 0.1, 2, "cauchy")[0].epochs == 30
    with pytest.raises(MedcneError, match="loss='cauchy'"):
        annealed_schedule("anneal", 10, 1, 0.1, 2, "cosine")


# -- the loss ---------------------------------------------------------------------------
def slow_student_t(z: torch.Tensor, dof: float) -> torch.Tensor:
    """The loss written as the formula, one anchor at a time."""
    n, b = z.shape[0], z.shape[0] // 2
    total = 0.0
    for i in range(n):
        q = [(1 + ((z[i] - z[k]) ** 2).sum() / dof) ** (-(dof + 1) / 2) for k in range(n)]
        p = (i + b) % n
        total = total - torch.log(q[p] / sum(q[k] for k in range(n) if k != i))
    return total / n


def test_student_t_matches_the_formula_and_cauchy_at_one():
    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for dof in (0.5, 1.0, 3.0):
        assert student_t_infonce(z, dof=dof).item() == pytest.approx(slow_student_t(z.float(), dof).item(),
                                                                     rel=1e-5)
    assert student_t_infonce(z, dof=1.0).item() == pytest.approx(cauchy_infonce(z).item(), rel=1e-6)


def test_a_mask_is_the_first_dims_with_zero_gradient_elsewhere():
    z = torch.randn(10, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    masked = student_t_infonce(z, dof=2.0, mask=dim_mask(16, 5, torch.device("cpu")))
    masked.backward()
    grad = z.grad.clone()
    z.grad = None
    sliced = student_t_infonce(z[:, :5], dof=2.0)
    sliced.backward()
    assert masked.item() == pytest.approx(sliced.item(), rel=1e-6)
    torch.testing.assert_close(grad[:, :5], z.grad[:, :5])
    assert (grad[:, 5:] == 0).all() and (grad[:, :5] != 0).any()
    assert dim_mask(16, 2, torch.device("cpu")).shape == dim_mask(16, 16, torch.device("cpu")).shape == (16,)


def test_loss_of_step_follows_the_stage():
    plain = tsimcne_stages((2, 1, 2), lr=0.1)[0]
    assert loss_of_step(cauchy_infonce, plain, 3, 4, torch.device("cpu")) == (cauchy_infonce, None)
    stage = anneal_stages(2, 0.1, 0, AnnealSpec(dof=2))[0]
    fn, d = loss_of_step(cauchy_infonce, stage, 7, 4, torch.device("cpu"))
    assert d == 2 and fn.keywords["dof"] == 2 and int(fn.keywords["mask"].sum()) == 2


def test_clipping_by_value_only_in_an_annealed_stage():
    w = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([w], lr=0.1)
    for stage, expected in ((tsimcne_stages((1, 1, 1), lr=0.1)[0], [-10.0, 10.0, 3.0, -0.5]),
                            (anneal_stages(1, 0.1, 0, AnnealSpec())[0], [-4.0, 4.0, 3.0, -0.5])):
        w.grad = torch.tensor([-10.0, 10.0, 3.0, -0.5])
        clip_gradients(opt, stage)
        assert w.grad.tolist() == expected


def test_keep_first_keeps_the_first_outputs():
    model = TSimCNENet("resnet18", 3, 2, True, 128, torch.Generator().manual_seed(0)).eval()
    x = torch.rand(3, 3, 12, 12)
    with torch.no_grad():
        full = model(x)
        keep_first(model, 2)
        cut = model(x)
    assert model.out_dim == 2
    torch.testing.assert_close(cut, full[:, :2], rtol=1e-6, atol=1e-7)  # same weights; BLAS may round differently


# -- fits -------------------------------------------------------------------------------
def tiny_images(n=48, size=12, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 100, (n, size, size, 3)) + 60 * labels[:, None, None, None]
    return from_array(images.astype(np.uint8), labels)


def tiny(**kw):
    args = dict(schedule="anneal", epochs=3, warmup=1, batch_size=16, width=4, device="cpu",
                random_state=0, verbose=False)
    args.update(kw)
    return TSimCNE(**args)


def test_an_annealed_fit_gives_a_map_and_records_its_schedule(tmp_path):
    est = tiny(schedule="anneal:dof=2", dim=3, knn_every=3).fit(tiny_images())
    assert est.embedding_.shape == (48, 3) and est.model_.out_dim == 3
    # The last periodic kNN scores the dims the loss saw last: the map itself.
    assert est.history_[-1]["knn"] == pytest.approx(knn_accuracy(est.embedding_, tiny_images().labels))
    assert [r["dim"] for r in est.history_][-1] == 3 and est.history_[0]["dim"] > est.history_[-1]["dim"]
    np.testing.assert_allclose(est.transform(tiny_images()), est.embedding_, atol=1e-5)
    est.save(tmp_path / "m.pt")
    back = TSimCNE.load(tmp_path / "m.pt")
    assert back.schedule == "anneal:dof=2" and back.stages_ == est.stages_ and back.epochs == (3,)
    np.testing.assert_allclose(back.transform(tiny_images()), est.embedding_, atol=1e-5)


class Stop(Exception):
    pass


def test_resume_mid_annealing_gives_the_same_map(tmp_path):
    data = tiny_images()
    full = tiny().fit(data)

    def stop_after_two(end):
        if end.position.epoch == 2:
            raise Stop

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Stop):
        tiny(checkpoint=ckpt, checkpoint_minutes=0).fit(data, callback=stop_after_two)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["out_dim"] == 128  # the checkpoint holds the whole head; the cut is at the end
    resumed = tiny(checkpoint=ckpt).fit(data, resume_from=ckpt)
    np.testing.assert_allclose(resumed.embedding_, full.embedding_, atol=1e-5)
    assert [r["dim"] for r in resumed.history_] == [r["dim"] for r in full.history_]


def test_a_budget_scales_the_annealed_stage_and_keeps_its_shape():
    from medcne.train.budget import budget_stages, replan_stages
    from medcne.train.timing import StepTiming

    template = anneal_stages(12, 0.1, 2, AnnealSpec(shape="piecewise-cosine"))
    (planned,) = budget_stages(template, StepTiming(step=1.0, first=1.0), n=40, batch_size=10, seconds=120)
    assert planned.epochs == 30 and planned.warmup_epochs == 5 and planned.anneal == template[0].anneal
    # Still warming up after 2 epochs and slower than planned: the stage gets shorter; the annealing
    # keeps its shape over the new length and still ends at 2-D on the last step.
    (replanned,) = replan_stages(template, (planned,), 0, 2, step=2.0, spe=4, seconds=100)
    assert replanned.epochs == 14 and replanned.anneal == planned.anneal
    assert dims(replanned.anneal, replanned.epochs, 4)[-1] == 2
    assert set(dims(replanned.anneal, replanned.epochs, 4)[: 2 * 14 * 4 // 3]) == {128}


@pytest.mark.slow
def test_a_budget_fit_with_annealing(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (64, 12, 12, 3), dtype=np.uint8)
    est = tiny(epochs=4, warmup=2, budget="40s", checkpoint=tmp_path / "ck.pt").fit(data)
    (stage,) = est.stages_
    assert stage.anneal is not None and len(est.history_) == stage.epochs
    # Whatever length the budget chose, the annealing ends at the map's dimension on the last epoch.
    assert est.history_[-1]["dim"] == 2 and est.model_.out_dim == 2


def test_an_annealed_fit_never_syncs_in_a_step():
    # The sync audit of the real loop (medcne.train.syncaudit) over an annealed fit: the dimension
    # changes with the step, and the mask, the scheduled loss and the clipping stay on the device.
    from test_syncaudit import audited_fit

    audit, est = audited_fit(3, schedule="anneal", dim=2)
    assert audit.judged() >= 3 and audit.step_syncs() == [], audit.summary()
    assert [[s.op for s in e.end] for e in audit.epochs] == [["_local_scalar_dense"]] * 3
    assert len({r["dim"] for r in est.history_}) > 1


@pytest.mark.slow
def test_annealing_compiles_once(monkeypatch):
    from test_gpu_contract import count_compiles

    graphs = count_compiles(monkeypatch)
    images = np.random.default_rng(0).integers(0, 256, (24, 12, 12, 3), dtype=np.uint8)
    est = TSimCNE(schedule="anneal", epochs=3, warmup=0, batch_size=8, width=2, device="cpu", compile=True,
                  random_state=0, verbose=False).fit(images)
    # 3 epochs x 3 steps pass through several dimensions; the mask keeps every shape, so one graph.
    assert len({r["dim"] for r in est.history_}) == 3 and len(graphs) == 1


@pytest.mark.slow
def test_an_annealed_fit_learns():
    # As test_train_loop.test_tsimcne_learns: a few epochs on real images must lift the kNN
    # accuracy of the map well above chance (about 20% on the sample's 8 unequal classes).
    from medcne.datasets import load_sample
    from medcne.metrics import knn_accuracy_splits

    data = load_sample()
    data = data.take(np.random.default_rng(0).choice(len(data), 600, replace=False))
    trained = tiny(epochs=6, warmup=1, batch_size=100, lr=0.06, width=8, preset="rotate").fit_transform(data)
    after = knn_accuracy_splits(trained, data.labels).mean()
    assert after >= 45, after


def test_sweep_configs_take_a_schedule(tmp_path):
    from medcne.cli import main
    from medcne.sweep import cells, load_config
    from sweephelpers import TINY_SWEEP

    grid = cells(load_config("schedules"), {"device": "cpu"})
    ran = {c.method: (c.options.get("schedule", "stages"), c.options["epochs"]) for c in grid}
    assert ran == {"stages": ("stages", (10, 1, 4)), "anneal": ("anneal", (15,))}
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_SWEEP + "\n[methods.x]\nmethod = 'tsimcne'\nschedule = 'annealing'\n", encoding="utf-8")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_annealed_fit_in_two_processes(tmp_path):
    import csv
    import json
    import os
    import subprocess
    import sys

    from medcne.datasets import SAMPLE_PATH

    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "medcne", "fit", str(SAMPLE_PATH), "--out", str(out), "--nproc", "2",
           "--schedule", "anneal", "--epochs", "2", "--warmup", "0", "--subset", "64", "--size", "16",
           "--width", "2", "--batch-size", "16", "--device", "cpu"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = json.loads((out / "params.json").read_text())["resolved"]
    assert resolved["world_size"] == 2 and resolved["stages"][0]["anneal"]["end_dim"] == 2
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["dim"] for r in rows][-1] == "2" and int(rows[0]["dim"]) > 2
    assert np.load(out / "embedding.npz")["embedding"].shape == (64, 2)


def test_a_bad_schedule_on_the_command_line_is_one_line(tmp_path, capsys):
    from medcne.cli import main
    from medcne.datasets import SAMPLE_PATH

    out = tmp_path / "run"
    assert main(["fit", str(SAMPLE_PATH), "--out", str(out), "--schedule", "anneal:dof=0", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "degrees of freedom" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_a_dim_above_the_descents_start_names_dim_not_end_dim(capsys):
    from medcne.cli import main
    from medcne.datasets import SAMPLE_PATH

    assert main(["fit", str(SAMPLE_PATH), "--out", "never-written", "--schedule", "anneal", "--dim", "129",
                 "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "--dim must be at most 128 with --schedule 'anneal'" in err and "end_dim" not in err, err
