"""Host syncs of the real training loop, seen on any machine: what would make a GPU wait.

A GPU trains fast only if the host never waits for it inside a step. On a CPU
nothing waits, so :class:`SyncAudit` models where each tensor would live on a
GPU and flags every operation that would move a device tensor's data to the
host or read its values:

* a tensor is a *device* tensor unless the code made it on the host: a factory
  (``torch.zeros``, ``torch.randperm``...) called without ``device=``,
  ``torch.from_numpy``, ``.cpu()``, ``.pin_memory()``; anything that existed
  before the audit started (model, data store, optimiser state) is on the
  device, as on a GPU. Results of operations follow their inputs.
* flagged: value reads (``.item()``, ``float()``, ``bool()``: ``_local_scalar_dense``),
  ``.cpu()``, ``.numpy()``, ``.tolist()``, ``print``/``repr``/``format`` of a
  tensor, ``.to("cpu")``, blocking copies between host and device (either
  way), host tensors used in a device operation (an implicit copy),
  ``torch.tensor(data, device=...)``, operations whose output shape depends on
  values (``nonzero``, boolean-mask indexing and ``index_put_``, ``unique``...)
  and ``torch.multinomial``.

:func:`audit_training` runs it around every epoch of :func:`medcne.train.loop.train`
(so through the public ``TSimCNE(...).fit``) and cuts each epoch into steps at
``optimizer.step()``: what happens between two steps is a whole steady step, and
must flag nothing. The epoch's first step (with the epoch's set-up) and what
follows its last step (the one read of the epoch's summed loss) are reported
apart. On a CUDA machine, :func:`cuda_sync_warnings` records PyTorch's own sync
warnings into the same steps.

Limit: on a CPU, the training device and the host are both ``cpu``, so
``.to(device)`` cannot tell one from the other; ``.to`` is flagged when it names
the host as the string ``"cpu"`` (the loop names devices by ``torch.device``).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Output shapes that depend on values: CUDA computes them, then the host waits for the size.
DATA_DEPENDENT = {
    "nonzero", "nonzero_static", "argwhere", "masked_select", "unique", "_unique", "_unique2",
    "unique_consecutive", "unique_dim", "bincount", "histc", "repeat_interleave", "multinomial",
    "is_nonzero", "equal", "allclose",
}
# Tensor methods that hand a tensor's values to Python.
TO_PYTHON = {"numpy", "tolist", "__array__", "__repr__", "__str__", "__format__", "cpu"}
HOST_FACTORIES = {"from_numpy", "frombuffer", "pin_memory"}
_PACKAGE = str(Path(__file__).resolve().parents[1])


@dataclass(frozen=True)
class Sync:
    """One flagged operation: what it is, the op, and the innermost line of medcne (or the caller)."""

    kind: str
    op: str
    where: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.op}) at {self.where}"


class _Places:
    """Which storages live on the host; everything else is on the device."""

    def __init__(self):
        self.host: set[int] = set()

    def is_device(self, t: torch.Tensor) -> bool:
        return _ptr(t) not in self.host

    def mark(self, outputs, device: bool) -> None:
        for t in _tensors(outputs):
            p = _ptr(t)
            if p:
                (self.host.discard if device else self.host.add)(p)


class SyncAudit:
    """Context manager: records, in :attr:`found`, every op that would make a GPU host wait.

    ``host``: tensors that already live on the host when the audit starts
    (everything else that exists then is taken to be on the device).
    """

    def __init__(self, host=()):
        self.found: list[Sync] = []
        self.places = _Places()
        self.places.mark(list(host), device=False)
        self.quiet = 0  # > 0 while a flagged Python-level call runs its own ops
        self._modes = (_FunctionLevel(self), _DispatchLevel(self))

    def flag(self, kind: str, op: str) -> None:
        if not self.quiet:
            self.found.append(Sync(kind, op, _where()))

    def take(self) -> list[Sync]:
        """The syncs found since the last call."""
        out, self.found = self.found, []
        return out

    def __enter__(self) -> SyncAudit:
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for m in reversed(self._modes):
            m.__exit__(*exc)


class _FunctionLevel(TorchFunctionMode):
    """Python-level calls: where a factory puts its result, and reads into Python."""

    def __init__(self, audit: SyncAudit):
        super().__init__()
        self.audit = audit

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        audit, name = self.audit, getattr(func, "__name__", str(func))
        inputs = _tensors((args, kwargs))
        on_device = any(audit.places.is_device(t) for t in inputs)
        target = _target(name, args, kwargs)
        if on_device and name in TO_PYTHON:
            audit.flag("device values to the host", name)
        elif on_device and target == "host" and not kwargs.get("non_blocking", False):
            audit.flag("device-to-host copy", name)
        elif name in ("tensor", "as_tensor") and kwargs.get("device") is not None and not inputs:
            audit.flag("host data copied to the device", name)
        loud = not (on_device and name in TO_PYTHON)
        audit.quiet += not loud
        try:
            out = func(*args, **kwargs)
        finally:
            audit.quiet -= not loud
        if name in HOST_FACTORIES or target == "host":
            if not {_ptr(t) for t in _tensors(out)} & {_ptr(t) for t in inputs}:  # not a no-op on a CPU
                audit.places.mark(out, device=False)
        elif not inputs and name != "to":  # a factory: where the code asked for it
            audit.places.mark(out, device=kwargs.get("device") is not None)
        return out


class _DispatchLevel(TorchDispatchMode):
    """Every aten op (backward and optimiser included): value reads, data-dependent shapes, copies."""

    def __init__(self, audit: SyncAudit):
        super().__init__()
        self.audit = audit

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        audit, name = self.audit, func.overloadpacket.__name__
        places = audit.places
        inputs = _tensors((args, kwargs))
        device = [t for t in inputs if places.is_device(t)]
        host = [t for t in inputs if not places.is_device(t) and t.ndim > 0]  # 0-dim: a scalar, passed by value
        if name == "_local_scalar_dense" and device:
            audit.flag("value read", name)
        elif name in DATA_DEPENDENT and device:
            audit.flag("data-dependent shape", name)
        elif name in ("index", "index_put", "index_put_") and device and _bool_index(args):
            audit.flag("boolean-mask indexing", name)
        elif name == "copy_":
            _check_copy(audit, args, kwargs)
        elif device and host:
            audit.flag("host tensor in a device op", name)
        out = func(*args, **kwargs)
        if name != "copy_":  # a copy's destination stays where it is
            places.mark(out, device=bool(device) or not inputs)
        return out


def _check_copy(audit: SyncAudit, args, kwargs) -> None:
    dst, src = args[0], args[1]
    if not isinstance(src, torch.Tensor) or src.ndim == 0 and not audit.places.is_device(src):
        return
    blocking = not (args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
    dst_dev, src_dev = audit.places.is_device(dst), audit.places.is_device(src)
    if src_dev and not dst_dev and blocking:
        audit.flag("device-to-host copy", "copy_")
    elif dst_dev and not src_dev and blocking:
        audit.flag("host-to-device copy", "copy_")


def _target(name: str, args, kwargs) -> str | None:
    """'host' when a ``.to``/``.cpu`` call names the host, else None."""
    if name == "cpu":
        return "host"
    if name != "to":
        return None
    for a in (*args[1:], kwargs.get("device")):
        if isinstance(a, str) and a.split(":")[0] == "cpu":
            return "host"
        if isinstance(a, torch.device) and a.type == "cpu" and torch.cuda.is_available():
            return "host"
    return None


def _bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or () if i is not None)


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # no storage (e.g. a functional wrapper)
        return 0


def _where() -> str:
    """The innermost frame in medcne (not in this file), else the innermost outside torch."""
    frame, fallback = sys._getframe(2), None
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(_PACKAGE) and not path.endswith("syncaudit.py"):
            return f"{Path(path).relative_to(_PACKAGE)}:{frame.f_lineno} {frame.f_code.co_name}"
        if fallback is None and "/torch/" not in path and not path.endswith("syncaudit.py"):
            fallback = f"{Path(path).name}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return fallback or "?"


# -- the training loop, epoch by epoch, step by step ---------------------------------------
@dataclass
class EpochAudit:
    """The flagged ops of one epoch, by step: ``steps[i]`` holds what ran after optimiser
    step i (0: before the first) up to the next one; the last entry is the epoch's end."""

    stage: str
    epoch: int
    steps: list[list[Sync]] = field(default_factory=lambda: [[]])

    @property
    def steady(self) -> list[list[Sync]]:
        """Whole steps between the first and the last optimiser step (empty with < 2 steps)."""
        return self.steps[1:-1]

    @property
    def syncs_per_step(self) -> float:
        steady = self.steady
        return sum(map(len, steady)) / len(steady) if steady else float("nan")

    @property
    def setup(self) -> list[Sync]:
        return self.steps[0]

    @property
    def end(self) -> list[Sync]:
        return self.steps[-1]


