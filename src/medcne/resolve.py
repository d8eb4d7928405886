"""The estimator's parameters checked against the data and turned into resolved values, and back.

:func:`resolve` is what :meth:`medcne.TSimCNE.fit` (and ``validate``) do first:
every parameter is checked against its rule (:mod:`medcne.params`, one clear
line naming it), and 'auto' values become the attributes ending in ``_``
(scikit-learn's convention), including the share of the batch of each process
when several train together. :func:`record_params` writes those values as
JSON; :func:`resolve_record` reads them back for a saved model. :func:`all_or_nothing`
keeps a fit that does not finish from leaving anything behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .datasets import ImageSet
from .datasets.memory import training_streams
from .device import resolve_device, resolve_precision
from .durations import parse_duration
from .errors import MedcneError
from .models import check_model_args, use_small_stem
from .params import check_all, check_split, parse_epochs
from .train import distributed
from .train.checkpoint import FORMAT as CHECKPOINT_FORMAT
from .train.checkpoint import check_target
from .train.stages import (
    Stage,
    annealed_schedule,
    default_lr,
    epochs_record,
    simclr_stages,
    tsimcne_stages,
)


def resolve(est, data: ImageSet) -> dict:
    """The resolved values of estimator ``est`` for ``data``, by attribute name (``batch_size_``...)."""
    if len(data) < 2:
        raise MedcneError(f"need at least 2 images to train; got {len(data)}")
    check_all(est.get_params())
    if est.checkpoint is not None:  # never written over a file medcne did not write
        check_target(est.checkpoint, (CHECKPOINT_FORMAT,), "checkpoint", "checkpoint", run_folder_ok=True)
    out: dict = {"batch_size_": int(min(est.batch_size, len(data)))}
    out["lr_"] = default_lr(out["batch_size_"]) if est.lr == "auto" else float(est.lr)
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
    # The data's own checks first (the batch split among the processes), then the model's; the world's
    # values join the others last, so the memory check below sees the device as resolved above.
    world = _world(est, out, len(data))
    check_model_args(est.backbone, data.image_shape[2], est.width, out["stages_"][-1].out_dim)
    out["small_stem_"] = use_small_stem(max(data.image_shape[:2]), est.small_stem)
    out["stream_"] = training_streams(data, est.stream)  # images too large for memory: refused before training
    check_training_memory(est, out, data)
    from .augment import Augmenter

    Augmenter(est.preset, crop=est.crop, jitter=est.jitter, grayscale=est.grayscale)  # validates them
    out.update(world)
    return out


@contextmanager
def all_or_nothing(est) -> Iterator[None]:
    """Keep the attributes of estimator ``est`` as they are unless the block finishes: a fit that is
    interrupted (KeyboardInterrupt, as Jupyter's "Interrupt kernel") or fails (DivergedError...)
    leaves the estimator as it was before the call, the previous fit intact or not fitted, never a
    half-trained model beside the values of another fit."""
    before = dict(vars(est))
    try:
        yield
    except BaseException:
        vars(est).clear()
        vars(est).update(before)
        raise


def _world(est, out: dict, n: int) -> dict:
    """Rank and size of the run (torchrun), each process's device and share of the global batch."""
    world = distributed.world()
    res = {"world_": world, "sync_bn_": world.active and est.sync_bn in ("auto", True),
           "rank_batch_size_": out["batch_size_"]}
    if not world.active:
        return res
    batch = out["batch_size_"]
    check_split(batch, world.size, capped_at=n if batch < est.batch_size else None)
    res["rank_batch_size_"] = batch // world.size
    if out["device_"].type == "cuda":  # one process per GPU
        res["device_"] = torch.device("cuda", world.local_rank)
    return res


def record_params(est, stages=None) -> dict:
    """``{"params": ..., "resolved": ...}`` of a resolved estimator as plain JSON values;
    ``stages``: another schedule than ``est.stages_`` (one a time budget chose)."""
    params = est.get_params()
    params["random_state"] = params["random_state"] if isinstance(params["random_state"], (int, np.integer)) \
        else None
    params["checkpoint"] = None if params["checkpoint"] is None else str(params["checkpoint"])
    params["epochs"] = epochs_record(est.epochs)
    params["warmup"] = epochs_record(est.warmup, "warmup")
    fill = getattr(est, "fill_", None)
    resolved = {
        "batch_size": est.batch_size_, "lr": est.lr_, "device": str(est.device_),
        "precision": est.precision_, "budget_seconds": est.budget_,
        "small_stem": est.small_stem_, "image_shape": list(est.image_shape_),
        "stages": [s.to_dict() for s in (est.stages_ if stages is None else stages)],
        "world_size": getattr(est, "world_", distributed.World()).size,
        "rank_batch_size": getattr(est, "rank_batch_size_", est.batch_size_),
        "sync_bn": getattr(est, "sync_bn_", False),
        "stream": getattr(est, "stream_", False),
        # Known once fit has looked at the images (the dataset's border colour).
        "fill": None if fill is None else list(fill),
    }
    return {"params": params, "resolved": resolved}


def resolve_record(record: dict, precision: str, device="auto") -> dict:
    """The resolved attributes (``batch_size_``...) of a saved ``record``, for use on ``device``.

    Placing images needs no bit-exact arithmetic: a model trained in bf16 runs in
    float32 where bf16 is slow (``precision`` is the saved parameter).
    """
    r = record["resolved"]
    device_ = resolve_device(device)
    return {
        "batch_size_": r["batch_size"], "lr_": r["lr"], "small_stem_": r["small_stem"],
        "image_shape_": tuple(r["image_shape"]), "stages_": tuple(Stage(**d) for d in r["stages"]),
        "fill_": None if r.get("fill") is None else tuple(r["fill"]), "device_": device_,
        "precision_": resolve_precision("auto" if precision == "bf16" else precision, device_),
        "budget_": r.get("budget_seconds"),
    }


def check_training_memory(est, out: dict, data: ImageSet) -> None:
    """Refuse a width, batch or process count that cannot fit in the memory of the device (medcne.limits).

    The images are read already, so the memory still available is what training may use.
    """
    from .limits import check_training

    device = out["device_"]
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    check_training(est.width, out["batch_size_"], max(data.image_shape[:2]), backbone=est.backbone,
                   processes=distributed.world().size if distributed.world().active else 1, device_free=free)
