"""CPU proxies for the GPU path: no host sync per step, capturable views, one compile, fp32 outputs.

A GPU runs fast only if the host never waits for it inside a training step. On
a CPU nothing waits, so these tests look at the operations themselves: a
``TorchDispatchMode`` sees every aten op of a few steady-state steps and flags
those that make CUDA synchronise (reading a value back, tensors made from
Python data, data-dependent output shapes, copies between devices). The CUDA
tests at the end check the same on a real GPU where one is present.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from medcne.augment import Augmenter
from medcne.augment.sampling import draw_uniforms
from medcne.datasets import from_array
from medcne.errors import DivergedError, MedcneError
from medcne.losses import cauchy_infonce, cosine_infonce
from medcne.models import TSimCNENet
from medcne.train import Generators, ImageStore, tsimcne_stages
from medcne.train.loop import Job, LossWatch, begin_stage, run_epoch

pytestmark = pytest.mark.usefixtures("one_torch_thread")
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Ops after which CUDA has to wait for the device, or which copy host data to it.
SYNCING = {
    "_local_scalar_dense", "item", "is_nonzero", "equal", "allclose",  # a value read back
    "lift_fresh", "lift_fresh_copy", "_tensor_from_list",  # torch.tensor(python data)
    "nonzero", "nonzero_static", "argwhere", "masked_select", "unique", "_unique", "_unique2",
    "unique_consecutive", "unique_dim", "bincount", "histc", "repeat_interleave",  # data-dependent shapes
}


class SyncAudit(TorchDispatchMode):
    """Records every op that would synchronise a CUDA device, by name."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in SYNCING:
            self.found.append(name)
        elif name == "index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else [])
            if i is not None
        ):
            self.found.append("index with a boolean mask")
        elif name in ("_to_copy", "copy_"):
            devices = {t.device.type for t in args if isinstance(t, torch.Tensor)}
            target = kwargs.get("device")
            if len(devices) > 1 or (target is not None and torch.device(target).type not in devices):
                self.found.append(f"{name} between devices")
        return func(*args, **(kwargs or {}))


def tiny_job(preset: str, n: int = 48, batch: int = 8, **aug) -> tuple[Job, torch.nn.Module]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
    gens = Generators.from_rng(np.random.default_rng(0), torch.device("cpu"))
    model = TSimCNENet("resnet18", 3, 2, True, 16, gens.init)
    # The torch engine is the GPU's; the kernel engine is CPU-only by design.
    augment = Augmenter(preset, fill=(0.5, 0.5, 0.5), engine="torch", **aug)
    store = ImageStore(from_array(images), torch.device("cpu"))
    return Job(model, store, batch, augment, cauchy_infonce, gens), model


def audited_epoch(job: Job, stage) -> list[str]:
    optimizer = begin_stage(job.model, stage, job.generators, fresh=True)
    job.model.train()
    run_epoch(job, optimizer, stage, 0)  # warm-up: optimiser state, caches
    with SyncAudit() as audit:
        run_epoch(job, optimizer, stage, 1)
    return audit.found


@pytest.mark.parametrize("preset,options", [
    ("simclr", {}), ("rot90", {}), ("rotate", {}), ("rotate", {"crop": False}), ("rot90", {"crop": False}),
    ("simclr", {"jitter": False, "grayscale": False}),
])
def test_no_host_sync_in_a_training_step(preset, options):
    # Two epochs of different lengths: whatever syncs per epoch (one read of the summed loss)
    # must not grow with the number of steps, and nothing else may sync.
    short, _ = tiny_job(preset, n=24, **options)
    long, _ = tiny_job(preset, n=72, **options)
    stage = tsimcne_stages((2, 1, 2), lr=0.01)[0]
    per_epoch_short, per_epoch_long = audited_epoch(short, stage), audited_epoch(long, stage)
    assert per_epoch_short == per_epoch_long == ["_local_scalar_dense"], (per_epoch_short, per_epoch_long)


def test_no_host_sync_in_stage2_and_stage3():
    job, model = tiny_job("rotate")
    stages = tsimcne_stages((1, 1, 1), lr=0.01)
    for stage in stages:
        assert audited_epoch(job, stage) == ["_local_scalar_dense"], stage.name


