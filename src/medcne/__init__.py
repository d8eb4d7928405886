"""medcne: 2D maps of medical image datasets with t-SimCNE."""

from .datasets import ImageSet, load_dataset, load_sample
from .errors import MedcneError

__version__ = "0.1.0"
__all__ = ["ImageSet", "MedcneError", "TSimCNE", "load_dataset", "load_sample", "__version__"]


def __getattr__(name: str):
    # Imported on first use so `import medcne` and `medcne info` stay fast (no torch).
    if name == "TSimCNE":
        from .estimator import TSimCNE

        return TSimCNE
    raise AttributeError(f"module 'medcne' has no attribute {name!r}")
