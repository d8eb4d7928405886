"""The sync audit: it runs the real training loop (through ``TSimCNE.fit``), passes on it, and fails
on every kind of host sync planted into a step (the tests of the audit itself)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from medcne import TSimCNE
from medcne.train import loop
from medcne.train.store import ImageStore
from medcne.train.syncaudit import SyncAudit, audit_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PRESETS = ("simclr", "rot90", "rotate")


def images(n: int = 24, size: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def audited_fit(epochs=(1, 0, 0), n: int = 24, **params):
    """A fit of 3 steps per epoch (a steady step in each) under the audit."""
    kw = dict(epochs=epochs, warmup=0 if isinstance(epochs, int) else (0, 0, 0), batch_size=8, width=2, device="cpu", random_state=0,
              verbose=False, **params)
    with audit_training() as audit:
        est = TSimCNE(**kw).fit(images(n))
    return audit, est


@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.slow) if p != "rotate" else p
                                    for p in PRESETS])
def test_the_real_loop_is_sync_free_in_every_stage(preset):
    audit, est = audited_fit((1, 1, 1), preset=preset)
    assert [e.stage for e in audit.epochs] == ["pretrain", "head", "finetune"]
    assert audit.judged() == 6 and audit.step_syncs() == [], audit.summary()
    for e in audit.epochs:
        assert e.setup == []  # nothing per epoch before the first step either
        assert [s.op for s in e.end] == ["_local_scalar_dense"]  # the one read of the epoch's loss
        assert "run_epoch" in e.end[0].where
    assert np.isfinite(est.embedding_).all()


@pytest.mark.parametrize("switch", ["crop", "jitter", "grayscale"])
def test_the_ablations_are_sync_free_too(switch):
    audit, _ = audited_fit(preset="rotate", **{switch: False})
    assert audit.judged() == 2 and audit.step_syncs() == [], audit.summary()


@pytest.mark.slow
def test_the_real_loop_is_sync_free_under_a_time_budget():
    # A budget times steps first and re-plans between epochs: neither may reach into a step.
    audit, est = audited_fit((3, 1, 2), n=32, budget="11s", preset="rotate")
    assert audit.judged() >= 3 and audit.step_syncs() == [], audit.summary()
    assert {e.stage for e in audit.epochs} == {"pretrain", "head", "finetune"}


def plant_in_loss_watch(monkeypatch, plant) -> None:
    add = loop.LossWatch.add

    def planted(self, loss):
        add(self, loss)
        plant(self.total)

    monkeypatch.setattr(loop.LossWatch, "add", planted)


PLANTS = {
    # the two syncs the review planted in train/loop.py, and one of each kind a CPU run hides
    "loss read in LossWatch.add": (lambda t: float(t.cpu().numpy()), "device values to the host"),
    ".item()": (lambda t: t.item(), "value read"),
    ".cpu()": (lambda t: t.cpu(), "device values to the host"),
    ".tolist()": (lambda t: t.reshape(1).tolist(), "device values to the host"),
    "print": (lambda t: print(t, file=io.StringIO()), "device values to the host"),
    "f-string": (lambda t: f"{t:.3f}", "device values to the host"),
    '.to("cpu")': (lambda t: t.to("cpu"), "device-to-host copy"),
    "multinomial": (lambda t: torch.multinomial(t.abs().reshape(1) + 1, 1), "data-dependent shape"),
    "boolean mask set": (lambda t: t.reshape(1).clone().__setitem__(t.reshape(1) > 1e9, 0.0),
                         "boolean-mask indexing"),
    "nonzero": (lambda t: t.reshape(1).nonzero(), "data-dependent shape"),
    "torch.tensor(device=)": (lambda t: torch.tensor([1.0], device=t.device), "host data copied to the device"),
}


@pytest.mark.parametrize("name", list(PLANTS))
def test_each_planted_sync_fails_the_audit(monkeypatch, name):
    plant, kind = PLANTS[name]
    plant_in_loss_watch(monkeypatch, plant)
    audit, _ = audited_fit()
    found = audit.step_syncs()
    assert found, f"the audit missed {name}"
    assert {s.kind for _, _, s in found} == {kind}, found
    assert all(stage == "pretrain" for stage, _, _ in found)


def test_a_cpu_randperm_copied_to_the_device_each_step_fails_the_audit(monkeypatch):
    batch = ImageStore.batch

    def planted(self, indices):  # a new order drawn on the host at every step
        host = torch.randperm(len(self))[: len(indices)]
        return batch(self, host.to(self.device))

    monkeypatch.setattr(ImageStore, "batch", planted)
    audit, _ = audited_fit()
    assert {(s.kind, s.op) for _, _, s in audit.step_syncs()} == {("host tensor in a device op", "index")}


def test_a_per_step_sync_in_one_stage_only_is_found_in_that_stage(monkeypatch):
    step = loop.contrastive_step

    def planted(model, views, loss_fn, gather=None, backbone=None, frozen=False):
        if frozen:  # stage 2 only
            float(views.mean())
        return step(model, views, loss_fn, gather, backbone, frozen)

    monkeypatch.setattr(loop, "contrastive_step", planted)
    audit, _ = audited_fit((1, 1, 1))
    assert {stage for stage, _, _ in audit.step_syncs()} == {"head"}


def test_host_tensors_are_free_to_read_and_known_ones_can_be_named():
    device_side = torch.arange(4.0)  # existed before the audit: on the device
    named_host = torch.ones(3)
    with SyncAudit(host=[named_host]) as audit:
        made_here = torch.zeros(3)  # no device=: the host
        float(made_here.sum()), made_here.tolist(), named_host.numpy()
        on_device = torch.zeros(3, device=device_side.device)
        pinned = torch.zeros(())
        pinned.copy_(device_side.sum(), non_blocking=True)  # an asynchronous copy: no wait
        float(pinned.numpy())
    assert audit.found == []
    with SyncAudit() as audit:
        on_device.sum().item()
        made_here = torch.zeros(4)
        device_side + made_here  # a host tensor in a device op: an implicit copy
        made_here.copy_(device_side)  # a blocking copy to the host
    assert [s.kind for s in audit.found] == ["value read", "host tensor in a device op", "device-to-host copy"]


def test_the_audit_restores_what_it_patched():
    from medcne.augment import augmenter

    before = (loop.run_epoch, loop.make_optimizer, augmenter.use_kernel)
    with audit_training():
        assert loop.run_epoch is not before[0] and augmenter.use_kernel is not before[2]
    assert (loop.run_epoch, loop.make_optimizer, augmenter.use_kernel) == before


def test_the_cuda_kind_files_pytorchs_sync_warnings_by_step(monkeypatch):
    # On a GPU, torch.cuda.set_sync_debug_mode("warn") warns at each sync; here the warnings are
    # planted (and the CUDA calls made no-ops) to check that they land in the steps they came from.
    import warnings

    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    plant_in_loss_watch(monkeypatch, lambda t: warnings.warn("called a synchronizing CUDA operation", stacklevel=2))
    kw = dict(epochs=(1, 1, 0), warmup=(0, 0, 0), batch_size=8, width=2, device="cpu", random_state=0,
              verbose=False)
    with audit_training("cuda") as audit:
        TSimCNE(**kw).fit(images(24))
    assert modes == ["warn", 0, "warn", 0]  # on for each epoch, off after it
    assert audit.judged() == 4 and len(audit.step_syncs()) == 4  # one in each steady step
    assert {s.kind for _, _, s in audit.step_syncs()} == {"CUDA sync"}
    assert all(len(e.end) == 1 for e in audit.epochs)  # the last step's add, after its optimiser step
