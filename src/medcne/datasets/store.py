"""An on-disk image store: a folder of parts that medcne writes and reads lazily.

Layout of a store folder::

    MEDCNE_STORE          marker: medcne wrote this folder
    manifest.json         image shape, class names and the committed parts (written last, atomically)
    part-000000/
        images.npy        uint8 (n, H, W, C), read with np.memmap
        meta.npz          labels (codes into class_names, -1 = none), ids, provenance columns

A part is written into a hidden ``.part-NNNNNN.tmp`` folder, renamed into
place, and only then listed in the manifest: a killed writer leaves a folder
the manifest does not list, which a reader ignores and the next writer
removes. Opening checks every part's file sizes, the checksum of its metadata
and of the first and last MiB of its pixels (``verify=True`` hashes all the
pixels).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError, MedcneError
from ..io import write_json, write_text
from ..runfiles import PARAMS, RUN_MARKER, VIEWER_MARKER
from .imageset import reading_fixes, repeated_ids

MARKER = "MEDCNE_STORE"
MANIFEST = "manifest.json"
FORMAT = "medcne-store"
VERSION = 1
# The .npy header is given a fixed length so that it can be written before the
# number of images is known and rewritten in place at the end.
HEADER_BYTES = 128
# Bytes at each end of a part's pixels hashed on every open (a cheap check for truncation or overwrites).
EDGE_BYTES = 1 << 20
PART_RE = re.compile(r"part-(\d{6})")
TMP_RE = re.compile(r"\.part-(\d{6})\.tmp")
PART_FILES = ("images.npy", "meta.npz")  # all a part folder holds
MARKER_TEXT = "medcne image store: written by medcne (manifest.json lists the complete parts)\n"


def is_store(path) -> bool:
    """Whether ``path`` is a folder written by :class:`StoreWriter` (its marker is there).

    A marked folder whose manifest is missing or damaged is still a store: reading
    it says so (:func:`read_manifest`) instead of trying it as another format.
    """
    path = Path(path)
    return path.is_dir() and (path / MARKER).is_file()


def _part_folders(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if PART_RE.fullmatch(p.name) and p.is_dir()]


def check_store_folder(path, where: str | None = None) -> None:
    """Refuse, with one line, a ``path`` a store may not be written to: a file, or a folder
    that holds files and is not a store (saying what it is when medcne wrote it as something else).

    ``where`` names the path in the message (default: the path itself).
    """
    path = Path(path)
    where = where or str(path)
    if path.exists() and not path.is_dir():
        raise MedcneError(f"{where}: exists and is not a folder; choose a new store folder")
    if not path.is_dir() or is_store(path) or not any(path.iterdir()):
        return
    if (path / RUN_MARKER).is_file() or (path / PARAMS).is_file():
        what = "a medcne run folder, not a store"
    elif (path / VIEWER_MARKER).is_file():
        what = "a page folder of `medcne view`, not a store"
    else:
        what = "a folder with files medcne did not write (not a medcne store)"
    raise MedcneError(f"{where} is {what}; choose a new or empty folder for the store")


def _check_shape(image_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
        raise MedcneError(f"image_shape must be (H, W, C) with C = 1 or 3; got {image_shape!r}")
    return shape


def _npy_header(shape: tuple[int, ...]) -> bytes:
    dims = ", ".join(str(s) for s in shape)
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({dims}), }}"
    text = text.ljust(HEADER_BYTES - 10 - 1) + "\n"
    if len(text) != HEADER_BYTES - 10:
        raise MedcneError(f"image shape {shape} too large for a store part")
    return b"\x93NUMPY\x01\x00" + (HEADER_BYTES - 10).to_bytes(2, "little") + text.encode("latin1")


def _sha256_file(path: Path, start: int = 0, length: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length if length is not None else os.path.getsize(path) - start
        while left > 0:
            block = fh.read(min(left, 1 << 22))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def _edge_sha256(path: Path, data_bytes: int) -> str:
    """Hash of the first and last :data:`EDGE_BYTES` of a part's pixels."""
    head = _sha256_file(path, HEADER_BYTES, min(EDGE_BYTES, data_bytes))
    tail_start = HEADER_BYTES + max(data_bytes - EDGE_BYTES, 0)
    return head + _sha256_file(path, tail_start, data_bytes - (tail_start - HEADER_BYTES))


