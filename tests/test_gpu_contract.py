"""CPU proxies for the GPU path: no host sync per step, capturable views, one compile, fp32 outputs.

A GPU runs fast only if the host never waits for it inside a training step. On
a CPU nothing waits, so these tests look at the operations themselves: a
sync audit (:mod:`medcne.train.syncaudit`, run on the real loop in tests/test_syncaudit.py) flags
those that make CUDA synchronise (reading a value back, tensors made from
Python data, data-dependent output shapes, copies between devices). The CUDA
tests at the end check the same on a real GPU where one is present.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcne.augment import Augmenter
from medcne.augment.sampling import draw_uniforms
from medcne.datasets import from_array
from medcne.errors import DivergedError, MedcneError
from medcne.losses import cauchy_infonce, cosine_infonce
from medcne.models import TSimCNENet
from medcne.train import Generators, ImageStore, tsimcne_stages
from medcne.train.loop import Job, LossWatch, begin_stage, run_epoch
from medcne.train.syncaudit import SyncAudit, audit_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

def tiny_job(preset: str, n: int = 48, batch: int = 8, **aug) -> tuple[Job, torch.nn.Module]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
    gens = Generators.from_rng(np.random.default_rng(0), torch.device("cpu"))
    model = TSimCNENet("resnet18", 3, 2, True, 16, gens.init)
    # The torch engine is the GPU's; the kernel engine is CPU-only by design.
    augment = Augmenter(preset, fill=(0.5, 0.5, 0.5), engine="torch", **aug)
    store = ImageStore(from_array(images), torch.device("cpu"))
    return Job(model, store, batch, augment, cauchy_infonce, gens), model


def test_the_audit_catches_syncing_ops():
    # The audit of the real training loop is tests/test_syncaudit.py; here, single ops.
    x = torch.arange(6.0)  # made before the audit: a device tensor
    with SyncAudit() as audit:
        float(x.sum())  # .item()
        x[x > 2]  # boolean mask
        torch.bincount(x.long())
        torch.tensor([1.0, 2.0], device=x.device)  # from Python data
    assert [s.kind for s in audit.found] == ["value read", "boolean-mask indexing", "data-dependent shape",
                                             "host data copied to the device"]


@pytest.mark.parametrize("preset", ["simclr", "rot90", "rotate"])
@pytest.mark.parametrize("options", [{}, {"crop": False}, {"jitter": False}, {"grayscale": False}])
@pytest.mark.parametrize("channels,size", [(3, (12, 12)), (1, (10, 14))])
def test_views_trace_as_one_graph(preset, options, channels, size):
    # What torch.compile(fullgraph=True) needs, and what lets CUDA graphs capture the views.
    aug = Augmenter(preset, fill=(0.4,) * channels, engine="torch", **options)
    x = torch.randint(0, 256, (6, channels, *size), dtype=torch.uint8)
    u = draw_uniforms(aug.config, 6, torch.Generator().manual_seed(0), x.device)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(aug.views_from_uniforms)(x, u, *aug.constants(x))
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    torch.testing.assert_close(aug.views_from_uniforms(x, u, *aug.constants(x)),
                               Augmenter(preset, fill=(0.4,) * channels, engine="torch", **options)(
                                   x, torch.Generator().manual_seed(0)))


def test_compiled_views_equal_eager_views():
    aug = Augmenter("rotate", fill=(0.5, 0.5, 0.5), engine="torch", compile=True)
    eager = Augmenter("rotate", fill=(0.5, 0.5, 0.5), engine="torch")
    x = torch.randint(0, 256, (4, 3, 10, 10), dtype=torch.uint8)
    counted = []

    def backend(gm, example_inputs):
        counted.append(gm)
        return gm.forward

    aug._compiled = torch.compile(aug.views_from_uniforms, backend=backend, fullgraph=True)
    for seed in (0, 1):
        torch.testing.assert_close(aug(x, torch.Generator().manual_seed(seed)),
                                   eager(x, torch.Generator().manual_seed(seed)))
    assert len(counted) == 1


def count_compiles(monkeypatch) -> list:
    """Make the training's torch.compile use a backend that records each graph it is handed."""
    from medcne.train import loop

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    monkeypatch.setattr(loop, "COMPILE_BACKEND", counting)
    torch._dynamo.reset()
    return graphs


