"""`ImageSet`: the one type every reader returns.

Images are uint8, N x H x W x C with C = 1 or 3, either in memory (a numpy
array) or in a lazily read store (see :class:`LazyImages`) for datasets that do
not fit in memory, such as PCam.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..defaults import UNLABELLED, chunk_rows
from ..errors import (
    DataError,
    EmptyDatasetError,
    LabelMismatchError,
    MedcneError,
    printable,
)
from .indices import positions, stratified_indices

FINGERPRINT_IMAGES = 64  # images whose pixels go into ImageSet.fingerprint by default
FINGERPRINT_ALL_BYTES = 256 << 20  # fingerprint(sampled=None): every image up to this size...
FINGERPRINT_SPREAD = 4096  # ... else this many, spread over the set


class LazyImages:
    """An N x H x W x C uint8 store read on demand.

    Parameters
    ----------
    read : callable
        ``read(sorted_indices) -> ndarray (len(indices), H, W, C) uint8``; it is
        always called with increasing, unique integer indices into the base store.
    length : int
        Number of images in the base store.
    image_shape : tuple
        (H, W, C) of one image as ``read`` returns it.
    index : ndarray, optional
        A view of the base store: position i of this store is ``index[i]`` there.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(
        self,
        read: Callable[[np.ndarray], np.ndarray],
        length: int,
        image_shape: tuple[int, int, int],
        index: np.ndarray | None = None,
    ):
        self._read = read
        self._length = int(length)
        self._image_shape = tuple(int(s) for s in image_shape)
        self._index = None if index is None else np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return self._length if self._index is None else len(self._index)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self._image_shape)

    def take(self, indices: np.ndarray) -> LazyImages:
        """A lazy view holding only ``indices`` (no pixels are read)."""
        indices = positions(indices, len(self), "take")
        base = indices if self._index is None else self._index[indices]
        return LazyImages(self._read, self._length, self._image_shape, base)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        if isinstance(key, slice):
            key = np.arange(len(self))[key]
        at = positions(key, len(self), "images[...]")
        base = at if self._index is None else self._index[at]
        # Stores such as HDF5 want increasing unique indices; read those, then
        # put the images back in the order asked for.
        unique, inverse = np.unique(base, return_inverse=True)
        return self._read(unique)[inverse]

    def __array__(self, dtype=None, copy=None):
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


ImageArray = np.ndarray | LazyImages


