"""medcne: 2D maps of medical image datasets with t-SimCNE."""

__version__ = "0.1.0"
__all__ = ["ImageSet", "MedcneError", "TSimCNE", "load_dataset", "load_sample", "__version__"]

# Imported on first use, so that `import medcne` (and so the command's entry point, medcne.launch)
# loads nothing: neither numpy and the readers nor torch.
_LAZY = {"MedcneError": "errors", "ImageSet": "datasets", "load_dataset": "datasets", "load_sample": "datasets",
         "TSimCNE": "estimator"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'medcne' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
