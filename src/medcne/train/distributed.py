"""Training in several processes, one per device (torchrun): PyTorch's own distributed engine.

``torchrun --nproc-per-node N -m medcne fit ...`` (or ``medcne fit ... --nproc N``)
starts N copies of the command; each finds its rank in the environment that
torchrun sets and joins the process group here (:func:`setup`: NCCL on GPUs,
gloo on CPUs). Then every process

* holds all images on its own device and trains on its shard of each global
  batch (:func:`~.loop.shard`: one seeded order per epoch, the same for any
  number of processes);
* makes the views of its shard with its own augmentation stream (:mod:`.rng`);
* gathers the outputs of all processes before the loss (:func:`gather_views`),
  so the negatives are those of the whole global batch, not of one device;
* averages the gradients through ``DistributedDataParallel`` (:func:`replicate`)
  and, by default, normalises with the statistics of the global batch
  (:func:`convert_sync_batchnorm`).

The loss and the weights then follow those of one process training on the
global batch (the tests check both to float tolerance). Only rank 0 writes
files (:func:`on_main`); a collective that fails because another process died
or stopped answering ends the run with one line (:func:`raise_if_lost`). With
one process none of this runs: no process group, no wrapper, no gather.
"""

from __future__ import annotations

import _thread
import inspect
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..datasets.imageset import LazyImages
from ..errors import MedcneError
from .loop import contrastive_step
from .syncbn import (  # noqa: F401 (re-exported)
    CpuSyncBatchNorm,
    GlobalBatchNorm,
    convert_sync_batchnorm,
    revert_sync_batchnorm,
)

TIMEOUT_ENV = "MEDCNE_COLLECTIVE_TIMEOUT"
# Longest wait in a collective: above the longest thing one rank does alone between two
# collectives (rank 0 scoring kNN or writing a checkpoint), below "the run hangs for hours".
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process: the distributed path runs."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0


def launched() -> bool:
    """Started by torchrun (or ``--nproc``) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    """The world of the process group this process belongs to (one process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def collective_timeout(seconds: float | None = None) -> float:
    """Seconds a collective may wait: ``seconds``, else $MEDCNE_COLLECTIVE_TIMEOUT, else 600."""
    if seconds is None:
        raw = os.environ.get(TIMEOUT_ENV)
        if raw is None:
            return DEFAULT_TIMEOUT_S
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
    if not seconds > 0:
        raise MedcneError(f"{TIMEOUT_ENV} must be a positive number of seconds; got {seconds!r}")
    return float(seconds)


def setup(device="auto", timeout_s: float | None = None) -> World:
    """Join the process group that torchrun describes in the environment.

    One process per device: on CUDA, process ``LOCAL_RANK`` of a machine uses
    GPU ``LOCAL_RANK`` and NCCL; on a CPU, gloo. Without torchrun (or with one
    process) nothing happens and the world is one process. ``timeout_s``: the
    longest a collective waits for the other processes (:func:`collective_timeout`).
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return world()
    watch_launcher()
    from ..device import resolve_device

    local = int(os.environ.get("LOCAL_RANK", "0"))
    kind = resolve_device(device).type
    options = {}
    if kind == "cuda":
        count = torch.cuda.device_count()
        if local >= count:
            raise MedcneError(
                f"process {local} of this machine has no GPU of its own (the machine has {count}); "
                f"start at most {count} processes per machine (--nproc / --nproc-per-node)"
            )
        torch.cuda.set_device(local)
        options["device_id"] = torch.device("cuda", local)
    timeout = timedelta(seconds=collective_timeout(timeout_s))
    try:
        dist.init_process_group("nccl" if kind == "cuda" else "gloo", timeout=timeout, **options)
    except (RuntimeError, ValueError) as exc:  # the Dist*Error of a failed rendezvous are RuntimeErrors
        raise MedcneError(
            f"cannot join the other processes of this run ({_first_line(exc)}); check that every node "
            "was started with the same --rdzv-endpoint (or MASTER_ADDR/MASTER_PORT) and can reach it"
        ) from None
    return world()


LAUNCHER_ENV = "MEDCNE_LAUNCHER_PID"  # set by ``medcne fit --nproc`` for the processes it starts
LAUNCHER_POLL_S = 0.5  # how often a process looks whether its launcher is alive
LAUNCHER_GRACE_S = 10.0  # then how long it may take to stop as if interrupted


def local_rank_in_env() -> int:
    """This process's rank on its machine as torchrun set it (0 without torchrun), also before
    :func:`setup`: process 0 of each machine speaks for the others on the same terminal."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def watch_launcher(poll_s: float = LAUNCHER_POLL_S, grace_s: float = LAUNCHER_GRACE_S) -> threading.Thread:
    """Stop this process when the one that launched it dies (``medcne fit --nproc`` or torchrun's
    agent killed with SIGKILL, by the OOM killer or a scheduler): its processes would otherwise
    train on, orphaned, and write the run.

    The launcher is the process's parent (torchrun's agent runs inside ``medcne fit --nproc``,
    which names itself in ``$MEDCNE_LAUNCHER_PID``, so that one already gone before this process
    got here is noticed too). The process is interrupted as by Ctrl-C (the run keeps its last
    checkpoint and can be resumed; nothing is finished or moved in); one still blocked after
    ``grace_s`` (in a collective with a process that is gone, or joining a group whose launcher
    is gone) leaves at once, the same checkpoint kept.
    """
    parent = int(os.environ.get(LAUNCHER_ENV) or os.getppid())

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        _thread.interrupt_main()
        time.sleep(grace_s)
        os._exit(130)

    thread = threading.Thread(target=watch, name="medcne-launcher-watch", daemon=True)
    thread.start()
    return thread


def teardown() -> None:
    """Leave the process group (when there is one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- global negatives ---------------------------------------------------------------
class _GatherViews(torch.autograd.Function):
    """All processes' (2B, d) outputs as the (2 B W, d) outputs of the global batch.

    Forward: rows i and i + B are partners on every rank; the result puts the
    first views of all ranks (rank order) before all second views, so rows j and
    j + B W are partners, as in one process's batch of the same images.

    Backward: every rank computes the same loss from the same gathered outputs,
    so the gradient of that loss with respect to this rank's rows is already
    here, without communication. It is scaled by W because the gradient
    averaging of :func:`replicate` divides the sum over ranks by W, whereas the
    loss's gradient is the plain sum of each rank's share.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        z = z.contiguous()
        size, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(z) for _ in range(size)]
        dist.all_gather(parts, z)
        b = z.shape[0] // 2
        ctx.rank, ctx.size, ctx.b = rank, size, b
        return torch.cat([p[:b] for p in parts] + [p[b:] for p in parts])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        r, w, b = ctx.rank, ctx.size, ctx.b
        mine = torch.cat([grad[r * b : (r + 1) * b], grad[(w + r) * b : (w + r + 1) * b]])
        return mine * w


