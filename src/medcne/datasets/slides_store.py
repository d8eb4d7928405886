"""A stand-in for the on-disk image store (:mod:`medcne.datasets.store`) until that module is merged.

It has the store's interface exactly (``StoreWriter``, ``open_store``,
``is_store``) so that the tiler writes through it unchanged; the tiler uses the
real store as soon as ``medcne.datasets.store`` exists. Layout: a marker file,
``manifest.json`` (written atomically, listing only complete parts) and per
part ``parts/<name>.u8`` (raw uint8 images) and ``parts/<name>.npz`` (labels,
ids, provenance).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write, save_npz, write_json, write_text
from .imageset import ImageSet, LazyImages

MARKER = ".medcne-store"
MANIFEST = "manifest.json"
UNLABELLED = "unlabelled"


def is_store(path) -> bool:
    """Whether ``path`` is a store folder this module (or a run of it) wrote."""
    path = Path(path)
    return (path / MARKER).is_file() and (path / MANIFEST).is_file()


def _manifest(path: Path) -> dict:
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path / MANIFEST}: cannot be read ({exc}); the store is damaged") from exc


class StoreWriter:
    """Create or append to an on-disk image store folder, one named part at a time."""

    def __init__(self, path, image_shape: tuple[int, int, int]):
        self.path = Path(path)
        self.image_shape = tuple(int(s) for s in image_shape)
        if is_store(self.path):
            self.manifest = _manifest(self.path)
            if tuple(self.manifest["image_shape"]) != self.image_shape:
                raise DataError(f"{self.path}: the store holds images of {tuple(self.manifest['image_shape'])}, "
                                f"not {self.image_shape}; write to another folder")
            return
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise DataError(f"{self.path}: exists and is not a medcne store; choose a new folder")
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / MARKER, "written by medcne: an image store\n")
        self.manifest = {"image_shape": list(self.image_shape), "parts": []}
        write_json(self.path / MANIFEST, self.manifest)

    def has_part(self, name: str) -> bool:
        return any(p["name"] == name for p in self.manifest["parts"])

    def add_part(self, name: str, images: np.ndarray | Iterable[np.ndarray], *, labels: Sequence[str | None] | None,
                 ids: Sequence[str], provenance: dict[str, np.ndarray]) -> int:
        """Stream ``images`` into the part ``name``; listed in the manifest only once complete."""
        if self.has_part(name):
            raise DataError(f"{self.path}: already holds a part {name!r}")
        blocks = [images] if isinstance(images, np.ndarray) else images
        parts = self.path / "parts"
        parts.mkdir(exist_ok=True)
        count = [0]

        def write_images(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                for block in blocks:
                    block = np.ascontiguousarray(block, dtype=np.uint8)
                    if block.shape[1:] != self.image_shape:
                        raise DataError(f"part {name!r}: images of {block.shape[1:]}, not {self.image_shape}")
                    fh.write(block.tobytes())
                    count[0] += len(block)
                fh.flush()
                os.fsync(fh.fileno())

        raw = atomic_write(parts / f"{name}.u8", write_images)
        n = count[0]
        if len(ids) != n or (labels is not None and len(labels) != n):
            raw.unlink(missing_ok=True)
            raise DataError(f"part {name!r}: {n} images but {len(ids)} ids")
        names = np.array(["" if v is None else str(v) for v in (labels or [None] * n)], dtype=str)
        save_npz(parts / f"{name}.npz", ids=np.asarray(ids, dtype=str), labels=names,
                 **{f"prov_{k}": np.asarray(v) for k, v in provenance.items()})
        self.manifest["parts"].append({"name": name, "count": n})
        write_json(self.path / MANIFEST, self.manifest)
        return n

    def close(self) -> None:
        """Nothing is held open between parts."""

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(path) -> ImageSet:
    """The committed parts of a store as one lazy :class:`ImageSet` (images memory-mapped)."""
    path = Path(path)
    if not is_store(path):
        raise DataError(f"{path}: not a medcne store")
    manifest = _manifest(path)
    shape = tuple(manifest["image_shape"])
    maps, ids, names, prov = [], [], [], {}
    for part in manifest["parts"]:
        raw = path / "parts" / f"{part['name']}.u8"
        if raw.stat().st_size != part["count"] * int(np.prod(shape)):
            raise DataError(f"{raw}: wrong size for {part['count']} images; the store is damaged")
        maps.append(np.memmap(raw, dtype=np.uint8, mode="r", shape=(part["count"], *shape)))
        with np.load(path / "parts" / f"{part['name']}.npz") as meta:
            ids += meta["ids"].tolist()
            names += meta["labels"].tolist()
            for key in (k for k in meta.files if k.startswith("prov_")):
                prov.setdefault(key[5:], []).append(meta[key])
    starts = np.cumsum([0] + [len(m) for m in maps])

    def read(indices: np.ndarray) -> np.ndarray:
        part = np.searchsorted(starts, indices, side="right") - 1
        return np.stack([maps[p][i - starts[p]] for p, i in zip(part, indices, strict=True)])

    # ImageSet labels are all or none: tiles outside every region become a class of their own.
    names = [n or UNLABELLED for n in names]
    classes = sorted(set(names)) if set(names) != {UNLABELLED} else []
    labels = np.array([classes.index(n) for n in names], np.int64) if classes else None
    return ImageSet(LazyImages(read, int(starts[-1]), shape), labels=labels, class_names=classes or None,
                    ids=np.array(ids), source=str(path), provenance={k: np.concatenate(v) for k, v in prov.items()})