@dataclass
class TrainingAudit:
    """Every audited epoch of a training run, in order."""

    epochs: list[EpochAudit] = field(default_factory=list)

    def step_syncs(self) -> list[tuple[str, int, Sync]]:
        """(stage, epoch, sync) of every sync inside a steady step: none in a sync-free loop."""
        return [(e.stage, e.epoch, s) for e in self.epochs for step in e.steady for s in step]

    def judged(self) -> int:
        """Steady steps seen (a verdict on 0 needs some)."""
        return sum(len(e.steady) for e in self.epochs)

    def summary(self) -> str:
        bad = self.step_syncs()
        first = f"; first: {bad[0][2]} (stage {bad[0][0]}, epoch {bad[0][1] + 1})" if bad else ""
        return f"{len(bad)} syncs in {self.judged()} steady steps of {len(self.epochs)} epochs{first}"


@contextmanager
def audit_training(kind: str = "model", as_gpu: bool = True) -> Iterator[TrainingAudit]:
    """Audit every epoch that :func:`medcne.train.loop.train` runs inside the ``with`` block.

    ``kind``: ``"model"`` (:class:`SyncAudit`, any machine) or ``"cuda"``
    (PyTorch's ``set_sync_debug_mode`` warnings, real syncs on a GPU).
    ``as_gpu``: on a CPU, run what a GPU runs: the torch augmentation engine
    (not the CPU kernel) and the fused SGD step.
    """
    from ..augment import augmenter
    from . import loop

    record, original = TrainingAudit(), loop.run_epoch
    make_optimizer, use_kernel = loop.make_optimizer, augmenter.use_kernel
    if as_gpu:
        loop.make_optimizer = lambda params, stage, device_type="cpu": make_optimizer(params, stage, "cuda")
        augmenter.use_kernel = lambda engine, device: False

    def audited(job, optimizer, stage, epoch, bar=None):
        ea = EpochAudit(stage.name, epoch)
        record.epochs.append(ea)
        watch = SyncAudit() if kind == "model" else _CudaWarnings()
        hook = register_optimizer_step_post_hook(
            lambda *_: (ea.steps[-1].extend(watch.take()), ea.steps.append([])))
        try:
            with watch:
                return original(job, optimizer, stage, epoch, bar)
        finally:
            hook.remove()
            ea.steps[-1].extend(watch.take())

    loop.run_epoch = audited
    try:
        yield record
    finally:
        loop.run_epoch, loop.make_optimizer, augmenter.use_kernel = original, make_optimizer, use_kernel


class _CudaWarnings:
    """PyTorch's own record of CUDA syncs (``torch.cuda.set_sync_debug_mode("warn")``)."""

    def __init__(self):
        self.found: list[Sync] = []
        self._catch = warnings.catch_warnings(record=True)
        self._seen = 0

    def take(self) -> list[Sync]:
        self._collect()
        out, self.found = self.found, []
        return out

    def __enter__(self):
        self._log = self._catch.__enter__()
        warnings.simplefilter("always")
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def _collect(self) -> None:
        new, self._seen = self._log[self._seen:], len(self._log)
        self.found += [Sync("CUDA sync", str(w.message)[:80], f"{Path(w.filename).name}:{w.lineno}")
                       for w in new if "synchroniz" in str(w.message).lower()]

    def __exit__(self, *exc) -> None:
        torch.cuda.set_sync_debug_mode(0)
        self._collect()
        self._catch.__exit__(*exc)
