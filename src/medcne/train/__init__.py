"""Training: stages as data, the loop, checkpoints, duration estimates."""

from .checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from .data import Generators, ImageStore, resolve_device
from .loop import EpochEnd, Position, contrastive_step, train
from .stages import Stage, default_lr, lr_at, parse_epochs, simclr_stages, tsimcne_stages

__all__ = [
    "EpochEnd", "Generators", "ImageStore", "Position", "Stage", "contrastive_step", "default_lr",
    "load_checkpoint", "lr_at", "make_checkpoint", "parse_epochs", "resolve_device", "save_checkpoint",
    "simclr_stages", "train", "tsimcne_stages",
]
