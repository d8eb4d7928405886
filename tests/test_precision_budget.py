"""CPU precision (bf16 where native) and the time budget."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from medcne import TSimCNE
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH
from medcne.device import native_bf16, resolve_precision
from medcne.durations import format_duration, parse_duration
from medcne.errors import MedcneError
from medcne.train import tsimcne_stages
from medcne.train.budget import BudgetPlan, budget_stages, replan_stages
from medcne.train.timing import StepTiming

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def with_flags(monkeypatch, flags):
    from medcne import device

    monkeypatch.setattr(device, "cpu_flags", lambda: None if flags is None else frozenset(flags))


@pytest.mark.parametrize("flags,auto", [
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16", "amx_tile"}, "bf16"),
    ({"avx2", "avx512f"}, "fp32"), (None, "fp32"),
])
def test_auto_precision_follows_the_cpu(monkeypatch, flags, auto):
    with_flags(monkeypatch, flags)
    assert resolve_precision("auto", CPU) == auto
    assert resolve_precision("fp32", CPU) == "fp32"
    if auto == "fp32":
        with pytest.raises(MedcneError, match="no native bf16.*`precision` auto"):
            resolve_precision("bf16", CPU)
    else:
        assert resolve_precision("bf16", CPU) == "bf16"


def test_bf16_on_a_cpu_without_it_is_one_line(monkeypatch, tmp_path, capsys):
    with_flags(monkeypatch, {"avx2"})
    out = tmp_path / "run"
    code = main(["fit", str(SAMPLE_PATH), "--out", str(out), "--subset", "40", "--precision", "bf16",
                 "--epochs", "1,0,1", "--width", "2", "--batch-size", "8", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--precision auto" in err
    assert not out.exists()


def test_precision_is_validated():
    with pytest.raises(MedcneError, match="`precision` must be one of"):
        resolve_precision("fp16", CPU)


@pytest.mark.skipif(not native_bf16(CPU), reason="this CPU has no native bf16")
def test_bf16_fit_gives_a_float32_map_and_records_it():
    images = np.random.default_rng(0).integers(0, 256, (24, 12, 12, 3), dtype=np.uint8)
    est = TSimCNE(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=8, width=2, device="cpu", precision="bf16",
                  random_state=0, verbose=False).fit(images)
    assert est.precision_ == "bf16" and est.model_.amp_dtype == torch.bfloat16
    assert est.embedding_.dtype == np.float32 and est.resolved_params()["precision"] == "bf16"
    Z = torch.from_numpy(est.embedding_)
    assert (Z != Z.to(torch.bfloat16).float()).float().mean() > 0.9  # not bf16 values in float32
    fp32 = TSimCNE(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=8, width=2, device="cpu", precision="fp32",
                   random_state=0, verbose=False).fit(images)
    assert fp32.model_.amp_dtype is None and not np.array_equal(fp32.embedding_, est.embedding_)


# -- the budget ------------------------------------------------------------------

def test_parse_duration():
    assert [parse_duration(t) for t in ("15m", "90s", "1.5h", "1h30m", 42)] == [900, 90, 5400, 5400, 42]
    for bad in ("soon", "15 parsecs", "-1m", 0):
        with pytest.raises(MedcneError, match="budget"):
            parse_duration(bad)


def test_budget_scales_the_stages_in_proportion():
    template = tsimcne_stages((12, 1, 6), lr=0.06, warmup=(2, 0, 1), stage3_lr_factor=0.1)
    timing = StepTiming(step=0.5, first=0.5)
    # 10 steps per epoch: a full epoch 5 s, a stage-2 epoch 0.35 x 5 s. The template costs 91.75 s.
    stages = budget_stages(template, timing, n=1000, batch_size=100, seconds=367.0)
    assert [s.epochs for s in stages] == [48, 4, 24] and [s.warmup_epochs for s in stages] == [8, 0, 4]
    assert sum(s.epochs * 5.0 * (0.35 if s.train == "last" else 1) for s in stages) <= 367.0
    assert [s.lr for s in stages] == [s.lr for s in template]
    small = budget_stages(template, timing, n=1000, batch_size=100, seconds=12.0)
    assert [s.epochs for s in small] == [1, 1, 1]  # every stage keeps one epoch
    with pytest.raises(MedcneError, match="budget is too short.*`batch_size`.*fewer images") as caught:
        budget_stages(template, timing, n=1000, batch_size=100, seconds=10.0)
    # Numbers that add up: 10 s to train; one epoch of each stage 5 + 1.75 + 5 s (and the timing's start).
    assert "10 s of it are left to train" in str(caught.value)
    assert f"takes about {format_duration(11.75 + timing.warmup)} here (10 steps of 0.50 s" in str(caught.value)


def test_a_warm_up_as_long_as_its_template_stage_is_kept_in_epochs_not_scaled():
    # The paper's 10 warm-up epochs with a template of a few epochs (2,1,1): the template stage is all
    # warm-up, and scaled in proportion a long budget would warm up throughout and never anneal.
    template = tsimcne_stages((2, 1, 1), lr=0.06, warmup=(10, 0, 10))
    stages = budget_stages(template, StepTiming(step=0.5, first=0.5), n=1000, batch_size=100, seconds=300.0)
    assert [s.epochs for s in stages] == [35, 17, 17] and [s.warmup_epochs for s in stages] == [10, 0, 10]
    short = budget_stages(template, StepTiming(step=0.5, first=0.5), n=1000, batch_size=100, seconds=40.0)
    assert all(s.warmup_epochs <= s.epochs for s in short)


def test_compile_time_comes_out_of_the_budget():
    template = tsimcne_stages((10, 0, 10), lr=0.06)
    quick = budget_stages(template, StepTiming(step=1.0, first=1.0), n=10, batch_size=10, seconds=40)
    slow_start = budget_stages(template, StepTiming(step=1.0, first=21.0), n=10, batch_size=10, seconds=40)
    assert [s.epochs for s in quick] == [20, 0, 20] and [s.epochs for s in slow_start] == [10, 0, 10]


def _cost(stages, step=0.5, spe=10):
    return sum(s.epochs * step * spe * (0.35 if s.train == "last" else 1) for s in stages)


def test_replanning_follows_the_measured_speed():
    template = tsimcne_stages((12, 1, 6), lr=0.06, warmup=(2, 0, 1), stage3_lr_factor=0.1)
    planned = budget_stages(template, StepTiming(step=0.5, first=0.5), n=1000, batch_size=100, seconds=367.0)
    assert [s.epochs for s in planned] == [48, 4, 24]
    # After epoch 1 of stage 1 (still warming up: 8 warm-up epochs) steps turn out to take 0.4 s, not
    # 0.5 s, and 362 s are left: every stage is open and grows, warm-ups of later stages follow.
    faster = replan_stages(planned, planned, 0, 1, step=0.4, spe=10, seconds=362.0)
    assert [s.epochs for s in faster] == [59, 4, 29] and [s.warmup_epochs for s in faster] == [8, 0, 5]
    assert _cost(faster, 0.4) - 0.4 * 10 * 1 <= 362.0  # what is left to run fits the time left
    # Slower than timed: the stages shrink, the warming-up stage keeps its warm-up at least.
    slower = replan_stages(planned, planned, 0, 1, step=1.0, spe=10, seconds=50.0)
    assert [s.epochs for s in slower] == [8, 1, 1] and slower[0].warmup_epochs == 8
    # Past the warm-up the current stage is fixed (its cosine depends on its length); later ones are open.
    mid = replan_stages(planned, faster, 0, 20, step=0.4, spe=10, seconds=200.0)
    assert mid[0] == faster[0] and [s.epochs for s in mid] == [59, 1, 10]
    assert 39 * 4.0 + 1 * 1.4 + 10 * 4.0 <= 200.0  # stage 1's 39 epochs left, then stages 2 and 3
    # The last stage past its warm-up: nothing is open, nothing changes.
    assert replan_stages(planned, faster, 2, 10, step=0.1, spe=10, seconds=1e6) == faster
    # Stages without epochs stay without them.
    no_head = tsimcne_stages((10, 0, 10), lr=0.06)
    assert replan_stages(no_head, no_head, 0, 0, step=1.0, spe=1, seconds=40.0)[1].epochs == 0


def test_the_plan_measures_full_steps_only(monkeypatch):
    template = tsimcne_stages((12, 1, 6), lr=0.06, warmup=(2, 0, 1), stage3_lr_factor=0.1)
    clock = [1000.0]
    monkeypatch.setattr("medcne.train.budget.time.monotonic", lambda: clock[0])
    agreed = []
    plan = BudgetPlan(template, deadline=1100.0, steps_per_epoch=10, views_per_step=200,
                      agree=lambda stages: agreed.append(stages) or stages)
    # A stage-2 epoch (head only) says nothing about a full step: no measurement yet, no change.
    assert plan(1, 1, template, {"views_per_s": 4000.0}) == template and plan.step is None
    new = plan(0, 1, template, {"views_per_s": 400.0})  # 0.5 s per step, 100 s left
    assert plan.step == pytest.approx(0.5) and agreed == [new]
    assert new == replan_stages(template, template, 0, 1, 0.5, 10, 100.0)


def test_a_budget_run_records_the_schedule_it_ran(tmp_path, monkeypatch):
    from medcne.train import budget

    calls = []
    real = budget.replan_stages

    def spy(*args):
        out = real(*args)
        calls.append(out)
        return out

    monkeypatch.setattr(budget, "replan_stages", spy)
    data = np.random.default_rng(0).integers(0, 255, (64, 16, 16, 3), dtype=np.uint8)
    est = TSimCNE(epochs=(4, 1, 2), warmup=(2, 0, 1), batch_size=16, width=8, budget="20s", device="cpu",
                  checkpoint=tmp_path / "ck.pt", random_state=0, verbose=False).fit(data)
    assert calls, "the plan was consulted at the epochs' ends"
    assert est.stages_ == calls[-1]
    ran = [sum(1 for r in est.history_ if r["stage"] == i + 1) for i in range(3)]
    assert ran == [s.epochs for s in est.stages_]
    saved = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert [s["epochs"] for s in saved["record"]["resolved"]["stages"]] == ran


@pytest.mark.slow
def test_a_one_minute_budget_ends_within_a_minute(tmp_path, capsys):
    # The whole run (timing, training, placing 2,000 images, evaluation, files) after the data are read.
    t0 = time.monotonic()
    code = main(["fit", str(SAMPLE_PATH), "--out", str(tmp_path / "run"), "--budget", "1m", "--quick",
                 "--preset", "rotate", "--device", "cpu"])
    seconds = time.monotonic() - t0
    out = capsys.readouterr().out
    assert code == 0 and "time budget 60 s: epochs pretrain" in out
    assert seconds < 60 + 15, seconds  # start-up (imports, reading the sample) is not in the budget
    assert seconds > 40, seconds  # and the budget is used, not wasted


def test_machine_name_says_what_the_benchmarks_ran_on(monkeypatch):
    from medcne.device import machine_name

    with_flags(monkeypatch, {"avx512_bf16"})
    assert "with native bf16" in machine_name() and "cores" in machine_name()
    with_flags(monkeypatch, {"avx2"})
    assert "bf16" not in machine_name()
