"""Training: stages as data, the data on the device, the loop, checkpoints, the per-epoch monitor."""

from .checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from .loop import EpochEnd, Position, contrastive_step, train
from .rng import Generators
from .stages import Stage, default_lr, lr_at, parse_epochs, simclr_stages, tsimcne_stages
from .store import ImageStore

__all__ = [
    "EpochEnd", "Generators", "ImageStore", "Position", "Stage", "contrastive_step", "default_lr",
    "load_checkpoint", "lr_at", "make_checkpoint", "parse_epochs", "save_checkpoint",
    "simclr_stages", "train", "tsimcne_stages",
]
