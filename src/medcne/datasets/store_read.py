"""Reading an on-disk image store (:mod:`.store`): its parts checked, then their pixels memory-mapped.

:func:`open_store` gives a lazy :class:`~medcne.datasets.ImageSet` whose images
are gathered from the parts' ``images.npy`` on demand (:class:`StoreReader`);
labels, ids and provenance columns of all parts are joined. The pixels are
mapped a window at a time, and a process keeps only a few windows mapped
(:data:`MAPPED_BYTES`), so that a store of any size is read under a limit on
virtual memory; :func:`verify_store` hashes every pixel of every part.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..defaults import chunk_rows
from ..errors import DataError, EmptyDatasetError
from .convert import convert_channels, resize_images
from .imageset import ImageSet, LazyImages, repeated_ids
from .memory import format_bytes, process_limits
from .scancommon import UNLABELLED
from .store import HEADER_BYTES, PartDamaged, check_part, check_parts, check_unlisted, read_manifest
from .store_tiles import THUMBNAILS

# A part's pixels are mapped a window of rows at a time, and a process keeps at most MAPS_OPEN windows of
# at most MAPPED_BYTES in all (least recently used first out; under a limit on virtual memory, a quarter
# of what the limit leaves): a job under such a limit (`ulimit -v`, a cluster's vmem) could not map a
# store larger than it at once, and each map holds an open file (2,000 slides would pass `ulimit -n`).
WINDOW_BYTES = 256 << 20
MAPPED_BYTES = 1 << 30
MAPS_OPEN = 64
_MAPS: OrderedDict = OrderedDict()  # (reader token, part, first row) -> that window's rows, memory-mapped
_MAPPED = [0]  # bytes of the windows in _MAPS
_MAPS_LOCK = threading.RLock()  # re-entrant: a reader collected while the lock is held lets its windows go
_TOKENS = itertools.count()


def _advise_random(array: np.ndarray) -> None:
    """Tell the kernel that ``array``'s memory map is read at random places: a page fault then reads
    that page, not the 128 KiB around it (50 times a 28 x 28 x 3 image, on a cold disk)."""
    region = array.base
    if isinstance(region, mmap.mmap) and hasattr(mmap, "MADV_RANDOM"):
        try:
            region.madvise(mmap.MADV_RANDOM)
        except (OSError, ValueError):
            pass  # advice only


def _map_budget() -> int:
    """Bytes of windows the process may keep mapped now: :data:`MAPPED_BYTES`, or a quarter of what its
    limit on virtual memory leaves besides them when that is less (the rest for its other allocations)."""
    left = [soft - used for flag, soft, used in process_limits() if flag == "-v"]
    if not left:
        return MAPPED_BYTES
    return min(MAPPED_BYTES, max(left[0] + _MAPPED[0], 0) // 4)


def _make_room(nbytes: int) -> None:
    """Let go of the least recently used windows until one more of ``nbytes`` keeps within
    :data:`MAPS_OPEN` and :func:`_map_budget` (a window let go is unmapped once no read holds it)."""
    budget = _map_budget()
    with _MAPS_LOCK:
        while _MAPS and (len(_MAPS) >= MAPS_OPEN or _MAPPED[0] + nbytes > budget):
            _MAPPED[0] -= _MAPS.popitem(last=False)[1].nbytes


def _kept(key: tuple, rows: np.ndarray) -> np.ndarray:
    """``rows`` kept mapped under ``key``, or the window another thread mapped there first."""
    with _MAPS_LOCK:
        if key in _MAPS:
            return _MAPS[key]
        _MAPS[key] = rows
        _MAPPED[0] += rows.nbytes
    return rows


def _forget(token: int | None) -> None:
    """Let go of the windows of the reader ``token`` (one that is gone), or of every reader (None)."""
    with _MAPS_LOCK:
        for key in [k for k in _MAPS if token is None or k[0] == token]:
            _MAPPED[0] -= _MAPS.pop(key).nbytes


def _contiguous(a: np.ndarray) -> slice | np.ndarray:
    """``a`` as a slice when it is a run of increasing positions (one sequential copy), else ``a``."""
    if len(a) > 1 and a[-1] - a[0] == len(a) - 1 and np.all(np.diff(a) == 1):
        return slice(int(a[0]), int(a[-1]) + 1)
    return a


class StoreReader:
    """Gathers images by global index from windows of the parts' ``images.npy`` mapped on demand
    (picklable: reopens by path). ``image_shape``: (H, W, C), as the manifest says."""

    def __init__(self, files: list[Path], counts: list[int], image_shape: tuple[int, int, int],
                 random_access: bool = False):
        self.files = [Path(f) for f in files]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.random_access = random_access
        self._start()

    def _start(self) -> None:
        window = min(WINDOW_BYTES, _map_budget() // 4)  # smaller under a tight limit on virtual memory
        self.rows = max(window // int(np.prod(self.image_shape)), 1)  # rows of a window
        windows = -(-np.diff(self.offsets) // self.rows)
        self.first_window = np.concatenate([[0], np.cumsum(windows)]).astype(np.int64)
        self._token = next(_TOKENS)
        weakref.finalize(self, _forget, self._token)

    def for_random_access(self) -> StoreReader:
        """The same images, read without the kernel's read-ahead (for batches of random indices)."""
        return StoreReader(self.files, np.diff(self.offsets).tolist(), self.image_shape, random_access=True)

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("files", "offsets", "image_shape", "random_access")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start()

    def _window(self, part: int, start: int) -> np.ndarray:
        """The rows ``start`` onwards (a window's) of part ``part``, mapped (kept mapped a while)."""
        key = (self._token, part, start)
        with _MAPS_LOCK:
            if key in _MAPS:
                _MAPS.move_to_end(key)
                return _MAPS[key]
        n = min(self.rows, int(self.offsets[part + 1] - self.offsets[part]) - start)
        _make_room(n * int(np.prod(self.image_shape)))
        rows = self._map(part, start, n)
        if self.random_access:
            _advise_random(rows)
        return _kept(key, rows)

    def _map(self, part: int, start: int, n: int) -> np.ndarray:
        row = int(np.prod(self.image_shape))

        def mapped() -> np.ndarray:  # not np.memmap: half the time, which counts when random batches map often
            offset = HEADER_BYTES + start * row
            first = offset - offset % mmap.ALLOCATIONGRANULARITY
            with open(self.files[part], "rb") as fh:
                region = mmap.mmap(fh.fileno(), offset - first + n * row, access=mmap.ACCESS_READ, offset=first)
            return np.ndarray((n, *self.image_shape), np.uint8, buffer=region, offset=offset - first)

        try:
            return mapped()
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise
        _forget(None)  # the windows kept mapped may be what the limit lacks
        try:
            return mapped()
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise
            raise DataError(f"{self.files[part]}: no virtual memory left to map {format_bytes(n * row)} of its "
                            "images: the process's limit on virtual memory (`ulimit -v`, a job's vmem request) is "
                            f"too small for what it runs; raise it by {format_bytes(MAPPED_BYTES)} or more") from None

    def __call__(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images at ``indices`` (any order), into ``out`` when given."""
        indices = np.asarray(indices, dtype=np.int64)
        if out is None:
            out = np.empty((len(indices), *self.image_shape), dtype=np.uint8)
        parts = np.searchsorted(self.offsets, indices, side="right") - 1
        local = indices - self.offsets[parts]
        windows = self.first_window[parts] + local // self.rows
        order = np.argsort(windows, kind="stable")  # a window's images together, in the order asked for
        for group in np.split(order, np.flatnonzero(np.diff(windows[order])) + 1) if len(order) else []:
            part = int(parts[group[0]])
            start = int(windows[group[0]] - self.first_window[part]) * self.rows
            out[_contiguous(group)] = self._window(part, start)[_contiguous(local[group] - start)]
        return out


def open_store(path, *, verify: bool = False, parts: int | None = None, classes: int | None = None) -> ImageSet:
    """The store at ``path`` as a lazy :class:`ImageSet` (pixels read on demand through memory maps).

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
    reader = StoreReader([path / p["dir"] / "images.npy" for p in parts], [int(p["n"]) for p in parts], shape)
    images = LazyImages(reader, int(reader.offsets[-1]), shape)
    ids = np.concatenate([m["ids"] for m in metas])
    if problem := repeated_ids(ids):
        raise DataError(f"{path}: {problem}; ids must be unique "
                        "(label CSVs, the viewer and curation match images by id): write the store again, "
                        "naming each appended part (`medcne convert DATA --out STORE --append --part NAME`) so that "
                        "its ids cannot repeat those of the parts before")
    return ImageSet(images, labels, class_names, ids, source=str(path), notes=notes, provenance=provenance)


def verify_store(path) -> list[PartDamaged]:
    """Hash every pixel of every part of the store at ``path`` (reading all of it) and check each part's
    sizes and other checksums: what is wrong with each damaged part, in the manifest's order (empty:
    every part is intact). A store that cannot be checked at all (no manifest, a part folder it does
    not list) raises :class:`~medcne.errors.DataError`."""
    path = Path(path)
    manifest = read_manifest(path)
    check_unlisted(path, manifest)
    damaged = []
    for part in manifest["parts"]:
        try:
            check_part(path, manifest, part, verify=True)
        except PartDamaged as exc:
            damaged.append(exc)
    return damaged


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
    step = chunk_rows(h * w * c)  # the stored images read at a time, however small the result's

    def read(indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *out_hw, out_c), dtype=np.uint8)
        for start in range(0, len(indices), step):
            block = reader(indices[start : start + step])
            out[start : start + len(block)] = resize_images(convert_channels(block, channels, where, []), size, where)
        return out

    images = LazyImages(read, len(data), (*out_hw, out_c))
    return ImageSet(images, data.labels, data.class_names, data.ids, source=data.source, notes=data.notes,
                    provenance=data.provenance)