def test_one_compile_per_run(monkeypatch):
    # Stage 2 changes requires_grad and stage 3 the head's size: with the backbone compiled
    # once and stage 2 run eagerly, the whole fit (timing included) compiles one graph.
    from medcne import TSimCNE

    graphs = count_compiles(monkeypatch)
    images = np.random.default_rng(0).integers(0, 256, (24, 12, 12, 3), dtype=np.uint8)
    est = TSimCNE(epochs=(2, 1, 2), warmup=(0, 0, 0), batch_size=8, width=2, device="cpu", compile=True,
                  random_state=0, verbose=True).fit(images)
    assert len(graphs) == 1 and np.isfinite(est.embedding_).all()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["simclr", "rot90", "rotate"])
def test_compile_compiles_the_augmentation_once_per_run(monkeypatch, preset):
    # --compile: the views are one graph, traced once, whatever the stage (the batch shape is the same).
    from medcne import TSimCNE
    from medcne.augment import augmenter

    backbone_graphs, views = count_compiles(monkeypatch), []

    def counting(gm, example_inputs):
        views.append(gm)
        return gm.forward

    monkeypatch.setattr(augmenter, "COMPILE_BACKEND", counting)
    torch._dynamo.utils.counters.clear()
    monkeypatch.setattr(augmenter, "use_kernel", lambda engine, device: False)  # the engine a GPU runs
    images = np.random.default_rng(0).integers(0, 256, (24, 12, 12, 3), dtype=np.uint8)
    TSimCNE(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=8, width=2, device="cpu", compile=True, preset=preset,
            random_state=0, verbose=False).fit(images)
    assert len(views) == 1 and len(backbone_graphs) == 1
    assert torch._dynamo.utils.counters["recompiles"] == {}


