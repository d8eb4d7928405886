"""Training in several processes, one per device (torchrun): PyTorch's own distributed engine.

``torchrun --nproc-per-node N -m medcne fit ...`` (or ``medcne fit ... --nproc N``)
starts N copies of the command; each finds its rank in the environment that
torchrun sets and joins the process group (:func:`.group.setup`: NCCL on GPUs,
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
global batch (the tests check both to float tolerance). Joining the group,
rank 0 writing, agreeing, and a process that died are :mod:`.group`'s (its
names are re-exported here). With one process none of this runs: no process
group, no wrapper, no gather.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..datasets.imageset import LazyImages
from .group import (  # noqa: F401 (re-exported: the processes of a run, for the callers of this module)
    DEFAULT_TIMEOUT_S,
    LAUNCHER_ENV,
    TIMEOUT_ENV,
    ProcessLostError,
    ReportedError,
    World,
    agree,
    collective_timeout,
    gather_objects,
    launched,
    local_rank_in_env,
    on_main,
    raise_if_lost,
    setup,
    teardown,
    together,
    watch_launcher,
    world,
)
from .loop import contrastive_step
from .syncbn import (  # noqa: F401 (re-exported)
    CpuSyncBatchNorm,
    GlobalBatchNorm,
    convert_sync_batchnorm,
    revert_sync_batchnorm,
)


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