def gather_views(z: torch.Tensor) -> torch.Tensor:
    """(2B, d) outputs of this process -> (2BW, d) outputs of the global batch, with gradients.

    The loss of the result equals the loss of one process embedding the whole
    global batch; see :class:`_GatherViews` for the layout and the gradient.
    """
    return _GatherViews.apply(z)


# -- gradient averaging ----------------------------------------------------------------
class _Step(nn.Module):
    """The model's part of a training step as one module, so DDP sees every forward.

    Stage 2 (``frozen``) runs the backbone without autograd, as one process does.
    """

    def __init__(self, model: nn.Module, backbone: Callable | None, frozen: bool):
        super().__init__()
        self.model = model
        self._backbone = (backbone,)  # a tuple: a compiled module must not register as a child
        self.frozen = frozen

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return contrastive_step(self.model, views, _outputs, None, self._backbone[0], self.frozen)


def _outputs(z: torch.Tensor) -> torch.Tensor:
    return z


def replicate(model: nn.Module, stage, backbone: Callable | None = None, *,
              broadcast_buffers: bool = True) -> nn.Module:
    """``DistributedDataParallel`` over the parameters ``stage`` trains: it averages their gradients
    over the processes while the backward pass runs (a new wrapper per stage, since stage 2
    trains one layer and replaces it). Called as ``replica(views) -> z`` of this process.

    ``broadcast_buffers``: copy rank 0's BatchNorm statistics to all ranks before each
    step (not needed with synced BatchNorm, whose statistics are the same everywhere).
    """
    from torch.nn.parallel import DistributedDataParallel

    frozen = stage.train == "last"
    device = next(model.parameters()).device
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    step = _Step(model, None if frozen else backbone, frozen)
    # The option's name since torch 2.14 (the old one warns there); torch >= 2.4 is supported.
    new_name = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    buffers = {"forward_sync_buffers" if new_name else "broadcast_buffers": broadcast_buffers}
    return DistributedDataParallel(step, device_ids=ids, **buffers)


# -- rank 0 writes; everyone agrees ----------------------------------------------------------
class ReportedError(MedcneError):
    """An error that rank 0 raised and reports; the other ranks stop with it, quietly."""


def on_main(fn: Callable[[], object], w: World | None = None) -> None:
    """Run ``fn`` (which writes files) on rank 0 only; a :class:`MedcneError` it raises is raised
    on every rank (as :class:`ReportedError` on the others), so that all processes stop
    together (one process: just ``fn()``)."""
    w = w or world()
    if not w.active:
        fn()
        return
    message = None
    if w.is_main:
        try:
            fn()
        except MedcneError as exc:
            message = str(exc)
    box = [message]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise (MedcneError if w.is_main else ReportedError)(box[0])


