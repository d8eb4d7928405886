"""Readers for images stored as files: a folder of class folders, and the decoding both file readers share.

Folders are walked without entering hidden folders (names starting with '.'),
folders that medcne wrote itself (a run or a viewer inside the dataset folder
would otherwise be read as a class of images) or a symlink loop; a folder that
cannot be read is an error naming it (with ``skip_bad``: left out and counted).
Every decision is written to ``ImageSet.notes``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import (
    BadImageError,
    DataError,
    EmptyDatasetError,
    MixedSizeError,
    PixelRangeError,
    printable,
)
from ..runfiles import (
    CHECKPOINT,
    EMBEDDING,
    HISTORY,
    MODEL,
    RUN_MARKER,
    VIEWER_FILES,
    VIEWER_MARKER,
)
from ..runfiles import PARAMS as RUN_PARAMS
from .convert import (
    DecodeLog,
    check_channels,
    output_channels,
    parse_size,
    pil_to_array,
    resize_one,
    upright,
)
from .imageset import ImageSet
from .memory import check_memory

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_LISTED = 10
# What medcne writes: a run folder holds its marker, or (runs written before it) a params.json with a
# "method" key, or, before that is written, two of its files; a viewer folder holds its marker (older
# viewers: index.html with the bundle beside it).
RUN_FILES = (CHECKPOINT, MODEL, EMBEDDING, HISTORY)


def text_name(name: str) -> str:
    """A file or folder name (or a relative path) as text that can be written anywhere (CSV, JSON, HTML).

    A POSIX name is bytes; Python keeps the bytes that are not UTF-8 as lone surrogates, which no text
    file can hold. Those bytes are shown as ``\\xNN`` (``bad\\xe9name.png``); a name that is valid text
    is returned unchanged. The file is still opened by its real path: only ids and class names use this."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate not made from a byte (a Windows name): \udNNN
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def listed(items: list[str], sep: str = "; ") -> str:
    """The first :data:`MAX_LISTED` of ``items`` joined by ``sep``, and how many more there are."""
    more = f"{sep.rstrip()} and {len(items) - MAX_LISTED:,} more" if len(items) > MAX_LISTED else ""
    return sep.join(items[:MAX_LISTED]) + more


