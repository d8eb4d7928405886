"""Checkpoints: plain dicts of tensors and numbers, written atomically.

A checkpoint holds everything needed to continue a run exactly as if it had not
stopped: model and optimiser state, the stage and the epochs done in it (the
learning rate is a function of these), the states of all random generators, the
history so far, and the estimator's parameters. It is read with
``torch.load(weights_only=True)``: no pickled objects.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MedcneError
from ..runfolder import atomic_write
from .data import Generators
from .loop import Position

FORMAT = "medcne-checkpoint/1"


def _cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def make_checkpoint(model, optimizer, position: Position, generators: Generators, params: dict,
                    n_images: int, elapsed: float = 0.0) -> dict:
    """A checkpoint as a plain dict (all tensors on the CPU)."""
    return {
        "format": FORMAT,
        "params": params,
        "n_images": int(n_images),
        "out_dim": int(model.out_dim),
        "model": _cpu(model.state_dict()),
        "optimizer": _cpu(optimizer.state_dict()) if optimizer is not None else None,
        "stage": int(position.stage),
        "epoch": int(position.epoch),
        "history": [dict(r) for r in position.history],
        "rng": _cpu(generators.state_dict()),
        "elapsed": float(elapsed),
    }


def save_checkpoint(path, checkpoint: dict) -> Path:
    """Write atomically, so a run killed while saving keeps its previous checkpoint."""
    return atomic_write(path, lambda p: torch.save(checkpoint, p))


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.exists():
        raise MedcneError(f"{path}: no checkpoint to resume from; start the run again without resume")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MedcneError(f"{path}: cannot read the checkpoint ({type(exc).__name__}); start the run again") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise MedcneError(f"{path}: not a medcne checkpoint (format {FORMAT}); pass the checkpoint.pt of a run")
    return ckpt


def position_of(checkpoint: dict, stages) -> tuple[Position, dict | None]:
    """The position to continue from, and the optimiser state (None at a stage boundary)."""
    stage, epoch = checkpoint["stage"], checkpoint["epoch"]
    optimizer = checkpoint["optimizer"]
    # At the end of a stage the next one starts fresh (new head, new optimiser).
    while stage < len(stages) and epoch >= stages[stage].epochs:
        stage, epoch, optimizer = stage + 1, 0, None
    return Position(stage, epoch, [dict(r) for r in checkpoint["history"]]), optimizer
