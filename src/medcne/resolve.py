"""The estimator's parameters checked against the data and turned into resolved values.

:func:`resolve` is what :meth:`medcne.TSimCNE.fit` (and ``validate``) do first:
every parameter is checked with one clear line naming it, and 'auto' values
become the attributes ending in ``_`` (scikit-learn's convention), including
the share of the batch of each process when several train together.
"""

from __future__ import annotations

import numpy as np
import torch

from .datasets import ImageSet
from .defaults import LOSSES
from .device import resolve_device, resolve_precision
from .errors import MedcneError
from .models import check_model_args, use_small_stem
from .train import distributed
from .train.duration import parse_duration
from .train.stages import annealed_schedule, default_lr, parse_epochs, simclr_stages, tsimcne_stages

NUMBER = (int, float, np.number)


def resolve(est, data: ImageSet) -> dict:
    """The resolved values of estimator ``est`` for ``data``, by attribute name (``batch_size_``...)."""
    if len(data) < 2:
        raise MedcneError(f"need at least 2 images to train; got {len(data)}")
    if not isinstance(est.batch_size, (int, np.integer)) or est.batch_size < 2:
        raise MedcneError(f"batch_size must be an integer >= 2; got {est.batch_size!r}")
    if est.loss not in LOSSES:
        raise MedcneError(f"loss must be 'cauchy' (t-SimCNE) or 'cosine' (SimCLR); got {est.loss!r}")
    out: dict = {"batch_size_": int(min(est.batch_size, len(data)))}
    out["lr_"] = _lr(est.lr, out["batch_size_"])
    _check_numbers(est)
    annealed = annealed_schedule(getattr(est, "schedule", "stages"), est.epochs, est.warmup, out["lr_"], est.dim,
                                 est.loss)
    epochs, warmup = (None, None) if annealed else (parse_epochs(est.epochs), parse_epochs(est.warmup, name="warmup"))
    if annealed:
        out["stages_"] = annealed
    elif est.loss == "cosine":
        out["stages_"] = simclr_stages(epochs[0], out["lr_"], warmup[0])
    else:
        out["stages_"] = tsimcne_stages(epochs, out["lr_"], est.dim, warmup, est.stage3_lr_factor,
                                        head_init=est.head_init)
    out["device_"] = resolve_device(est.device)
    out["precision_"] = resolve_precision(est.precision, out["device_"])
    out["budget_"] = None if est.budget is None else parse_duration(est.budget)
    out["image_shape_"] = data.image_shape
    check_model_args(est.backbone, data.image_shape[2], est.width, out["stages_"][-1].out_dim)
    out["small_stem_"] = use_small_stem(max(data.image_shape[:2]), est.small_stem)
    from .augment import Augmenter

    Augmenter(est.preset, crop=est.crop, jitter=est.jitter, grayscale=est.grayscale)  # validates them
    out.update(_world(est, out, len(data)))
    return out


def _lr(lr, batch_size: int) -> float:
    if lr == "auto":
        return default_lr(batch_size)
    if isinstance(lr, (int, float)) and 0 < lr < np.inf:
        return float(lr)
    raise MedcneError(f"lr must be a positive number or 'auto'; got {lr!r}")


def _check_numbers(est) -> None:
    if not isinstance(est.stage3_lr_factor, NUMBER) or not 0 < est.stage3_lr_factor < np.inf:
        raise MedcneError(f"stage3_lr_factor (stage-3 lr / lr, paper: 0.001) must be a positive number; "
                          f"got {est.stage3_lr_factor!r}")
    if not isinstance(est.checkpoint_minutes, NUMBER) or not 0 <= est.checkpoint_minutes < np.inf:
        raise MedcneError(f"checkpoint_minutes must be a number >= 0 (0: every epoch); "
                          f"got {est.checkpoint_minutes!r}")
    if not isinstance(est.knn_every, (int, np.integer)) or est.knn_every < 0:
        raise MedcneError(f"knn_every must be a non-negative integer (0: off); got {est.knn_every!r}")


def _world(est, out: dict, n: int) -> dict:
    """Rank and size of the run (torchrun), each process's device and share of the global batch."""
    world = distributed.world()
    if est.sync_bn not in ("auto", True, False):
        raise MedcneError(f"sync_bn must be 'auto', True or False; got {est.sync_bn!r}")
    res = {"world_": world, "sync_bn_": world.active and est.sync_bn in ("auto", True),
           "rank_batch_size_": out["batch_size_"]}
    if not world.active:
        return res
    batch = out["batch_size_"]
    if batch % world.size:
        capped = f" (capped at the {n} images)" if batch < est.batch_size else ""
        raise MedcneError(
            f"batch_size {batch}{capped} must divide evenly among the {world.size} processes "
            f"(it is the global batch); use a multiple of {world.size}, e.g. {batch - batch % world.size}"
        )
    res["rank_batch_size_"] = batch // world.size
    if out["device_"].type == "cuda":  # one process per GPU
        res["device_"] = torch.device("cuda", world.local_rank)
    return res