@dataclass
class ImageSet:
    """A dataset of images with optional labels.

    Attributes
    ----------
    images : ndarray or LazyImages
        uint8, shape (N, H, W, C), C in {1, 3}.
    labels : ndarray or None
        int64, shape (N,), index into ``class_names``; ``None`` when unlabeled.
    class_names : list of str or None
        One name per class index.
    ids : ndarray of str
        A stable id per image: a file path relative to the dataset, or an index.
    source : str
        Where the data came from (a path or a short description).
    notes : list of str
        Things a reader noticed and handled (skipped files, dropped alpha...).
    provenance : dict of str to ndarray
        Where each image came from, one array of length N per column (e.g.
        ``slide``, ``level``, ``x``, ``y``, ``mpp`` for slide tiles; ``series``,
        ``slice`` for scans). Empty for benchmark-shaped data. Carried through
        :meth:`take` and into every per-image output.
    """

    images: ImageArray
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    ids: np.ndarray | None = None
    source: str = "<array>"
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, np.ndarray] = field(default_factory=dict)
    # The digest of the pixels fingerprint(sampled=None) hashes, read once: a run's writer, its checkpoints
    # and its evaluation all ask for it (an ImageSet's images are not changed in place).
    _pixel_digest: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        shape = tuple(self.images.shape)
        if len(shape) != 4 or shape[3] not in (1, 3):
            raise MedcneError(
                f"{self.source}: images must be N x H x W x C with C = 1 or 3; got shape {shape}"
            )
        if self.images.dtype != np.uint8:
            raise MedcneError(f"{self.source}: images must be uint8; got {self.images.dtype}")
        n = shape[0]
        if min(shape[1:3]) < 1:
            raise MedcneError(f"{self.source}: images of {shape[1]}x{shape[2]} pixels hold nothing; check the data")
        if n == 0:
            raise EmptyDatasetError(f"{self.source}: the dataset has no images")
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim != 1 or len(labels) != n:
                raise LabelMismatchError(
                    f"{self.source}: {len(labels.reshape(-1))} labels for {n} images; "
                    "give exactly one label per image"
                )
            if labels.dtype.kind not in "iu":
                raise MedcneError(f"{self.source}: labels must be integers; got {labels.dtype}")
            self.labels = labels.astype(np.int64)
            if self.class_names is None:
                self.class_names = [str(c) for c in range(int(self.labels.max()) + 1)]
            if problem := label_range_problem(self.labels, len(self.class_names)):
                raise LabelMismatchError(f"{self.source}: {problem}")
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
            if problem := repeated_name_problem(self.class_names):
                raise LabelMismatchError(f"{self.source}: {problem}")
        if self.ids is None:
            self.ids = np.array([str(i) for i in range(n)])
        self.ids = np.asarray(self.ids).astype(str)
        if len(self.ids) != n:
            raise MedcneError(f"{self.source}: {len(self.ids)} ids for {n} images")
        if problem := repeated_ids(self.ids):  # the keys label CSVs, the viewer and curation match images on
            raise DataError(f"{self.source}: {problem}; ids must be unique: give every image its own id")
        self.provenance = {str(k): np.asarray(v) for k, v in (self.provenance or {}).items()}
        for name, column in self.provenance.items():
            if column.ndim != 1 or len(column) != n:
                raise MedcneError(f"{self.source}: provenance column {name!r} has {column.size} values for {n} images")

    # -- shape -------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.images, LazyImages)

    def iter_chunks(self, chunk: int | None = None):
        """Yield ``(start, images)`` blocks of at most ``chunk`` uint8 images, in order.

        Works the same for in-memory arrays and lazy stores (read block by block).
        ``chunk`` defaults to :data:`medcne.defaults.READ_CHUNK_MB` of images.
        """
        chunk = chunk or chunk_rows(int(np.prod(self.image_shape)))
        for start in range(0, len(self), chunk):
            yield start, np.asarray(self.images[start : start + chunk])

    def fingerprint(self, sampled: int | None = FINGERPRINT_IMAGES, labels: bool = True) -> str:
        """A short hash of the images' shape, ids, labels, class names and pixels: it changes when the
        data do. The pixels are those of ``sampled`` evenly spaced images (a lazy store reads only
        those); ``sampled=None``: every image while they hold at most 256 MB (read in blocks), else
        4,096 spread over the set. ``labels=False``: of the images alone (shape, ids, pixels), which
        stays the same when only the labels were corrected."""
        h = hashlib.sha256(repr((len(self), self.image_shape, *((self.class_names,) if labels else ()))).encode())
        h.update("\0".join(self.ids).encode())
        h.update(b"" if self.labels is None or not labels else self.labels.tobytes())
        if sampled is None:
            h.update(self._all_pixels_digest())
        else:
            h.update(self._sampled_pixels(sampled).tobytes())
        return h.hexdigest()[:16]

    def _sampled_pixels(self, k: int) -> np.ndarray:
        picked = np.unique(np.linspace(0, len(self) - 1, min(k, len(self))).astype(np.int64))
        return np.ascontiguousarray(self.images[picked])

    def _all_pixels_digest(self) -> bytes:
        """SHA-256 of every image while they hold at most 256 MB (read in blocks), else of 4,096 spread
        over the set; computed once per ImageSet."""
        if self._pixel_digest is None:
            h = hashlib.sha256()
            if len(self) * int(np.prod(self.image_shape)) <= FINGERPRINT_ALL_BYTES:
                for _, block in self.iter_chunks():
                    h.update(np.ascontiguousarray(block).tobytes())
            else:
                h.update(self._sampled_pixels(FINGERPRINT_SPREAD).tobytes())
            self._pixel_digest = h.digest()
        return self._pixel_digest

    def to_numpy(self) -> np.ndarray:
        """All images as one in-memory uint8 array (reads a lazy store whole)."""
        return np.asarray(self.images)

    # -- selection ---------------------------------------------------------
    def take(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """A new ImageSet with the images at ``indices`` (positions, in that order, each once; or a boolean
        mask of one value per image, as in numpy)."""
        indices = positions(indices, len(self), "take")
        if len(np.unique(indices)) != len(indices):
            raise MedcneError("`indices` of take: a position is given twice; an ImageSet holds each image once "
                              "(its ids are unique)")
        images = self.images.take(indices) if self.is_lazy else self.images[indices]
        return ImageSet(
            images=images,
            labels=None if self.labels is None else self.labels[indices],
            class_names=self.class_names,
            ids=self.ids[indices],
            source=self.source,
            notes=list(self.notes),
            provenance={k: v[indices] for k, v in self.provenance.items()},
        )

    def known_labels(self) -> np.ndarray | None:
        """The class index of each image, -1 for one without a label (:func:`known_labels`)."""
        return known_labels(self.labels, self.class_names)

    def subset(self, n: int, seed: int = 0) -> ImageSet:
        """A random subset of ``n`` images, stratified by class when labeled."""
        return self.take(stratified_indices(self.labels, len(self), n, seed))

    # -- summaries ---------------------------------------------------------
    def check_shape(self, wanted: tuple, like: str = "the training images") -> None:
        """Refuse images of another shape than ``wanted`` (H, W, C), naming the reading option that differs."""
        if self.image_shape != tuple(wanted):
            raise MedcneError(shape_mismatch(tuple(wanted), self.image_shape, like))

    def class_counts(self) -> dict[str, int]:
        """Images per class name (empty when unlabeled)."""
        if self.labels is None:
            return {}
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}