def agree(flag: bool, w: World | None = None) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. whether a checkpoint is due: a clock is per process)."""
    w = w or world()
    if not w.active:
        return flag
    box = [bool(flag)]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def gather_objects(obj, w: World | None = None) -> list:
    """``obj`` of every rank, in rank order, on every rank (small, picklable objects)."""
    w = w or world()
    if not w.active:
        return [obj]
    out = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def sync_buffers(model: nn.Module, w: World | None = None) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank, e.g. before embedding with them."""
    w = w or world()
    if w.active:
        for b in model.buffers():
            dist.broadcast(b, src=0)


def embed_sharded(fn: Callable, images, device: torch.device, w: World | None = None) -> np.ndarray:
    """:func:`medcne.models.embed` of all images, each rank embedding a contiguous 1/W of them;
    every rank gets the whole (N, d) result. The model must be the same on all ranks
    (:func:`sync_buffers`)."""
    from ..models import embed

    w = w or world()
    if not w.active:
        return embed(fn, images, device)
    n = len(images)
    lo, hi = n * w.rank // w.size, n * (w.rank + 1) // w.size
    # A lazily read store stays lazy (a view of the rows), so a rank never reads its share whole at once.
    mine = images.take(np.arange(lo, hi)) if isinstance(images, LazyImages) else images[lo:hi]
    part = embed(fn, mine, device)
    return np.concatenate(gather_objects(part, w))


# -- a process that died -------------------------------------------------------------------
class ProcessLostError(MedcneError):
    """A collective failed: another process of the run died or stopped answering."""


_LOST_MARKERS = ("connection closed", "connection reset", "timed out", "timeout", "gloo", "nccl",
                 "broken pipe", "socket", "processgroup", "peer")


def raise_if_lost(exc: RuntimeError, checkpoint=None, w: World | None = None) -> None:
    """Raise :class:`ProcessLostError` (one line) when ``exc`` is the failure of a collective.

    A process that is killed closes its connections, and the others' next
    collective fails at once (gloo), or after the collective timeout when a
    process hangs (NCCL's watchdog then ends the waiting process itself).
    Nothing is written after the failure; the last checkpoint, written
    atomically by rank 0, stays. Other errors are left to the caller to re-raise.
    """
    w = w or world()
    if not w.active or isinstance(exc, torch.OutOfMemoryError) or not _is_lost(exc):
        return
    where = f" ({checkpoint})" if checkpoint else ""
    raise ProcessLostError(
        f"rank {w.rank}: another process of this {w.size}-process run died or stopped answering "
        f"({_first_line(exc)}); see that process's own message. The last checkpoint{where} is "
        "kept: continue with `medcne fit --resume RUN`"
    ) from exc


def _is_lost(exc: BaseException) -> bool:
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return any(m in text for m in _LOST_MARKERS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    # gloo prefixes the source file of the error: keep the words.
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    line = line.split(". ")[0].rstrip(".")  # gloo and NCCL add advice after the first sentence
    return f"{type(exc).__name__}: {line[:200]}"



# -- what the estimator asks of several processes ---------------------------------------------
def training_arguments(w: World, sync_bn: bool) -> dict:
    """The arguments of :func:`~medcne.train.loop.train` that spread a step over the processes."""
    if not w.active:
        return {}
    return dict(gather=gather_views, shard=(w.rank, w.size),
                replicate=partial(replicate, broadcast_buffers=not sync_bn))


def final_embedding(model: nn.Module, images, device: torch.device, w: World) -> tuple[np.ndarray, nn.Module]:
    """The map of the training images (each process embeds a share of them) and the model with
    plain BatchNorm again (one process: the model's own :func:`~medcne.models.embed`)."""
    from ..models import embed

    if not w.active:
        return embed(model, images, device), model
    sync_buffers(model, w)  # rank 0's statistics (unsynced BatchNorm)
    model.eval()
    z = embed_sharded(model, images, device, w)
    return z, revert_sync_batchnorm(model)


def resume_note(saved: dict, w: World, batch_size: int) -> str | None:
    """What to tell rank 0's user when a run resumes on another number of processes than it was saved on."""
    before = len(saved["rng"].get("augment_ranks", [None]))
    if before == w.size or not w.is_main:
        return None
    return (f"resuming a run of {before} process(es) on {w.size}: the global batch ({batch_size}), the order of "
            "the images and the learning rate are kept; the augmentation streams of the processes are "
            "re-derived, so the result differs from an uninterrupted run as one seed differs from another")
