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
from medcne.errors import MedcneError
from medcne.train import tsimcne_stages
from medcne.train.duration import StepTiming, budget_stages, parse_duration

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
        with pytest.raises(MedcneError, match="no native bf16.*--precision auto"):
            resolve_precision("bf16", CPU)
    else:
        assert resolve_precision("bf16", CPU) == "bf16"


def test_bf16_on_a_cpu_without_it_is_one_line(monkeypatch, tmp_path, capsys):
    with_flags(monkeypatch, {"avx2"})
    out = tmp_path / "run"
    code = main(["fit", str(SAMPLE_PATH), "--out", str(out), "--subset", "40", "--precision", "bf16",
                 "--epochs", "1,0,0", "--width", "2", "--batch-size", "8", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--precision auto" in err
    assert not out.exists()


def test_precision_is_validated():
    with pytest.raises(MedcneError, match="precision must be one of"):
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
    with pytest.raises(MedcneError, match="budget is too short.*--subset"):
        budget_stages(template, timing, n=1000, batch_size=100, seconds=10.0)


def test_compile_time_comes_out_of_the_budget():
    template = tsimcne_stages((10, 0, 10), lr=0.06)
    quick = budget_stages(template, StepTiming(step=1.0, first=1.0), n=10, batch_size=10, seconds=40)
    slow_start = budget_stages(template, StepTiming(step=1.0, first=21.0), n=10, batch_size=10, seconds=40)
    assert [s.epochs for s in quick] == [20, 0, 20] and [s.epochs for s in slow_start] == [10, 0, 10]


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