def int_labels(values, where: str, name: str = "labels") -> np.ndarray:
    """Class codes as int64, refusing what a cast would silently change.

    Integers and booleans pass; floats must be finite whole numbers (MedMNIST's
    uint8 labels saved as float are fine, 0.5 is not: a cast would truncate it);
    text and other dtypes are refused with the fix.
    """
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind in "iub":
        return values.astype(np.int64)
    if kind in "USO":
        shown = ", ".join(repr(str(v)) for v in values.reshape(-1)[:3])
        raise LabelMismatchError(
            f"{where}: {name} are text ({shown}, ...); store integer class codes in {name!r} "
            "and the names in 'class_names'"
        )
    if kind != "f":
        raise LabelMismatchError(f"{where}: {name} must be integers; got dtype {values.dtype}")
    flat = values.reshape(-1)
    bad = np.flatnonzero(~np.isfinite(flat) | (flat != np.round(flat)))
    if len(bad):
        raise LabelMismatchError(
            f"{where}: {name} must be whole numbers; value {flat[bad[0]].item()!r} at position {int(bad[0])} is not "
            f"({len(bad)} such); store integer class codes"
        )
    return values.astype(np.int64)


def reading_fixes(wanted: tuple, got: tuple) -> list[tuple[str, str]]:
    """The reading options (``size``, ``channels``) and values that turn images of shape ``got``
    (H, W, C) into ``wanted``: only those that differ."""
    (h, w, c), (gh, gw, gc) = wanted, got
    fixes = []
    if (gh, gw) != (h, w):
        fixes.append(("size", str(h) if h == w else f"{h}x{w}"))
    if gc != c:
        fixes.append(("channels", "rgb" if c == 3 else "gray"))
    return fixes


def shape_mismatch(wanted: tuple, got: tuple, like: str = "the training images") -> str:
    """Why images of shape ``got`` are refused where ``wanted`` is needed, naming the option that differs."""
    fixes = " and ".join(f"`{name}` {value}" for name, value in reading_fixes(wanted, got))
    return (f"images must be {'x'.join(map(str, wanted))} like {like}; got {'x'.join(map(str, got))}; "
            f"read them with {fixes}")


def repeated_name_problem(class_names: list[str]) -> str | None:
    """What is wrong when two classes share a name (their images could not be told apart by name:
    counts, label columns and maps would join them silently), or None."""
    first: dict[str, int] = {}
    for code, name in enumerate(class_names):
        if first.setdefault(name, code) != code:
            shown = name if len(name) <= 60 else f"{name[:28]}...{name[-28:]}"
            return (f"class name {shown!r} is given to class {first[name]} and class {code}; "
                    "give every class its own name (or the same code, to join them)")
    return None


def repeated_ids(ids) -> str | None:
    """What is wrong with ``ids`` when an id is given to more than one image ("the id 'x' is given to 3
    images (2 ids are repeated)"), or None when every id is unique (ids are the keys that label CSVs, the
    viewer and curation match images on). One sorted copy of the ids array, no Python string per id:
    about 1 s at 2 million ids."""
    ids = np.sort(np.asarray(ids).astype(str))
    if not (ids[1:] == ids[:-1]).any():
        return None
    values, counts = np.unique(ids, return_counts=True)
    repeated = np.flatnonzero(counts > 1)
    first = repeated[np.argmax(counts[repeated])]
    more = f" ({len(repeated)} ids are repeated)" if len(repeated) > 1 else ""
    return f"the id '{printable(values[first], 60)}' is given to {counts[first]} images{more}"


def known_labels(labels, class_names) -> np.ndarray | None:
    """The class index of each image, -1 for an image without a label: of the class ``unlabelled``
    that the readers give images without one (left out of every score, as a class it would be
    learned, scored and suggested). A copy (int64); None without labels."""
    if labels is None:
        return None
    codes = np.asarray(labels).astype(np.int64, copy=True)
    if class_names is not None and UNLABELLED in class_names:
        codes[codes == list(class_names).index(UNLABELLED)] = -1
    return codes


def class_count(names) -> int:
    """How many classes ``names`` holds, the class ``unlabelled`` (no label) not counted."""
    return sum(name != UNLABELLED for name in names)


def label_problem(codes) -> str | None:
    """Why labels ``codes`` (class index per labeled point) cannot score a map, or None when they can.

    kNN accuracy and the silhouette need at least two classes and at least
    one class of two or more points (2 to N - 1 classes).
    """
    codes = np.asarray(codes)
    n_classes = len(np.unique(codes))
    if n_classes < 2:
        return "fewer than two classes are labeled"
    if n_classes > len(codes) - 1:
        return (f"every labeled image is a class of its own ({n_classes} classes for {len(codes)} images; "
                "are the labels ids?)")
    return None


def label_range_problem(labels: np.ndarray, n_classes: int) -> str | None:
    """What is wrong with integer ``labels`` as indices of ``n_classes`` classes, or None."""
    if len(labels) and labels.min() < 0:
        return (f"labels must be class indices 0, 1, 2...; found negative labels (down to {labels.min()}); "
                "give unlabelled ones a class of their own, or leave them out")
    if len(labels) and labels.max() >= n_classes:
        return f"labels must lie in 0..{n_classes - 1} (one per class name); found {labels.min()}..{labels.max()}"
    return None