def test_the_audit_catches_syncing_ops():
    with SyncAudit() as audit:
        x = torch.arange(6.0)
        float(x.sum())  # .item()
        torch.tensor([1.0, 2.0])  # from Python data
        x[x > 2]  # boolean mask
        torch.bincount(torch.tensor([0, 1]))
    assert {"_local_scalar_dense", "lift_fresh", "index with a boolean mask", "bincount"} <= set(audit.found)


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
    with pytest.raises(MedcneError, match="made on cuda.*--device cuda"):
        Generators.from_rng(np.random.default_rng(1), torch.device("cpu")).load_state_dict(state)
    # A checkpoint without device names whose state does not fit (a CUDA state is 16 bytes).
    state = gens.state_dict()
    del state["devices"]
    state["batch"] = torch.zeros(16, dtype=torch.uint8)
    with pytest.raises(MedcneError, match="does not fit"):
        Generators.from_rng(np.random.default_rng(1), torch.device("cpu")).load_state_dict(state)


def test_cuda_path_uses_fused_sgd_and_bf16_backbone():
    # The device contract, checked on the CPU by asking for what CUDA would get.
    from medcne.train.loop import make_optimizer, prepare_model

    stage = tsimcne_stages((1, 1, 1))[0]
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert make_optimizer(params, stage, "cuda").defaults["fused"] is True
    assert not make_optimizer(params, stage, "cpu").defaults["fused"]
    model = TSimCNENet("resnet18", 3, 2, True, 2, torch.Generator().manual_seed(0))
    prepare_model(model, torch.device("cpu"))
    assert model.amp_dtype is None


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
    job, model = tiny_job(preset)
    device = torch.device("cuda")
    job.store = ImageStore(from_array(job.store.images.permute(0, 2, 3, 1).numpy()), device)
    job.generators = Generators.from_rng(np.random.default_rng(0), device)
    job.augment = Augmenter(preset, fill=(0.5, 0.5, 0.5))
    from medcne.train.loop import prepare_model

    prepare_model(model, device)
    stage = tsimcne_stages((2, 1, 2), lr=0.01)[0]
    optimizer = begin_stage(model, stage, job.generators, fresh=True)
    run_epoch(job, optimizer, stage, 0)
    from medcne.train.loop import contrastive_step

    # The epoch's order and the one read of its loss are per epoch; the steps must not sync.
    order = torch.randperm(len(job.store), generator=job.generators.batch, device=device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for s in range(job.steps_per_epoch):
            batch = job.store.batch(order[s * 8 : (s + 1) * 8])
            views = job.augment(torch.cat([batch, batch]), job.generators.augment)
            loss = contrastive_step(model, views.contiguous(memory_format=torch.channels_last), cauchy_infonce)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)


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

    graphs = count_compiles(monkeypatch)
    images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    est = TSimCNE(epochs=(2, 1, 2), warmup=(0, 0, 0), batch_size=16, width=4, device="cuda", compile=True,
                  random_state=0, verbose=True).fit(images)
    assert len(graphs) == 1
    assert est.embedding_.dtype == np.float32 and np.isfinite(est.embedding_).all()
    assert est.model_.last_layer.weight.dtype == torch.float32


@pytest.mark.slow
def test_gpu_checks_script_runs_its_sections_on_the_cpu(tmp_path):
    # bench/gpu_checks.py gets one call on a GPU machine: its code paths are exercised here
    # at toy sizes (--proxy), so that call is not spent on a typo.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_checks.py"
    spec = importlib.util.spec_from_file_location("gpu_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import sys

    argv = sys.argv
    sys.argv = ["gpu_checks.py", "--proxy", "--seconds", "0.05", "--epochs", "1", "--out", str(tmp_path)]
    try:
        assert module.main() == 0
    finally:
        sys.argv = argv
    text = (tmp_path / "gpu_checks.md").read_text()
    assert "FAILED" not in text, text
    for heading in ("## 1. Augmentation", "## 2. Loop vs model only", "## 3. Host syncs", "## 4. Three-stage fit"):
        assert heading in text
    assert "projected paper schedule" in text and "map dtype float32, finite True" in text