def test_head_and_map_stay_float32_under_autocast():
    model = TSimCNENet("resnet18", 3, 4, True, 2, torch.Generator().manual_seed(0)).eval()
    model.amp_dtype = torch.bfloat16  # what a GPU (or a bf16 CPU) uses for the backbone
    x = torch.rand(16, 3, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # even inside a caller's autocast
        z = model(x)
    assert z.dtype == torch.float32
    assert model.forward_features(x).dtype == torch.float32
    # Not bf16 values stored in float32: most outputs carry more than 8 significant bits.
    assert (z != z.to(torch.bfloat16).float()).float().mean() > 0.9


def test_embedding_is_float32_with_a_bf16_backbone():
    from medcne import TSimCNE

    images = np.random.default_rng(1).integers(0, 256, (20, 12, 12, 3), dtype=np.uint8)
    est = TSimCNE(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=10, width=2, device="cpu",
                  random_state=0, verbose=False).fit(images)
    est.model_.amp_dtype = torch.bfloat16
    Z = est.transform(images)
    assert Z.dtype == np.float32 and (Z != Z.astype(np.float32).round(2)).mean() > 0.5
    assert (torch.from_numpy(Z) != torch.from_numpy(Z).to(torch.bfloat16).float()).float().mean() > 0.9


def test_loss_watch_reads_without_waiting():
    watch = LossWatch(torch.device("cpu"))
    assert watch.poll() == (0, 0.0)  # starts a copy; nothing has arrived yet
    for v in (1.0, 2.0):
        watch.add(torch.tensor(v))
    assert watch.poll() == (0, 0.0)  # the copy of step 0 arrives now
    assert watch.poll() == (2, 3.0)


def test_a_non_finite_loss_stops_training_within_a_few_steps():
    job, model = tiny_job("simclr", n=80)
    steps = []

    def loss(z):
        steps.append(1)
        return cauchy_infonce(z) * (float("nan") if len(steps) >= 3 else 1.0)

    job.loss_fn = loss
    stage = tsimcne_stages((1, 1, 1), lr=0.01)[0]
    optimizer = begin_stage(model, stage, job.generators, fresh=True)
    with pytest.raises(DivergedError, match=r"stage 'pretrain', epoch 1.*lower the learning rate"):
        run_epoch(job, optimizer, stage, 0)
    assert len(steps) <= 4  # of 10 steps in the epoch


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    from medcne import TSimCNE
    from medcne.train.checkpoint import load_checkpoint

    images = np.random.default_rng(2).integers(0, 256, (32, 12, 12, 3), dtype=np.uint8)
    ckpt = tmp_path / "checkpoint.pt"
    TSimCNE(epochs=(1, 0, 0), warmup=(0, 0, 0), batch_size=8, width=2, device="cpu", random_state=0,
            verbose=False, checkpoint=ckpt).fit(images)
    good = load_checkpoint(ckpt)["model"]
    with pytest.raises(DivergedError, match="learning rate"):
        TSimCNE(epochs=(3, 0, 0), warmup=(0, 0, 0), batch_size=8, width=2, lr=1e12, device="cpu",
                random_state=0, verbose=False, checkpoint=ckpt, checkpoint_minutes=0).fit(images)
    after = load_checkpoint(ckpt)["model"]
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_monitor_refuses_to_checkpoint_a_non_finite_model(tmp_path):
    from medcne.train.monitor import check_finite_model

    model = TSimCNENet("resnet18", 3, 2, True, 2, torch.Generator().manual_seed(0))
    check_finite_model(model, type("P", (), {"stage": 0, "epoch": 1})())
    with torch.no_grad():
        model.head[0].weight[0, 0] = float("inf")
    with pytest.raises(DivergedError):
        check_finite_model(model, type("P", (), {"stage": 0, "epoch": 1})())


def test_resume_on_another_device_type_is_one_line():
    gens = Generators.from_rng(np.random.default_rng(0), torch.device("cpu"))
    state = gens.state_dict()
    state["devices"]["augment"] = "cuda"
    with pytest.raises(MedcneError, match="made on cuda.*`device` cuda"):
        Generators.from_rng(np.random.default_rng(1), torch.device("cpu")).load_state_dict(state)
    # A checkpoint without device names whose state does not fit (a CUDA state is 16 bytes).
    state = gens.state_dict()
    del state["devices"]
    state["batch"] = torch.zeros(16, dtype=torch.uint8)
    with pytest.raises(MedcneError, match="does not fit"):
        Generators.from_rng(np.random.default_rng(1), torch.device("cpu")).load_state_dict(state)


def test_cuda_path_uses_fused_sgd_and_bf16_backbone(monkeypatch):
    # The device contract, checked on the CPU by asking for what CUDA would get.
    from medcne import device as devices
    from medcne.train.loop import make_optimizer, prepare_model

    stage = tsimcne_stages((1, 1, 1))[0]
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert make_optimizer(params, stage, "cuda").defaults["fused"] is True
    assert not make_optimizer(params, stage, "cpu").defaults["fused"]
    # A GPU with bf16 (every one since Ampere): 'auto' resolves to bf16, and the backbone runs in it.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    precision = devices.resolve_precision("auto", torch.device("cuda"))
    assert precision == "bf16"
    model = TSimCNENet("resnet18", 3, 2, True, 2, torch.Generator().manual_seed(0))
    prepare_model(model, torch.device("cpu"), precision)
    assert model.amp_dtype is torch.bfloat16
    seen = {}
    model.backbone.stem[0].register_forward_hook(lambda m, i, o: seen.update(conv=o.dtype))
    z = model(torch.rand(4, 3, 12, 12))
    assert seen["conv"] is torch.bfloat16 and z.dtype is torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.resolve_precision("auto", torch.device("cuda")) == "fp32"


def test_cosine_loss_is_sync_free_too():
    z = torch.randn(8, 4)
    with SyncAudit() as audit:
        cosine_infonce(z)
        cauchy_infonce(z)
    assert audit.found == []


# -- on a real GPU -----------------------------------------------------------------

@cuda_only
@pytest.mark.parametrize("preset", ["simclr", "rot90", "rotate"])
def test_cuda_steady_steps_do_not_sync(preset):
    # The real fit, all stages, under PyTorch's own sync warnings; and the same under the CPU model.
    from medcne import TSimCNE

    images = np.random.default_rng(0).integers(0, 256, (96, 16, 16, 3), dtype=np.uint8)
    for kind in ("cuda", "model"):
        with audit_training(kind) as audit:
            TSimCNE(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=16, width=4, device="cuda", preset=preset,
                    random_state=0, verbose=False).fit(images)
        assert audit.judged() == 3 * 4 and audit.step_syncs() == [], (kind, audit.summary())


@cuda_only
@pytest.mark.parametrize("preset", ["simclr", "rot90", "rotate"])
def test_cuda_views_trace_as_one_graph(preset):
    aug = Augmenter(preset, fill=(0.4, 0.4, 0.4))
    x = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8, device="cuda")
    u = draw_uniforms(aug.config, 6, torch.Generator("cuda").manual_seed(0), x.device)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(aug.views_from_uniforms)(x, u, *aug.constants(x))
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