def read_manifest(path) -> dict:
    """The manifest of the store at ``path``, or a one-line error saying what is wrong."""
    path = Path(path)
    if not (path / MARKER).is_file():
        raise DataError(f"{path}: not a medcne store (no {MARKER} file); make one with `medcne convert DATA --out STORE`")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        parts = len(_part_folders(path))
        if not parts:
            raise DataError(f"{path}: a medcne store whose {MANIFEST} is missing and that holds no part: it was "
                            "never completed; convert the data again") from None
        raise DataError(f"{path}: a medcne store whose {MANIFEST} is missing, so its {parts} part folder(s) cannot "
                        "be checked or read: the store is damaged; convert the data again into a new folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: damaged {MANIFEST} ({type(exc).__name__}); write the store again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("parts"), list):
        raise DataError(f"{path}: {MANIFEST} is not a medcne store manifest; write the store again")
    if manifest.get("version") != VERSION:
        raise DataError(f"{path}: store version {manifest.get('version')!r}; this medcne reads version {VERSION}, "
                        "convert the data again with this version")
    _check_shape(manifest.get("image_shape"))
    return manifest


def _as_blocks(images) -> Iterable[np.ndarray]:
    if isinstance(images, np.ndarray):
        for start in range(0, len(images), 4096):
            yield images[start : start + 4096]
    else:
        yield from images


def _check_part(path: Path, part: dict, image_shape, verify: bool) -> None:
    where = f"{path}: part {part.get('name')!r} ({part.get('dir')})"
    folder = path / str(part.get("dir", ""))
    images, meta = folder / "images.npy", folder / "meta.npz"
    if not PART_RE.fullmatch(str(part.get("dir"))) or not images.is_file() or not meta.is_file():
        raise DataError(f"{where} is missing; the store is damaged, write it again")
    data_bytes = int(part["n"]) * int(np.prod(image_shape))
    for file, key in ((images, "images_bytes"), (meta, "meta_bytes")):
        if file.stat().st_size != part[key]:
            raise DataError(f"{where}: {file.name} has {file.stat().st_size} bytes, the manifest says {part[key]}; "
                            "the store is damaged (truncated or changed), write it again")
    if _sha256_file(meta) != part["meta_sha256"] or _edge_sha256(images, data_bytes) != part["edge_sha256"]:
        raise DataError(f"{where}: checksum mismatch; the store is damaged, write it again")
    if verify and _sha256_file(images, HEADER_BYTES) != part["images_sha256"]:
        raise DataError(f"{where}: the pixels' checksum does not match; the store is damaged, write it again")


def next_part(manifest: dict) -> int:
    """The number of the part folder the next append writes (one after the highest listed)."""
    return 1 + max((int(p["dir"][5:]) for p in manifest["parts"] if PART_RE.fullmatch(str(p.get("dir")))),
                   default=-1)


def check_parts(path: Path, manifest: dict, verify: bool = False) -> None:
    """Refuse a store whose listed parts are missing, truncated or changed (sizes, and checksums of the
    metadata and of the pixels' edges; ``verify`` hashes every pixel), or that holds a part folder its
    manifest does not list other than the one a killed append may leave (the next), before it is read
    or appended to."""
    shape = tuple(manifest["image_shape"])
    listed, last = {str(p.get("dir")) for p in manifest["parts"]}, next_part(manifest)
    for folder in sorted(_part_folders(path)):
        if folder.name not in listed and int(folder.name[5:]) != last:
            raise DataError(f"{folder}: a part folder that {MANIFEST} does not list (it lists "
                            f"{len(manifest['parts'])} part(s)): the manifest is damaged, or the folder is not "
                            "medcne's; move a folder of yours out of the store, else write the store again")
    for part in manifest["parts"]:
        if int(part.get("n", 0)) <= 0:
            continue
        try:
            _check_part(path, part, shape, verify)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, MedcneError):
                raise
            raise DataError(f"{path}: {MANIFEST} entry of part {part.get('name')!r} is damaged; write the store again") from None


