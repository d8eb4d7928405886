"""Readers for array containers: npz files (two layouts), numpy arrays, torch Datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import (
    DataError,
    EmptyDatasetError,
    LabelMismatchError,
    MedcneError,
    UnknownFormatError,
    printable,
)
from .convert import prepare_array
from .imageset import ImageSet, int_labels, repeated_ids
from .medmnist_info import class_names_for
from .memory import check_memory
from .npzfile import NpzArrays

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
    image_shape: tuple[int, ...] | None = None,
) -> ImageSet:
    """An ImageSet from a numpy array.

    Parameters
    ----------
    images : array
        N x H x W, N x H x W x C or N x C x H x W; uint8, or float in [0, 1].
    labels : array of int, optional
        Shape (N,) or (N, 1).
    image_shape : tuple, optional
        (H, W, C) of one image, when the caller knows it (a fitted model): an
        array of that shape, or of (H, W), is refused as one image.
    """
    notes: list[str] = []
    _refuse_one_image(tuple(getattr(images, "shape", ())), image_shape, source)
    arr = prepare_array(images, source, size, channels, notes)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        labels = int_labels(labels, source)
        if labels.ndim != 1 or len(labels) != len(arr):
            raise LabelMismatchError(
                f"{source}: {labels.size} labels for {len(arr)} images; give one label per image"
            )
    return ImageSet(arr, labels, class_names, ids, source=source, notes=notes)


def read_npz(path: Path, *, split: str | None = None, size=None, channels="keep") -> ImageSet:
    """An npz in the MedMNIST layout or in the ``images``/``labels`` layout.

    Every array's header is checked before it is read (see :class:`NpzArrays`),
    and the arrays must agree: one label, split code and id per image.
    """
    with NpzArrays(path) as npz:
        keys = npz.keys
        if "train_images" in keys or "val_images" in keys or "test_images" in keys:
            return _read_medmnist(npz, split, size, channels)
        if "images" in keys:
            return _read_plain(npz, split, size, channels)
    raise UnknownFormatError(
        f"{path}: npz holds {printable(', '.join(sorted(keys))) or 'no arrays'}; expected 'images' (+ 'labels') "
        "or MedMNIST's 'train_images', 'val_images', 'test_images'"
    )


def _check_split(split: str | None) -> None:
    if split is not None and split not in MEDMNIST_SPLITS:
        raise MedcneError(f"`split` must be one of 'train', 'val', 'test' or unset (all); got {split!r}")


def _labels_1d(labels: np.ndarray, where: str, notes: list[str]) -> np.ndarray | None:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        notes.append(f"multi-label targets of shape {labels.shape} ignored (one class per image is needed)")
        return None
    return int_labels(labels, where)


def _image_header(npz: NpzArrays, key: str) -> tuple[tuple[int, ...], np.dtype]:
    shape, dtype = npz.header(key)
    if len(shape) not in (3, 4) or min(shape[1:]) < 1:
        raise DataError(
            f"{npz.path}: array {key!r} has shape {shape}; images must be N x H x W or N x H x W x C, H, W, C >= 1"
        )
    if dtype.kind not in "fiub":
        raise DataError(f"{npz.path}: array {key!r} holds {dtype} values; pixels must be uint8, or float in [0, 1]")
    return shape, dtype


def _check_load_memory(npz: NpzArrays, shape, dtype, copies: int) -> None:
    """The stored images, ``copies`` more of them, and a uint8 result when they are not uint8."""
    count = int(np.prod(shape, dtype=np.float64))
    need = count * dtype.itemsize * (1 + copies) + (count if dtype != np.uint8 else 0)
    check_memory(need, str(npz.path), f"reading {shape[0]:,} images of shape {shape[1:]} ({dtype})",
                 "use a machine with more memory, or split the file")


def _read_medmnist(npz: NpzArrays, split, size, channels) -> ImageSet:
    _check_split(split)
    path, keys = npz.path, npz.keys
    present = [s for s in MEDMNIST_SPLITS if f"{s}_images" in keys]
    if split and split not in present:
        raise DataError(f"{path}: has no split {split!r} (found {', '.join(present)})")
    splits = [split] if split else present
    headers = {s: _image_header(npz, f"{s}_images") for s in splits}
    shapes = {s: h[0] for s, h in headers.items()}
    if len({sh[1:] for sh in shapes.values()}) > 1 or len({h[1] for h in headers.values()}) > 1:
        listed = ", ".join(f"{s}_images {shapes[s]} {headers[s][1]}" for s in splits)
        raise DataError(f"{path}: the splits hold images of different shapes or types ({listed}); the file is inconsistent")
    total = sum(sh[0] for sh in shapes.values())
    dtype = headers[splits[0]][1]
    _check_load_memory(npz, (total, *shapes[splits[0]][1:]), dtype, copies=1 if len(splits) > 1 else 0)
    notes: list[str] = []
    images = np.empty((total, *shapes[splits[0]][1:]), dtype=dtype)
    labels, ids, start = [], [], 0
    for s in splits:
        n = shapes[s][0]
        images[start : start + n] = npz.load(f"{s}_images")
        start += n
        ids += [f"{s}/{i}" for i in range(n)]
        if f"{s}_labels" in keys:
            lab = npz.load(f"{s}_labels")
            if len(lab) != n:
                raise LabelMismatchError(
                    f"{path}: {s}_labels holds {len(lab)} labels for {n} images in {s}_images; the file is inconsistent"
                )
            labels.append(lab)
    unlabeled = [s for s in splits if f"{s}_labels" not in keys]
    if labels and unlabeled:
        notes.append(f"no labels for split(s) {', '.join(unlabeled)}: the dataset is read unlabeled")
    arr = prepare_array(images, str(path), size, channels, notes)
    lab = None
    if labels and not unlabeled:
        lab = _labels_1d(np.concatenate(labels), str(path), notes)
    names = class_names_for(path.name, None if lab is None else int(lab.max()) + 1)
    return ImageSet(arr, lab, names, np.array(ids), source=str(path), notes=notes)


def _per_image(npz: NpzArrays, key: str, n: int) -> np.ndarray:
    """A per-image array (labels, split, ids) whose first axis must have one entry per image."""
    values = npz.load(key)
    if values.ndim == 0 or len(values) != n:
        count = 1 if values.ndim == 0 else len(values)
        noun = {"labels": "labels", "split": "split codes", "ids": "ids"}.get(key, f"entries of {key!r}")
        raise LabelMismatchError(
            f"{npz.path}: {count} {noun} for {n} images; the file is inconsistent: give exactly one per image"
        )
    return values


def _split_selection(npz: NpzArrays, split: str | None, n: int) -> np.ndarray | None:
    """Indices of the images of ``split``, checking the ``split`` array whenever it is present."""
    if "split" not in npz.keys:
        if split is not None:
            raise DataError(f"{npz.path}: has no 'split' array, so `split` {split!r} cannot be chosen; leave it unset")
        return None
    codes = _per_image(npz, "split", n)
    if codes.dtype.kind not in "iu" or codes.ndim != 1 or not np.isin(codes, list(SPLIT_CODES.values())).all():
        raise DataError(
            f"{npz.path}: 'split' must hold one code per image: 0 (train), 1 (val) or 2 (test); "
            f"found {np.unique(codes.reshape(-1))[:5].tolist()} ({codes.dtype})"
        )
    if split is None:
        return None
    keep = np.flatnonzero(codes == SPLIT_CODES[split])
    if len(keep) == 0:
        raise EmptyDatasetError(f"{npz.path}: no image has split {split!r} (code {SPLIT_CODES[split]}); choose another")
    return keep


def _read_plain(npz: NpzArrays, split, size, channels) -> ImageSet:
    _check_split(split)
    path, keys = npz.path, npz.keys
    shape, dtype = _image_header(npz, "images")
    n = shape[0]
    keep = _split_selection(npz, split, n)
    _check_load_memory(npz, shape, dtype, copies=0 if keep is None else 1)
    notes: list[str] = []
    images = npz.load("images")
    arr = prepare_array(images if keep is None else images[keep], str(path), size, channels, notes)
    del images
    keep = np.arange(n) if keep is None else keep
    labels = _labels_1d(_per_image(npz, "labels", n), str(path), notes) if "labels" in keys else None
    if labels is not None:
        labels = labels[keep]
    names = None
    if "class_names" in keys:
        names = npz.load("class_names")
        if names.ndim != 1:
            raise DataError(f"{path}: 'class_names' must be one name per class (1-D); got shape {names.shape}")
        names = list(_texts(names))
    ids = np.array([str(i) for i in keep])
    if "ids" in keys:
        ids = _per_image(npz, "ids", n)
        if ids.ndim != 1:
            raise DataError(f"{path}: 'ids' must be one id per image (1-D); got shape {ids.shape}")
        ids = _unique_ids(path, _texts(ids)[keep])
    return ImageSet(arr, labels, names, ids, source=str(path), notes=notes)


def _unique_ids(path: Path, ids: np.ndarray) -> np.ndarray:
    """``ids`` (an npz's ``ids`` array, as text), refused when an id is given to more than one image: ids are
    the keys that label CSVs, the viewer and curation match images on."""
    if problem := repeated_ids(ids):
        raise DataError(f"{path}: in 'ids', {problem}; ids must be unique: give every image its own id, or "
                        "leave 'ids' out to number the images")
    return ids


def _texts(values: np.ndarray) -> np.ndarray:
    """Names or ids as str; bytes are decoded as UTF-8 (undecodable bytes replaced, never an error)."""
    if values.dtype.kind == "S":
        return np.array([v.decode("utf-8", errors="replace") for v in values.reshape(-1)]).reshape(values.shape)
    return values.astype(str)


def from_torch_dataset(dataset, *, size=None, channels: str = "keep", source: str = "<torch Dataset>") -> ImageSet:
    """Read every (image, label) item of a map-style torch ``Dataset``.

    Images may be PIL images, H x W x C uint8 arrays, or C x H x W tensors
    (float in [0, 1] or uint8). Labels may be ints, 0-d or 1-element tensors.
    """
    from PIL import Image

    from .convert import pil_to_array

    refuse_non_images(dataset, "`dataset`")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise DataError(f"{source}: {_sequence_needed(dataset)}")
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
            _check_item(img, i, source)
            arr = np.asarray(img.numpy() if hasattr(img, "numpy") else img)
            if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
                arr = np.moveaxis(arr, 0, -1)
            if arr.ndim not in (2, 3):
                raise DataError(f"{source}: item {i}'s image has shape {arr.shape}; an item must be one image "
                                "(H x W, H x W x C or C x H x W), or an (image, label) pair")
        images.append(arr)
        labels.append(None if label is None else _one_label(label, i, source))
    if size is not None or len({a.shape for a in images}) > 1:
        images = _same_shape(images, size, channels, source)
    lab = None if any(v is None for v in labels) else np.asarray(labels)
    names = list(getattr(dataset, "classes", []) or []) or None
    return from_array(np.stack(images), lab, names, channels=channels, source=source)


def _one_label(label, i: int, source: str):
    """Item ``i``'s label as one value, kept as given: from_array refuses fractional or text labels
    instead of truncating them, and a label of several values (a one-hot vector) is refused here."""
    values = np.asarray(label).reshape(-1)
    if values.size != 1:
        raise DataError(f"{source}: the label of item {i} holds {values.size} values (a one-hot vector?); "
                        "give one class index per image (e.g. label.argmax())")
    return values[0]


def _same_shape(images: list[np.ndarray], size, channels: str, source: str) -> list[np.ndarray]:
    """Items of different sizes or channel counts made alike: resized to ``size`` and converted by
    ``channels``, or one line naming the parameter that would make them alike."""
    from ..errors import MixedSizeError

    items = [prepare_array(a[None], source, size, channels, [])[0] for a in images]
    shapes = {a.shape for a in items}
    if len({sh[:2] for sh in shapes}) > 1:
        raise MixedSizeError(f"{source}: items have different shapes {sorted(shapes)[:3]}; pass `size` to resize")
    if len(shapes) > 1:
        raise MixedSizeError(f"{source}: items have {' and '.join(str(sh[2]) for sh in sorted(shapes))} channels; "
                             "pass `channels` 'rgb' or 'gray' to convert them")
    return items


def _refuse_one_image(shape: tuple[int, ...], image_shape, source: str) -> None:
    """Refuse one image given where a batch is wanted: it would be read as H images of W x C."""
    if image_shape is not None:
        one = shape in {tuple(image_shape), tuple(image_shape[:2])}
    else:  # N x H x W images 3 or 4 pixels wide are not what anyone means
        one = len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > shape[-1]
    if one:
        raise MedcneError(f"{source}: an array of {'x'.join(map(str, shape))} is one image, not {shape[0]} images "
                          f"of {'x'.join(map(str, shape[1:]))}; give a batch of images, e.g. X[None] for one")


def as_imageset(X, image_shape: tuple[int, ...] | None = None) -> ImageSet:
    """An ImageSet from an ImageSet, an image array (numpy or torch; nested lists as an array), or a torch Dataset.

    ``image_shape``: (H, W, C) of one image when the caller knows it; an array
    of one such image is refused (see :func:`from_array`)."""
    if isinstance(X, ImageSet):
        return X
    refuse_non_images(X, "`X`")
    if isinstance(X, np.ndarray):
        return from_array(X, source="X", image_shape=image_shape)
    if type(X).__module__.startswith("torch") and hasattr(X, "numpy"):  # a tensor, without importing torch
        return from_array(X.detach().cpu().numpy(), source="X", image_shape=image_shape)
    if isinstance(X, list) and X and isinstance(X[0], list):  # nested lists of pixel values: an array
        return from_array(np.asarray(X), source="X", image_shape=image_shape)
    if hasattr(X, "__getitem__") and hasattr(X, "__len__"):
        return from_torch_dataset(X)
    if hasattr(X, "__iter__"):
        raise MedcneError(f"X: {_sequence_needed(X)}")
    raise MedcneError(
        f"X must be an ImageSet, an N x H x W x C uint8 array, or a torch Dataset; got {type(X).__name__}"
    )


def refuse_non_images(X, name: str = "`X`") -> None:
    """Refuse, in one line that says what to pass instead, what is often given for images but holds none:
    a path, an npz file's arrays (``np.load``), a dict of arrays (they would be read as a dataset of
    characters, or fail on item 0)."""
    import os
    from collections.abc import Mapping

    kind = type(X).__name__
    if isinstance(X, (str, bytes, os.PathLike)):
        raise MedcneError(f"{name} is a path ({printable(os.fsdecode(X))}), not images; read the dataset with "
                          "`medcne.load_dataset(path)` first and pass the ImageSet it gives")
    if isinstance(X, Mapping):
        keys = [str(k) for k in X.keys()]
        key = next((k for k in keys if k.endswith("images")), keys[0] if keys else "images")
        listed = printable(", ".join(map(repr, keys[:6])) + (", ..." if len(keys) > 6 else "")) or "none"
        what = "an .npz file's arrays (np.load)" if kind == "NpzFile" else f"a {kind}"
        raise MedcneError(
            f"{name} is {what} with keys {listed}, not images; pass the images array, e.g. X[{key!r}] "
            "(labels go with the images in an ImageSet: `medcne.datasets.from_array(images, labels)`"
            + (", or `medcne.load_dataset(path)` reads the file with its labels)" if kind == "NpzFile" else ")"))


def _sequence_needed(X) -> str:
    """Why an iterable without a length cannot be read (an IterableDataset, a generator)."""
    kind = type(X).__name__
    iterable = any(c.__name__ == "IterableDataset" for c in type(X).__mro__)
    return (f"{'an iterable torch Dataset' if iterable else 'an iterable'} ({kind}) has no length and no "
            "items by index, and medcne reads every image by its index; give a map-style torch Dataset "
            "(with __len__ and __getitem__), an N x H x W x C array or an ImageSet")


def _check_item(img, i: int, source: str) -> None:
    """Refuse an item that is no image: a dict (a Hugging Face style record) or a string."""
    from collections.abc import Mapping

    if isinstance(img, Mapping):
        keys = ", ".join(map(repr, list(img)[:6]))
        raise DataError(f"{source}: item {i} is a {type(img).__name__} with keys {printable(keys)}; an item must "
                        "be an image or an (image, label) pair: wrap the dataset so that it returns those, e.g. "
                        "(item['image'], item['label'])")
    if isinstance(img, (str, bytes)):
        raise DataError(f"{source}: item {i} is the text {printable(repr(img), 60)}, not an image; an item must "
                        "be an image (array, tensor or PIL image) or an (image, label) pair")
