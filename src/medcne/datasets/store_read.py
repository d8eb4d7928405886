"""Reading an on-disk image store (:mod:`.store`): its parts checked, then their pixels memory-mapped.

:func:`open_store` gives a lazy :class:`~medcne.datasets.ImageSet` whose images
are gathered from the parts' ``images.npy`` on demand (:class:`StoreReader`);
labels, ids and provenance columns of all parts are joined.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from ..errors import DataError, EmptyDatasetError
from .convert import convert_channels, resize_images
from .imageset import ImageSet, LazyImages, repeated_ids
from .scancommon import UNLABELLED
from .store import check_parts, read_manifest
from .store_tiles import THUMBNAILS


def _advise_random(array: np.ndarray) -> None:
    """Tell the kernel that ``array``'s memory map is read at random places: a page fault then reads
    that page, not the 128 KiB around it (50 times a 28 x 28 x 3 image, on a cold disk)."""
    region = getattr(array, "_mmap", None)
    if region is not None and hasattr(mmap, "MADV_RANDOM"):
        try:
            region.madvise(mmap.MADV_RANDOM)
        except (OSError, ValueError):
            pass  # advice only


class StoreReader:
    """Gathers images by global index from the parts' memory maps (picklable: reopens by path)."""

    def __init__(self, files: list[Path], counts: list[int], random_access: bool = False):
        self.files = [Path(f) for f in files]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.random_access = random_access
        self._maps = None

    def _open(self) -> list[np.ndarray]:
        if self._maps is None:
            self._maps = [np.load(f, mmap_mode="r") for f in self.files]
            if self.random_access:
                for m in self._maps:
                    _advise_random(m)
        return self._maps

    def for_random_access(self) -> StoreReader:
        """The same images, read without the kernel's read-ahead (for batches of random indices)."""
        return StoreReader(self.files, np.diff(self.offsets).tolist(), random_access=True)

    def __getstate__(self) -> dict:
        return {"files": self.files, "offsets": self.offsets, "random_access": self.random_access, "_maps": None}

    def __call__(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images at ``indices`` (any order), into ``out`` when given."""
        maps = self._open()
        indices = np.asarray(indices, dtype=np.int64)
        if out is None:
            out = np.empty((len(indices), *maps[0].shape[1:]), dtype=np.uint8)
        parts = np.searchsorted(self.offsets, indices, side="right") - 1
        for p in np.unique(parts):
            where = np.flatnonzero(parts == p)
            local = indices[where] - self.offsets[p]
            if len(local) > 1 and local[-1] - local[0] == len(local) - 1 and np.all(np.diff(local) == 1):
                out[where] = maps[p][local[0] : local[-1] + 1]  # a run: one sequential read
            else:
                out[where] = maps[p][local]
        return out


def open_store(path, *, verify: bool = False, parts: int | None = None, classes: int | None = None) -> ImageSet:
    """The store at ``path`` as a lazy :class:`ImageSet` (pixels read on demand through np.memmap).

    Sizes and checksums of metadata and pixel edges are checked; ``verify=True``
    also hashes every pixel. ``parts``: read only the first that many parts
    (the store as a run read it, before later appends; :func:`store_parts`);
    ``classes``: its first that many class names (those the store named then).
    """
    path = Path(path)
    manifest = read_manifest(path)
    shape = tuple(manifest["image_shape"])
    listed = manifest["parts"]
    if parts is not None:
        if parts > len(listed):
            raise DataError(f"{path}: the store holds {len(listed)} part(s), fewer than the {parts} it held when "
                            "it was read for this; it is not that store")
        listed = listed[:parts]
    parts = [p for p in listed if int(p.get("n", 0)) > 0]
    if not parts:
        raise EmptyDatasetError(_empty_message(path, manifest))
    check_parts(path, manifest, verify=verify)
    metas = read_metas(path, parts)
    codes = np.concatenate([m["labels"] for m in metas])
    class_names = list(manifest["class_names"])
    if classes is not None and parts is not None:  # class names are only appended: those named then come first
        class_names = class_names[:classes]
    notes = []
    if (codes < 0).all():
        labels, class_names = None, None
    elif (codes < 0).any():
        # Unlabelled images join a class of that name when the store has one (a converted store's).
        if UNLABELLED not in class_names:
            class_names.append(UNLABELLED)
        notes.append(f"{int((codes < 0).sum())} unlabelled images are in the class {UNLABELLED!r}")
        labels = np.where(codes < 0, class_names.index(UNLABELLED), codes)
    else:
        labels = codes
    provenance = _join_provenance(metas, parts, notes)
    reader = StoreReader([path / p["dir"] / "images.npy" for p in parts], [int(p["n"]) for p in parts])
    images = LazyImages(reader, int(reader.offsets[-1]), shape)
    ids = np.concatenate([m["ids"] for m in metas])
    if problem := repeated_ids(ids):
        raise DataError(f"{path}: {problem}; ids must be unique "
                        "(label CSVs, the viewer and curation match images by id): write the store again, "
                        "naming each appended part (`medcne convert DATA --out STORE --append --part NAME`) so that "
                        "its ids cannot repeat those of the parts before")
    return ImageSet(images, labels, class_names, ids, source=str(path), notes=notes, provenance=provenance)


def read_metas(path: Path, parts: list[dict]) -> list[dict]:
    """The arrays of each part's meta.npz (labels, ids, provenance), in the manifest's order; the parts
    are checked by whoever read the manifest (:func:`open_store`, the store writer)."""
    metas = []
    for part in parts:
        with np.load(Path(path) / part["dir"] / "meta.npz", allow_pickle=False) as z:
            metas.append({k: z[k] for k in z.files})
    return metas


def _empty_message(path: Path, manifest: dict) -> str:
    """Why a store holds no image, and its fix: a tiling run stopped before its first slide is resumed."""
    if manifest.get("tiling") is not None or (path / THUMBNAILS).is_dir():
        return (f"{path}: a store of slide tiles that holds no complete slide yet (its tiling stopped before the "
                "first slide was committed); run the same `medcne tile` command again")
    return f"{path}: the store holds no complete part yet; add images with `medcne convert`"


def _join_provenance(metas: list[dict], parts: list[dict], notes: list[str]) -> dict[str, np.ndarray]:
    """The parts' provenance columns, joined: every column any part has, its values left empty
    ('' for text, NaN for numbers) in the images of parts without it (noted). A column that is
    text in one part and numbers in another becomes text."""
    keys = list(dict.fromkeys(k for m in metas for k in m if k.startswith("prov_")))
    provenance, lacking = {}, {}
    for key in keys:
        text = any(m[key].dtype.kind == "U" for m in metas if key in m)
        blocks = []
        for part, m in zip(parts, metas, strict=True):
            if key in m:
                blocks.append(m[key].astype(str) if text else m[key])
            else:
                blocks.append(np.full(len(m["ids"]), "" if text else np.nan, dtype="U1" if text else np.float32))
                lacking.setdefault(part["name"], []).append(key[5:])
        provenance[key[5:]] = np.concatenate(blocks)
    by_columns = {}
    for name, columns in lacking.items():
        by_columns.setdefault(tuple(columns), []).append(name)
    for columns, names in by_columns.items():
        n = sum(len(m["ids"]) for p, m in zip(parts, metas, strict=True) if p["name"] in names)
        shown = ", ".join(map(repr, names[:5])) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        notes.append(f"provenance column(s) {', '.join(columns)} left empty ('' for text, NaN for numbers) "
                     f"for the {n} images of part(s) {shown}, which do not have them")
    return provenance


def store_parts(path) -> tuple[int, int]:
    """How many parts and class names the store at ``path`` holds now: what a run records, so that the
    parts appended later are not read as its images, nor their classes as its classes
    (``load_dataset(..., store_parts=[N, C])``)."""
    manifest = read_manifest(path)
    return len(manifest["parts"]), len(manifest["class_names"])


def read_store(path, *, size=None, channels: str = "keep", parts=None) -> ImageSet:
    """:func:`open_store` for :func:`~medcne.datasets.load_dataset`: resized or recoloured on read when asked.
    ``parts``: [parts, class names] as a run recorded them (:func:`store_parts`)."""
    parts, classes = (None, None) if parts is None else (int(parts[0]), int(parts[1]))
    data = open_store(path, parts=parts, classes=classes)
    h, w, c = data.image_shape
    out_c = {"keep": c, "rgb": 3, "gray": 1}[channels]
    out_hw = size or (h, w)
    if (*out_hw, out_c) == (h, w, c):
        return data
    reader, where = data.images._read, str(path)

    def read(indices: np.ndarray) -> np.ndarray:
        return resize_images(convert_channels(reader(indices), channels, where, []), size, where)

    images = LazyImages(read, len(data), (*out_hw, out_c))
    return ImageSet(images, data.labels, data.class_names, data.ids, source=data.source, notes=data.notes,
                    provenance=data.provenance)
