"""Reading image datasets into one type, :class:`ImageSet`."""

from .arrays import as_imageset, from_array, from_torch_dataset, read_npz
from .csvfile import read_csv
from .fetch import fetch_medmnist
from .files import read_folder
from .imageset import ImageSet, LazyImages
from .indices import stratified_indices
from .load import as_read_then, as_recorded, load_dataset
from .pcam import read_pcam
from .sample import SAMPLE_PATH, load_sample
from .store_read import open_store

__all__ = [
    "ImageSet", "LazyImages", "as_imageset", "as_read_then", "as_recorded", "fetch_medmnist", "from_array", "from_torch_dataset", "load_dataset",
    "load_sample", "open_store", "read_csv", "read_folder", "read_npz", "read_pcam", "stratified_indices", "SAMPLE_PATH",
]
