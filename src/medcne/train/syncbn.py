"""BatchNorm over the global batch of several processes: one all-reduce per layer, on any device.

:func:`convert_sync_batchnorm` says why it is the default with several
processes; :class:`GlobalBatchNorm` is how the processes get the same
statistics as one process on the whole batch (tested against it), on GPUs
and CPUs alike, without making the host wait and without breaking a
``torch.compile`` graph.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; its gradient is the sum of the gradients (every rank's share)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` with the statistics of the global batch of all processes (NCCL or gloo).

    One autograd-aware all-reduce of every rank's per-channel mean and variance,
    combined as PyTorch's GPU kernels combine them (no E[x^2] - E[x]^2
    cancellation). Used on GPUs too, instead of PyTorch's ``nn.SyncBatchNorm``:
    that one has kernels only on GPUs, and its forward reads a count back to the
    host (``count_all[mask]``), one wait per BatchNorm layer and step (about 20
    for ResNet18), where this one has fixed shapes and no read, so the host
    never waits and ``torch.compile`` captures it whole. Processes must hold
    equal batches (the loop's shards do). In eval mode, or without a process
    group, it is plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        c, dims = x.shape[1], [0, *range(2, x.ndim)]
        shape = (1, c) + (1,) * (x.ndim - 2)
        rank, size = dist.get_rank(), dist.get_world_size()
        xf = x.float()
        mine = torch.cat([xf.mean(dims), xf.var(dims, unbiased=False)])[None]
        # Row r holds rank r's statistics; the sum over ranks fills every row everywhere.
        rows = torch.cat([mine.new_zeros(rank, 2 * c), mine, mine.new_zeros(size - rank - 1, 2 * c)])
        rows = _AllReduceSum.apply(rows)
        mean = rows[:, :c].mean(0)
        var = (rows[:, c:] + (rows[:, :c] - mean) ** 2).mean(0)
        if self.track_running_stats:
            n = x.numel() // c * size
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


CpuSyncBatchNorm = GlobalBatchNorm  # its name before GPUs used it too


def convert_sync_batchnorm(module: nn.Module, device_type: str = "cuda") -> nn.Module:
    """Every ``BatchNorm2d`` of ``module`` normalising over the global batch (the default with
    several processes): :class:`GlobalBatchNorm` on every device (``device_type`` is kept for
    callers; it no longer changes the class); same weights, statistics and state-dict keys.
    Returns ``module`` (changed in place), or the new layer for a bare one.

    Why: each process sees only B / W images of a global batch, and BatchNorm
    normalises with the statistics of the batch it sees. Per process, (i) the
    result depends on the number of processes (8 GPUs at a global batch of 1024
    normalise over 128 images each, not 1024), and (ii) a contrastive model can
    cheat: both views of an image sit on the same device and share its
    statistics, a cue that the negatives from other devices lack (the
    "information leak" that SimCLR and MoCo avoid with synced or shuffled
    BatchNorm). Synced, training follows one process on the global batch, at the
    cost of one small collective per BatchNorm layer in the forward and one in
    the backward pass.
    """
    return _swap(module, (nn.BatchNorm2d, nn.SyncBatchNorm), GlobalBatchNorm)


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """The reverse of :func:`convert_sync_batchnorm`: plain ``BatchNorm2d`` layers again."""
    return _swap(module, (nn.SyncBatchNorm, GlobalBatchNorm), nn.BatchNorm2d)


def _swap(module: nn.Module, old: tuple[type, ...], new: type) -> nn.Module:
    if type(module) in old:
        layer = new(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        layer.load_state_dict(module.state_dict())
        p = next(module.parameters(), None)
        if p is not None:
            layer.to(device=p.device)
        layer.train(module.training)
        return layer
    for name, child in module.named_children():
        module.add_module(name, _swap(child, old, new))
    return module
