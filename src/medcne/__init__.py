"""medcne: 2D maps of medical image datasets with t-SimCNE."""

from .datasets import ImageSet, load_dataset, load_sample
from .errors import MedcneError

__version__ = "0.1.0"
__all__ = ["ImageSet", "MedcneError", "load_dataset", "load_sample", "__version__"]
