"""Training: stages as data, the data on the device, the loop, checkpoints, the per-epoch monitor.

Names are imported on first use (PEP 562), so that importing a torch-free part
(the stages, the progress bar) does not load torch.
"""

_WHERE = {
    "load_checkpoint": "checkpoint", "make_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "EpochEnd": "loop", "Position": "loop", "contrastive_step": "loop", "train": "loop",
    "Generators": "rng", "Stage": "stages", "default_lr": "stages", "lr_at": "stages", "parse_epochs": "stages",
    "simclr_stages": "stages", "tsimcne_stages": "stages", "ImageStore": "store",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'medcne.train' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