@cuda_only
def test_cuda_three_stages_one_compile_fp32_map(monkeypatch):
    from medcne import TSimCNE
    from medcne.augment import augmenter

    graphs, views = count_compiles(monkeypatch), []
    monkeypatch.setattr(augmenter, "COMPILE_BACKEND", lambda gm, example_inputs: (views.append(gm), gm.forward)[1])
    images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    est = TSimCNE(epochs=(2, 1, 2), warmup=(0, 0, 0), batch_size=16, width=4, device="cuda", compile=True,
                  random_state=0, verbose=True).fit(images)
    assert len(graphs) == 1 and len(views) == 1  # the backbone and the views (torch engine on CUDA), once each
    assert est.embedding_.dtype == np.float32 and np.isfinite(est.embedding_).all()
    assert est.model_.last_layer.weight.dtype == torch.float32


def run_gpu_checks(tmp_path, *args, py: str | None = None):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_checks.sh"
    env = {**os.environ, "OUT": str(tmp_path), "PY": py or sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout.strip().splitlines(), (tmp_path / "verdicts.txt").read_text().splitlines()


@pytest.mark.slow
def test_gpu_checks_without_a_gpu_skip_each_section_in_one_line_and_exit_0(tmp_path):
    rc, lines, verdicts = run_gpu_checks(tmp_path)
    assert rc == 0 and lines[-1].startswith("NOT RUN: no CUDA GPU"), lines
    assert verdicts == [f"SKIP {s}: skipped: no CUDA GPU on this machine"
                        for s in ("projection", "syncs", "loop", "augment", "the CUDA tests green")]


def test_gpu_checks_end_in_fail_and_a_non_zero_exit_when_a_section_breaks(tmp_path):
    rc, lines, verdicts = run_gpu_checks(tmp_path, "--proxy", py="false")  # every python call fails
    assert rc == 1 and lines[-1] == "FAIL: projection;syncs;loop;augment;the CUDA tests green", lines
    assert verdicts[0] == "FAIL projection: exit 1 (see above)"


@pytest.mark.slow
def test_gpu_checks_proxy_runs_every_section_on_the_cpu(tmp_path):
    # bench/gpu_checks.sh gets one call on a GPU machine: every section's code runs here at toy sizes
    # (--proxy), so that call is not spent on a typo; only the sync audit (a model of a GPU) is judged.
    rc, lines, verdicts = run_gpu_checks(tmp_path, "--proxy")
    text = (tmp_path / "gpu_checks.md").read_text()
    assert rc == 0 and lines[-1].startswith("PROXY OK"), text
    for heading in ("## 1. Three-stage fit", "## 2. Host syncs", "## 3. Loop vs model only", "## 4. Augmentation",
                    "## 5. CUDA tests"):
        assert heading in text
    assert [v.split(":")[0] for v in verdicts] == [
        "SKIP projection <= 15 min", "PASS float32 finite map", "PASS 0 syncs per step in every preset and stage",
        "SKIP loop/model >= 0.95", "SKIP >= 1M compiled views/s at 28 px", "SKIP the CUDA tests green"]
    assert text.count("syncs per steady step") == 9  # 3 presets x 3 stages