class StoreWriter:
    """Create or append to an on-disk image store folder, one named part at a time.

    Parameters
    ----------
    path : str or Path
        The store folder: created (and marked as medcne's) when new or empty,
        opened for appending when it is a store. Any other folder is refused.
    image_shape : tuple
        (H, W, C) of every image; an existing store of another shape is refused.
    tiling : dict, optional
        How a store of slide tiles was cut (`medcne tile`): recorded in the
        manifest of a new store, so that a later run can check that it cuts
        tiles of the same scale; an existing store keeps its own record.
    """

    def __init__(self, path, image_shape: tuple[int, int, int], tiling: dict | None = None):
        self.path = Path(path)
        self.image_shape = _check_shape(image_shape)
        self.tiling = tiling
        check_store_folder(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "a")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise MedcneError(f"{self.path}: another process is writing this store; wait for it to finish") from None
        try:
            self.manifest = self._open_manifest()
            self._remove_unlisted()
        except BaseException:
            self.close()
            raise

    def _open_manifest(self) -> dict:
        if not (self.path / MARKER).is_file():
            write_text(self.path / MARKER, MARKER_TEXT)
        if not (self.path / MANIFEST).is_file() and not _part_folders(self.path):
            manifest = {"format": FORMAT, "version": VERSION, "image_shape": list(self.image_shape),
                        "n": 0, "class_names": [], "parts": []}
            if self.tiling is not None:
                manifest["tiling"] = dict(self.tiling)
            write_json(self.path / MANIFEST, manifest)
            return manifest
        manifest = read_manifest(self.path)  # refuses a store whose parts lost their manifest: never emptied here
        shape = tuple(manifest["image_shape"])
        if shape != self.image_shape:
            fixes = [f"--{name} {value}" for name, value in reading_fixes(shape, self.image_shape)]
            raise MedcneError(f"{self.path}: the store holds images of {shape}, not {self.image_shape}; "
                              f"read the data with {' '.join(fixes)} to match, or choose another store")
        check_parts(self.path, manifest)  # a part added to a damaged store would not make it readable
        return manifest

    def _remove_unlisted(self) -> None:
        """Remove the part folders a killed writer left behind (never listed, so never read): those that
        hold nothing but a part's files. One holding anything else is refused, never emptied."""
        listed = {p["dir"] for p in self.manifest["parts"]}
        for child in self.path.iterdir():
            ours = PART_RE.fullmatch(child.name) or TMP_RE.fullmatch(child.name)
            if not ours or not child.is_dir() or child.is_symlink() or child.name in listed:
                continue
            foreign = sorted(p.name for p in child.iterdir() if p.name not in PART_FILES or not p.is_file())
            if foreign:
                raise MedcneError(f"{child}: a folder named as a part of the store holds files medcne did not "
                                  f"write there ({', '.join(foreign[:5])}); move it out of the store, then add the "
                                  "part again")
            shutil.rmtree(child)

    def has_part(self, name: str) -> bool:
        """Whether a part of this name is already committed (a rerun skips it)."""
        return self.part_size(name) is not None

    def part_size(self, name: str) -> int | None:
        """The number of images of the committed part ``name`` (None when there is none), for messages."""
        return next((int(p["n"]) for p in self.manifest["parts"] if p["name"] == str(name)), None)

    def __len__(self) -> int:
        return int(self.manifest["n"])

    def add_part(self, name: str, images: np.ndarray | Iterable[np.ndarray], *,
                 labels: Sequence[str | None] | None = None, ids: Sequence[str],
                 provenance: dict[str, np.ndarray] | None = None, class_names: Sequence[str] | None = None,
                 tiling: dict | None = None) -> int:
        """Write one part and commit it; returns the number of images added.

        Parameters
        ----------
        name : str
            Unique within the store (a slide name, a source file).
        images : ndarray or iterable of ndarray
            uint8 (n, H, W, C), or blocks of such (streamed, never joined in memory).
        labels : sequence of str or None, optional
            One class NAME per image (None: unlabelled).
        ids : sequence of str
            One id per image.
        provenance : dict of str to ndarray, optional
            Per-image columns (numbers or text), each of length n.
        class_names : sequence of str, optional
            All the classes of the source, in its order: registered first, so a
            converted dataset keeps its class codes (and classes without images).
        tiling : dict, optional
            The options a slide's tiles were cut with, recorded in the part's
            manifest entry (committed with it), so a later run can tell when it
            would have cut them otherwise.
        """
        name = str(name)
        if problem := repeated_ids(ids):  # before any pixel is written
            raise MedcneError(f"{self.path}: in part {name!r}, {problem}; give every image its own id")
        if self.has_part(name):
            raise MedcneError(f"{self.path}: the store already holds a part named {name!r}; "
                              "give another name or skip it (has_part)")
        index = next_part(self.manifest)
        tmp = self.path / f".part-{index:06d}.tmp"
        final = self.path / f"part-{index:06d}"
        tmp.mkdir()
        try:
            n, sha = self._write_images(tmp / "images.npy", images)
            self._write_meta(tmp / "meta.npz", n, labels, ids, provenance or {}, class_names or [])
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        data_bytes = n * int(np.prod(self.image_shape))
        part = {"name": name, "dir": final.name, "n": n, "images_bytes": HEADER_BYTES + data_bytes,
                "images_sha256": sha, "edge_sha256": _edge_sha256(final / "images.npy", data_bytes),
                "meta_bytes": (final / "meta.npz").stat().st_size, "meta_sha256": _sha256_file(final / "meta.npz")}
        if tiling is not None:
            part["tiling"] = dict(tiling)
        manifest = dict(self.manifest, parts=[*self.manifest["parts"], part], n=self.manifest["n"] + n)
        write_json(self.path / MANIFEST, manifest)  # the commit: only now does a reader see the part
        self.manifest = manifest
        return n

    def _write_images(self, path: Path, images) -> tuple[int, str]:
        digest, n = hashlib.sha256(), 0
        with open(path, "wb") as fh:
            fh.write(b"\0" * HEADER_BYTES)
            for block in _as_blocks(images):
                block = np.asarray(block)
                if block.dtype != np.uint8 or block.ndim != 4 or tuple(block.shape[1:]) != self.image_shape:
                    raise MedcneError(f"{self.path}: images for the store must be uint8 of shape "
                                      f"(n, {', '.join(map(str, self.image_shape))}); got {block.dtype} "
                                      f"{tuple(block.shape)}")
                data = memoryview(np.ascontiguousarray(block)).cast("B")  # the block's bytes, not a copy of them
                digest.update(data)
                fh.write(data)
                n += len(block)
            fh.seek(0)
            fh.write(_npy_header((n, *self.image_shape)))
            fh.flush()
            os.fsync(fh.fileno())
        return n, digest.hexdigest()

    def _write_meta(self, path: Path, n: int, labels, ids, provenance: dict, known: Sequence[str]) -> None:
        ids = np.asarray([str(i) for i in ids])
        if len(ids) != n:
            raise MedcneError(f"{self.path}: {len(ids)} ids for {n} images; give one id per image")
        codes = np.full(n, -1, dtype=np.int64)
        if labels is not None:
            labels = list(labels)
            if len(labels) != n:
                raise MedcneError(f"{self.path}: {len(labels)} labels for {n} images; give one label per image")
            names = self.manifest["class_names"]
            for name in dict.fromkeys([*map(str, known), *(str(v) for v in labels if v is not None)]):
                if name not in names:
                    names.append(name)  # existing codes keep their meaning: names are only appended
            lookup = {c: i for i, c in enumerate(names)}
            codes = np.array([-1 if v is None else lookup[str(v)] for v in labels], dtype=np.int64)
        columns = {}
        for key, column in provenance.items():
            column = np.asarray(column)
            if column.ndim != 1 or len(column) != n or column.dtype.kind not in "biufU":
                raise MedcneError(f"{self.path}: provenance column {key!r} must hold {n} numbers or texts; "
                                  f"got {column.dtype} of shape {column.shape}")
            columns[f"prov_{key}"] = column
        with open(path, "wb") as fh:
            np.savez(fh, labels=codes, ids=ids, **columns)
            fh.flush()
            os.fsync(fh.fileno())

    def close(self) -> None:
        """Release the store (the parts are committed as they are added)."""
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