def shortened(text, longest: int = 240) -> str:
    """A reader's message on one line; a long one is cut at a word boundary, with an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= longest:
        return text
    cut = text[: longest - 3]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "..."


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def medcne_output_kind(folder: Path) -> str | None:
    """'run' or 'viewer' when medcne wrote ``folder``, else None."""
    try:
        if (folder / RUN_MARKER).is_file():
            return "run"
        if (folder / VIEWER_MARKER).exists() or all((folder / f).is_file() for f in VIEWER_FILES):
            return "viewer"
        params = folder / RUN_PARAMS
        if params.is_file() and params.stat().st_size < (1 << 20):
            record = json.loads(params.read_text(encoding="utf-8"))
            if isinstance(record, dict) and "method" in record:
                return "run"
        if sum((folder / f).is_file() for f in RUN_FILES) >= 2:
            return "run"
    except (OSError, ValueError):
        return None
    return None


@dataclass
class FolderScan:
    """Walks a dataset folder and remembers what it left out and why."""

    root: Path
    unreadable: list[str] = field(default_factory=list)
    medcne: list[str] = field(default_factory=list)
    hidden: int = 0
    repeated: list[str] = field(default_factory=list)  # folders reached again (a symbolic link to one read)
    other: dict[str, int] = field(default_factory=dict)  # files of other extensions: extension -> count
    _seen: set = field(default_factory=set)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path != self.root else str(self.root)

    def entries(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """(image files, sub-folders) directly in ``folder``, each sorted; unreadable folders are recorded."""
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in self._seen:  # a symbolic link to a folder read already (or a loop)
                self.repeated.append(printable(self._rel(folder)))
                return [], []
            self._seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                found = list(it)
        except OSError as exc:
            self.unreadable.append(f"{printable(self._rel(folder))} ({exc.strerror or type(exc).__name__})")
            return [], []
        files, dirs = [], []
        for entry in found:
            path = Path(entry.path)
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError:
                is_dir = is_file = False
            if entry.name.startswith("."):
                self.hidden += is_dir or (is_file and path.suffix.lower() in IMAGE_SUFFIXES)
            elif is_dir and medcne_output_kind(path):
                self.medcne.append(f"{printable(self._rel(path))} ({medcne_output_kind(path)})")
            elif is_dir:
                dirs.append(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)  # a broken link or a file that is not regular too: decoding names it
            else:
                ext = path.suffix.lower() or "(no extension)"
                self.other[ext] = self.other.get(ext, 0) + 1
        return sorted(files), sorted(dirs)

    def walk(self, folder: Path) -> list[Path]:
        """All image files under ``folder``, sorted as paths."""
        files, dirs = self.entries(folder)
        for d in dirs:
            files += self.walk(d)
        return sorted(files)

    def notes(self) -> list[str]:
        out = []
        if self.medcne:
            out.append(f"skipped {len(self.medcne)} folder(s) written by medcne: {', '.join(sorted(self.medcne)[:MAX_LISTED])}")
        if self.hidden:
            out.append(f"ignored {self.hidden} hidden file(s) or folder(s) (names starting with '.')")
        if self.repeated:
            out.append(f"skipped {len(self.repeated)} folder(s) that lead to a folder read already (symbolic "
                       f"links): {', '.join(sorted(self.repeated)[:MAX_LISTED])}")
        if self.unreadable:
            out.append(f"skipped {len(self.unreadable)} unreadable folder(s): {', '.join(sorted(self.unreadable)[:MAX_LISTED])}")
        if self.other:
            listed = ", ".join(printable(e, 20) for e in sorted(self.other)[:MAX_LISTED])
            out.append(f"skipped {sum(self.other.values())} file(s) that are not PNG, JPEG, TIFF or BMP: {listed}"
                       f"{', ...' if len(self.other) > MAX_LISTED else ''}")
        return out


def read_folder(root: Path, *, size=None, channels="keep", skip_bad=False, upright: bool = True) -> ImageSet:
    """One sub-folder per class, or a flat folder of images (unlabeled). ``upright``: turn photos as their
    EXIF orientation tag says, as image viewers show them (runs made before medcne did so record
    ``upright=False`` and are read as they were)."""
    kind = medcne_output_kind(root)
    if kind is not None:
        raise DataError(f"{root}: is a {kind} folder written by medcne, not a dataset; pass the data it was made from")
    scan = FolderScan(root)
    top_files, class_dirs = scan.entries(root)
    if scan.unreadable:
        raise DataError(f"{root}: cannot read the folder ({scan.unreadable[0]}); check the path and its permissions")
    files: list[Path] = []
    labels: list[int] = []
    class_names: list[str] = []
    empty: list[str] = []
    deeper: list[str] = []  # class folders whose images lie in folders below them too
    for d in class_dirs:
        found = scan.walk(d)
        if not found:
            if printable(scan._rel(d)) not in scan.repeated:
                empty.append(d.name)
            continue
        if any(f.parent != d for f in found):
            deeper.append(f"{printable(d.name)} ({sum(f.parent != d for f in found)} image(s))")
        class_names.append(text_name(d.name))
        files += found
        labels += [len(class_names) - 1] * len(found)
    if scan.unreadable and not skip_bad:
        listed = "; ".join(sorted(scan.unreadable)[:MAX_LISTED])
        raise DataError(
            f"{root}: {len(scan.unreadable)} folder(s) cannot be read: {listed}. "
            "Fix their permissions, or pass `skip_bad` to leave them out"
        )
    notes = scan.notes()
    if files and top_files:
        notes.append(f"{len(top_files)} image file(s) directly in the folder ignored (images are read from the class sub-folders)")
    if files and deeper:
        notes.append("images in folders below a class folder are read as that class: "
                     f"{', '.join(deeper[:MAX_LISTED])}{', ...' if len(deeper) > MAX_LISTED else ''}")
    if files and empty:
        notes.append(f"sub-folder(s) without images ignored: {', '.join(map(printable, empty[:MAX_LISTED]))}")
    if not files:
        files, class_names = top_files, []
    if not files:
        seen = f" ({'; '.join(scan.notes())})" if scan.notes() else ""  # what the folder holds instead
        raise EmptyDatasetError(
            f"{root}: no images found{seen}; expected one sub-folder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files"
        )
    ids = _text_ids(root, files, notes)
    return decode_files(
        files, ids, labels if class_names else None, class_names or None,
        source=str(root), size=size, channels=channels, skip_bad=skip_bad, notes=notes, upright=upright,
    )


def _text_ids(root: Path, files: list[Path], notes: list[str]) -> list[str]:
    """The ids of ``files``: their paths relative to ``root``, as text (:func:`text_name`), checked unique."""
    rels = [p.relative_to(root).as_posix() for p in files]
    ids = [text_name(r) for r in rels]
    escaped = sum(i != r for i, r in zip(ids, rels, strict=True))
    if not escaped:
        return ids
    first: dict[str, str] = {}
    for rel, i in zip(rels, ids, strict=True):
        if first.setdefault(i, rel) != rel:  # a name with a literal '\\xe9' beside one holding the byte 0xe9
            raise DataError(
                f"{root}: '{printable(first[i])}' and '{printable(rel)}' would both have the id '{printable(i)}' "
                "(bytes that are not UTF-8 are shown as \\xNN); rename one of them"
            )
    notes.append(f"{escaped} image path(s) hold names that are not UTF-8: their ids show those bytes as \\xNN "
                 "(rename the files or folders to UTF-8 names for ids that match them)")
    return ids


class _BadFile(Exception):
    """One file that cannot be used; the message is the reason shown to the user."""


def _decode_one(f: Path, channels: str, log: DecodeLog, turn: bool = True) -> np.ndarray:
    """Decode one file, or raise _BadFile with a short reason (never anything else)."""
    try:
        if not f.is_file():
            raise _BadFile("a broken link: its target is missing" if f.is_symlink() and not f.exists()
                           else "missing" if not f.exists() else "not a regular file")
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte in it
        raise _BadFile(f"not a usable path: {type(exc).__name__}") from None
    with warnings.catch_warnings(record=True) as caught:
        # PIL warns on odd EXIF, truncated metadata, very large images: a note, not a line on stderr.
        warnings.simplefilter("always")
        try:
            with Image.open(f) as img:
                img.load()
                arr = pil_to_array(upright(img, log) if turn else img, channels, log)
        except Image.DecompressionBombError:
            raise _BadFile(f"decompression bomb: more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, PIL's limit") from None
        except PixelRangeError as exc:
            raise _BadFile(str(exc)) from None
        except MemoryError:
            raise _BadFile("too large to decode in the memory available") from None
        except Exception as exc:  # UnidentifiedImageError, OSError ...: damaged files make decoders raise nearly anything
            raise _BadFile(type(exc).__name__) from None
    if caught:
        log.warned += 1
        log.warning = log.warning or str(caught[0].message).splitlines()[0][:120]
    return arr


def _header_channels(f: Path, channels: str) -> int:
    """The channels ``f`` will have, from its header (PIL decodes nothing on open); 1, the least, when
    the header cannot be read (the first decoded image is checked again)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(f) as img:
                return output_channels(img.mode, channels)
    except Exception:  # any file the decoder refuses: it is named when decoded
        return output_channels("L", channels)


