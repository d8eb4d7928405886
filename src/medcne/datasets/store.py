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

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError, MedcneError
from ..runfiles import PARAMS, RUN_MARKER, VIEWER_MARKER

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

    A marked folder whose manifest is missing or damaged is still a store, and so
    is one that holds a store's manifest or first part without the marker: reading
    it says so (:func:`read_manifest`) instead of trying it as another format.
    """
    path = Path(path)
    return path.is_dir() and ((path / MARKER).is_file() or _unmarked_store(path))


def _unmarked_store(path: Path) -> bool:
    """Whether ``path`` holds a store's manifest or its first part (``part-000000``'s two files) but no
    marker: a store that lost its marker, or part folders copied out of one (looked for in two places
    only, not in every file of a large folder of images)."""
    try:
        with open(path / MANIFEST, "rb") as fh:
            if f'"format": "{FORMAT}"'.encode() in fh.read(4096):
                return True
    except OSError:
        pass
    return all((path / "part-000000" / name).is_file() for name in PART_FILES)


def _unmarked_message(path: Path) -> str:
    """What a store without its marker is, and what to do about it."""
    parts = len(_part_folders(path))
    if (path / MANIFEST).is_file():
        return (f"{path}: a medcne store that lost its {MARKER} file ({MANIFEST} and {parts} part folder(s) are "
                "there), so it is not read as one; if medcne wrote this folder, put the file back "
                f"(`touch {path / MARKER}`) and check the store (`medcne info {path} --verify`)")
    return (f"{path}: {parts} part folder(s) of a medcne store without its {MARKER} and {MANIFEST} files (which "
            "list the parts, their class names and checksums), so they cannot be read; if they were copied out of a "
            f"store, copy its {MANIFEST} and {MARKER} in beside them, else convert the data again into a new folder")


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


def _sha256_file(path: Path, start: int = 0, length: int | None = None) -> str:
    digest, buffer = hashlib.sha256(), bytearray(1 << 20)  # one buffer of 1 MiB, read into again and again
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        fh.seek(start)
        left = length if length is not None else os.path.getsize(path) - start
        while left > 0:
            got = fh.readinto(view[: min(left, len(buffer))])
            if not got:
                break
            digest.update(view[:got])
            left -= got
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
        if path.is_dir() and _unmarked_store(path):
            raise DataError(_unmarked_message(path))
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


class PartDamaged(DataError):
    """A part of a store that is missing, truncated or changed: ``part`` is its manifest entry, ``reason``
    what is wrong with it."""

    def __init__(self, path: Path, part: dict, reason: str, damaged: str = "damaged"):
        self.part, self.reason = part, reason
        where = f"{path}: part {part.get('name')!r} ({part.get('dir')})"
        super().__init__(f"{where}{' ' if reason == 'is missing' else ': '}{reason}; the store is {damaged}, "
                         "write it again")


def _check_part(path: Path, part: dict, image_shape, verify: bool) -> None:
    folder = path / str(part.get("dir", ""))
    images, meta = folder / "images.npy", folder / "meta.npz"
    if not PART_RE.fullmatch(str(part.get("dir"))) or not images.is_file() or not meta.is_file():
        raise PartDamaged(path, part, "is missing")
    data_bytes = int(part["n"]) * int(np.prod(image_shape))
    for file, key in ((images, "images_bytes"), (meta, "meta_bytes")):
        if file.stat().st_size != part[key]:
            raise PartDamaged(path, part, f"{file.name} has {file.stat().st_size} bytes, the manifest says "
                              f"{part[key]}", "damaged (truncated or changed)")
    if _sha256_file(meta) != part["meta_sha256"] or _edge_sha256(images, data_bytes) != part["edge_sha256"]:
        raise PartDamaged(path, part, "checksum mismatch")
    if verify and _sha256_file(images, HEADER_BYTES) != part["images_sha256"]:
        raise PartDamaged(path, part, "the pixels' checksum does not match")


def next_part(manifest: dict) -> int:
    """The number of the part folder the next append writes (one after the highest listed)."""
    return 1 + max((int(p["dir"][5:]) for p in manifest["parts"] if PART_RE.fullmatch(str(p.get("dir")))),
                   default=-1)


def check_parts(path: Path, manifest: dict, verify: bool = False) -> None:
    """Refuse a store whose listed parts are missing, truncated or changed (:func:`check_part`), or that
    holds a part folder its manifest does not list (:func:`check_unlisted`), before it is read or
    appended to."""
    check_unlisted(path, manifest)
    for part in manifest["parts"]:
        check_part(path, manifest, part, verify)


def check_unlisted(path: Path, manifest: dict) -> None:
    """Refuse a store that holds a part folder its manifest does not list, other than the one a killed
    append may leave (the next)."""
    listed, last = {str(p.get("dir")) for p in manifest["parts"]}, next_part(manifest)
    for folder in sorted(_part_folders(path)):
        if folder.name not in listed and int(folder.name[5:]) != last:
            raise DataError(f"{folder}: a part folder that {MANIFEST} does not list (it lists "
                            f"{len(manifest['parts'])} part(s)): the manifest is damaged, or the folder is not "
                            "medcne's; move a folder of yours out of the store, else write the store again")


def check_part(path: Path, manifest: dict, part: dict, verify: bool = False) -> None:
    """Refuse (:class:`PartDamaged`) a listed part whose files are missing, truncated or changed: their
    sizes, and checksums of the metadata and of the pixels' edges; ``verify`` hashes every pixel."""
    if int(part.get("n", 0)) <= 0:
        return
    try:
        _check_part(path, part, tuple(manifest["image_shape"]), verify)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, MedcneError):
            raise
        raise DataError(f"{path}: {MANIFEST} entry of part {part.get('name')!r} is damaged; write the store again") from None
