"""Readers for array containers: npz files (two layouts), numpy arrays, torch Datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, LabelMismatchError, MedcneError, UnknownFormatError
from .convert import parse_size, prepare_array, resize_images
from .imageset import ImageSet
from .medmnist_info import class_names_for

MEDMNIST_SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def from_array(
    images,
    labels=None,
    class_names=None,
    ids=None,
    *,
    size=None,
    channels: str = "keep",
    source: str = "<array>",
) -> ImageSet:
    """An ImageSet from a numpy array.

    Parameters
    ----------
    images : array
        N x H x W, N x H x W x C or N x C x H x W; uint8, or float in [0, 1].
    labels : array of int, optional
        Shape (N,) or (N, 1).
    """
    notes: list[str] = []
    arr = prepare_array(images, source, size, channels, notes)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or len(labels) != len(arr):
            raise LabelMismatchError(
                f"{source}: {labels.size} labels for {len(arr)} images; give one label per image"
            )
    return ImageSet(arr, labels, class_names, ids, source=source, notes=notes)


def read_npz(path: Path, *, split: str | None = None, size=None, channels="keep") -> ImageSet:
    """An npz in the MedMNIST layout or in the ``images``/``labels`` layout."""
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # zipfile.BadZipFile, OSError, ValueError ...
        raise DataError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc}); is the file complete?") from None
    with data:
        keys = set(data.files)
        if "train_images" in keys or "test_images" in keys:
            return _read_medmnist(path, data, keys, split, size, channels)
        if "images" in keys:
            return _read_plain(path, data, keys, split, size, channels)
    raise UnknownFormatError(
        f"{path}: npz holds {', '.join(sorted(keys)) or 'no arrays'}; expected 'images' (+ 'labels') "
        "or MedMNIST's 'train_images', 'val_images', 'test_images'"
    )


def _check_split(split: str | None) -> None:
    if split is not None and split not in MEDMNIST_SPLITS:
        raise MedcneError(f"split must be one of 'train', 'val', 'test' or unset (all); got {split!r}")


def _labels_1d(labels: np.ndarray, path: Path, notes: list[str]) -> np.ndarray | None:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        notes.append(f"multi-label targets of shape {labels.shape} ignored (one class per image is needed)")
        return None
    return labels.astype(np.int64)


def _read_medmnist(path, data, keys, split, size, channels) -> ImageSet:
    _check_split(split)
    splits = [split] if split else [s for s in MEDMNIST_SPLITS if f"{s}_images" in keys]
    if split and f"{split}_images" not in keys:
        raise DataError(f"{path}: has no split {split!r} (found {', '.join(s for s in MEDMNIST_SPLITS if f'{s}_images' in keys)})")
    notes: list[str] = []
    images, labels, ids = [], [], []
    for s in splits:
        imgs = data[f"{s}_images"]
        images.append(imgs)
        if f"{s}_labels" in keys:
            labels.append(data[f"{s}_labels"])
        ids += [f"{s}/{i}" for i in range(len(imgs))]
    arr = prepare_array(np.concatenate(images), str(path), size, channels, notes)
    lab = None
    if labels and len(labels) == len(images):
        lab = _labels_1d(np.concatenate(labels), path, notes)
    names = class_names_for(Path(path).name, None if lab is None else int(lab.max()) + 1)
    return ImageSet(arr, lab, names, np.array(ids), source=str(path), notes=notes)


def _read_plain(path, data, keys, split, size, channels) -> ImageSet:
    _check_split(split)
    notes: list[str] = []
    images = data["images"]
    n = len(images)
    keep = np.arange(n)
    if split is not None:
        if "split" not in keys:
            raise DataError(f"{path}: has no 'split' array, so split={split!r} cannot be chosen; leave it unset")
        keep = np.flatnonzero(data["split"] == SPLIT_CODES[split])
    arr = prepare_array(images[keep] if split else images, str(path), size, channels, notes)
    labels = _labels_1d(data["labels"], path, notes) if "labels" in keys else None
    if labels is not None:
        if len(labels) != n:
            raise LabelMismatchError(f"{path}: {len(labels)} labels for {n} images; the file is inconsistent")
        labels = labels[keep]
    names = [str(c) for c in data["class_names"]] if "class_names" in keys else None
    ids = data["ids"].astype(str)[keep] if "ids" in keys else np.array([str(i) for i in keep])
    return ImageSet(arr, labels, names, ids, source=str(path), notes=notes)


def from_torch_dataset(dataset, *, size=None, channels: str = "keep", source: str = "<torch Dataset>") -> ImageSet:
    """Read every (image, label) item of a map-style torch ``Dataset``.

    Images may be PIL images, H x W x C uint8 arrays, or C x H x W tensors
    (float in [0, 1] or uint8). Labels may be ints, 0-d or 1-element tensors.
    """
    from PIL import Image

    from .convert import pil_to_array

    n = len(dataset)
    if n == 0:
        raise DataError(f"{source}: the dataset has no items")
    images, labels = [], []
    for i in range(n):
        item = dataset[i]
        img, label = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
        if isinstance(img, Image.Image):
            arr = pil_to_array(img, "keep")
        else:
            arr = np.asarray(img.numpy() if hasattr(img, "numpy") else img)
            if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
                arr = np.moveaxis(arr, 0, -1)
        images.append(arr)
        labels.append(None if label is None else int(np.asarray(label).reshape(-1)[0]))
    shapes = {a.shape for a in images}
    if len(shapes) > 1 and size is None:
        from ..errors import MixedSizeError

        raise MixedSizeError(f"{source}: items have different shapes {sorted(shapes)[:3]}; pass size= to resize")
    if size is not None:
        images = [resize_images(prepare_array(a[None], source, None, "keep", []), parse_size(size))[0] for a in images]
    lab = None if any(v is None for v in labels) else np.asarray(labels)
    names = list(getattr(dataset, "classes", []) or []) or None
    return from_array(np.stack(images), lab, names, channels=channels, source=source)


def as_imageset(X) -> ImageSet:
    """An ImageSet from an ImageSet, an image array (numpy or torch), or a torch Dataset."""
    if isinstance(X, ImageSet):
        return X
    if isinstance(X, np.ndarray):
        return from_array(X)
    if type(X).__module__.startswith("torch") and hasattr(X, "numpy"):  # a tensor, without importing torch
        return from_array(X.detach().cpu().numpy())
    if hasattr(X, "__getitem__") and hasattr(X, "__len__"):
        return from_torch_dataset(X)
    raise MedcneError(
        f"X must be an ImageSet, an N x H x W x C uint8 array, or a torch Dataset; got {type(X).__name__}"
    )
