"""Writing an image store (:mod:`.store` has its layout, its manifest and the checks of its parts).

:class:`StoreWriter` writes each part into a hidden ``.part-NNNNNN.tmp`` folder,
renames it into place and only then lists it in the manifest, so that a killed
writer leaves nothing a reader sees.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import MedcneError
from ..io import write_json, write_text
from .imageset import reading_fixes, repeated_ids
from .store import (
    FORMAT,
    HEADER_BYTES,
    MANIFEST,
    MARKER,
    MARKER_TEXT,
    PART_FILES,
    PART_RE,
    TMP_RE,
    VERSION,
    _check_shape,
    _edge_sha256,
    _part_folders,
    _sha256_file,
    check_parts,
    check_store_folder,
    next_part,
    read_manifest,
)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    dims = ", ".join(str(s) for s in shape)
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({dims}), }}"
    text = text.ljust(HEADER_BYTES - 10 - 1) + "\n"
    if len(text) != HEADER_BYTES - 10:
        raise MedcneError(f"image shape {shape} too large for a store part")
    return b"\x93NUMPY\x01\x00" + (HEADER_BYTES - 10).to_bytes(2, "little") + text.encode("latin1")


def _as_blocks(images) -> Iterable[np.ndarray]:
    if isinstance(images, np.ndarray):
        for start in range(0, len(images), 4096):
            yield images[start : start + 4096]
    else:
        yield from images


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
        if not (self.path / MANIFEST).is_file() and not _part_folders(self.path):
            if not (self.path / MARKER).is_file():  # a new store (a store that lost its marker is refused below)
                write_text(self.path / MARKER, MARKER_TEXT)
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