def _check_total(n: int, image_shape: tuple[int, ...], source: str) -> None:
    h, w, c = image_shape
    check_memory(
        2 * n * h * w * c, source, f"{n:,} images of {h}x{w}x{c} (decoded, then stacked into one array)",
        "choose a smaller `size`, or convert the files into a store a part at a time (`medcne convert "
        "PART --out STORE --append`, a class folder or a CSV list each): a store is read in blocks",
    )


def _mixed_size_error(images: list[np.ndarray], files: list[Path], source: str) -> MixedSizeError:
    """The error for images of several sizes, naming one file of each size so the odd ones can be found."""
    first: dict[tuple[int, int], Path] = {}
    for arr, f in zip(images, files, strict=True):
        first.setdefault(arr.shape[:2], f)
    sizes = sorted(first)
    listed = ", ".join(f"{h}x{w} (e.g. {printable(str(first[h, w]))})" for h, w in sizes[:5])
    return MixedSizeError(
        f"{source}: images have different sizes: {listed}{', ...' if len(sizes) > 5 else ''}; "
        "pass `size` (e.g. 28) to resize them on load"
    )


def decode_files(files, ids, labels, class_names, *, source, size, channels, skip_bad, notes=None,
                 upright: bool = True) -> ImageSet:
    """Decode image files; report unreadable ones together, check sizes agree and the memory suffices."""
    check_channels(channels)
    size = parse_size(size)
    if size is not None and files:  # before decoding anything
        _check_total(len(files), (*size, _header_channels(files[0], channels)), source)
    images, bad, keep = [], [], []
    notes = list(notes or [])
    log = DecodeLog()
    for i, f in enumerate(files):
        try:
            arr = _decode_one(f, channels, log, upright)
        except _BadFile as exc:
            bad.append(f"{printable(str(f))} ({exc})")
            continue
        if not images:
            _check_total(len(files), (*(size or arr.shape[:2]), arr.shape[2]), source)
        if size is not None:
            arr = resize_one(arr, size)
        images.append(arr)
        keep.append(i)
    if bad and not skip_bad:
        raise BadImageError(
            f"{source}: {len(bad)} unreadable image file(s): {listed(bad)}. "
            "Fix or remove them, or pass `skip_bad` to leave them out",
            bad,
        )
    if bad:
        notes.append(f"skipped {len(bad)} unreadable image file(s)")
    notes += log.notes()
    if not images:
        raise DataError(f"{source}: none of the {len(files)} image files could be read")
    shapes = sorted({a.shape for a in images})
    if len({s[:2] for s in shapes}) > 1:
        raise _mixed_size_error(images, [files[i] for i in keep], source)
    if len({s[2] for s in shapes}) > 1:
        # Mixed gray and colour files: promote all to RGB rather than fail.
        images = [np.repeat(a, 3, axis=-1) if a.shape[2] == 1 else a for a in images]
        notes.append("mixed one-channel and RGB files: all converted to RGB")
    keep = np.asarray(keep, dtype=np.int64)
    return ImageSet(
        images=np.stack(images),
        labels=None if labels is None else np.asarray(labels, dtype=np.int64)[keep],
        class_names=class_names,
        ids=np.asarray(ids)[keep],
        source=source,
        notes=notes,
    )
