"""The DICOM reader: a folder of DICOM files (searched recursively) as 8-bit images, one per frame.

For each file with pixel data, in order:

1. pixels decoded by pydicom (compressed transfer syntaxes through the pydicom
   plugins that are installed: Pillow for JPEG baseline and JPEG 2000, pydicom
   itself for RLE; ``pip install 'medcne[dicom-codecs]'`` adds pylibjpeg for
   JPEG lossless, 12-bit JPEG, JPEG-LS and more);
2. grey images: the modality rescale (RescaleSlope, RescaleIntercept: CT in
   Hounsfield units), then the window (:mod:`medcne.datasets.window`) to 0..255,
   then MONOCHROME1 inverted so that bright means high values in every image;
   colour images (RGB, YBR converted to RGB, palette colour) are scaled by their
   bit depth and not windowed;
3. one image per frame of a multi-frame file, decoded and converted a block of
   frames at a time (:mod:`.dicom_frames`).

Files without pixel data (structured reports, RT plans, DICOMDIR) are noted
and skipped; one whose header declares an image (an image SOP class, Rows and
Columns) but that ends before its pixel data is damaged (a cut-off slice).
ids are the paths relative to the folder, with ``#FRAME`` (counting from 1) for
multi-frame files. Provenance columns: ``series`` and
``slice`` (InstanceNumber; the frame number for multi-frame files; -1 when the
file states none).

Patient identity (name, ID, birth date and the like) stays out of everything
the reader returns unless ``keep_phi=True``: a path component that holds one of
these values, or the file's study, series or instance UID, is replaced by a
stable hash in ids and notes, and ``series`` is a hash of the SeriesInstanceUID
(the UID itself with ``keep_phi``). Messages about files left out code what
their own headers state too (:mod:`.dicom_identity`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..defaults import read_chunk_bytes
from ..errors import BadImageError, DataError, EmptyDatasetError, MedcneError, printable, require
from .convert import check_channels, parse_size
from .dicom_frames import (
    Bad,
    Codec,
    CutOff,
    NoWindow,
    Skip,
    Unused,
    blocks,
    declared_image,
    frame_count,
    read_dataset,
    to_uint8,
)
from .dicom_identity import Identity, coded, phi_values, scrub, shown, states_its_uids, union
from .files import listed
from .imageset import ImageSet
from .scancommon import (
    check_resized,
    check_unused,
    encode_with_missing,
    read_label_csv,
    sized,
    stack_images,
    stated_frames,
)
from .scanfiles import (
    DICOMDIR,
    has_dicom_marker,
    is_dicom_candidate,
    relative_id,
    short_hash,
    walk_files,
)
from .window import AUTO, FILE, describe, first_number, parse_window

LABEL_KEYS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "path")
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
CODECS_HINT = "install a decoder with `pip install 'medcne[dicom-codecs]'` (pylibjpeg with its JPEG and JPEG 2000 plugins)"


@dataclass
class _File:
    """What one DICOM file gave: its frames as uint8 H x W x C and what describes them."""

    rel: str
    frames: list[np.ndarray]
    series: str
    slices: list[int]
    keys: dict[str, str]
    phi: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)
    colour: bool = False


def _read_file(path: Path, rel: str, window, pydicom, keep_phi: bool, size=None) -> _File:
    """One DICOM file as frames (those of a multi-frame file resized to ``size`` a block at a time);
    raises Skip (no image) or Bad (unusable), with the identity its header gave."""
    if path.name == DICOMDIR:
        raise Skip("DICOMDIR")
    with warnings.catch_warnings():
        # pydicom warns on odd values (a VR mismatch, a non-standard string): read them anyway.
        warnings.simplefilter("ignore")
        try:
            ds = read_dataset(path, pydicom)
        except Exception as exc:  # InvalidDicomError, EOFError, OSError...: damaged files raise nearly anything
            raise Bad(f"not readable as DICOM ({type(exc).__name__})") from None
        try:
            return _from_dataset(ds, path, rel, window, pydicom, keep_phi, size)
        except (MedcneError, NoWindow, MemoryError):
            raise
        except Exception as exc:  # pydicom raises as it converts a damaged value (BytesLengthException...)
            unused = exc if isinstance(exc, Unused) else Bad(f"a header value cannot be read ({type(exc).__name__})")
            # messages about the file code the names its header identifies
            unused.identity = phi_values(ds)
            unused.uids_unknown = isinstance(unused, CutOff) or not states_its_uids(ds)
            raise unused from None


def _from_dataset(ds, path: Path, rel: str, window, pydicom, keep_phi: bool, size=None) -> _File:
    """The frames of the DICOM dataset ``ds`` read from ``path``; raises Skip or Bad."""
    sop = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", ds.get("SOPClassUID", "")))
    if sop == DICOMDIR_SOP_CLASS:
        raise Skip("DICOMDIR")
    if "PixelData" not in ds:
        if declared := declared_image(ds):  # a CT slice cut off, not a report: never passed over as one
            raise CutOff(f"ends before its pixel data, though its header declares an image ({declared})")
        if "SOPClassUID" in ds or has_dicom_marker(path):
            raise Skip("no pixel data")
        raise Bad("not a DICOM file")
    # Each block of a multi-frame file is resized as soon as it is converted: the file's frames are
    # never all held at full resolution (one-frame files are resized in batches by _read_all).
    resize = size is not None and frame_count(ds) > 1
    frames, colour = [], False
    for block in blocks(ds, path, pydicom):
        try:
            converted, colour = to_uint8(ds, block, window, pydicom)
        except (MedcneError, Bad, NoWindow):
            raise
        except Exception as exc:  # a LUT or rescale that does not fit the pixels
            raise Bad(f"pixel values cannot be converted ({type(exc).__name__})") from None
        del block
        frames += [sized(f, size) for f in converted] if resize else converted
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    series = uid if keep_phi and uid else short_hash(uid or str(Path(rel).parent), "s-")
    if len(frames) > 1:
        slices = list(range(1, len(frames) + 1))
    else:
        number = first_number(ds.get("InstanceNumber"))
        slices = [int(number) if number is not None else -1]
    keys = {k: str(ds.get(k, "") or "") for k in LABEL_KEYS if k != "path"}
    keys["path"] = rel
    return _File(rel, frames, series, slices, keys, *phi_values(ds), colour)


def _resize(files: list[_File], size) -> list[_File]:
    """Resize the frames of ``files`` to ``size`` in place; returns those left at full size: none."""
    for f in files:
        f.frames[:] = [sized(frame, size) for frame in f.frames]
    return []


def _find(root: Path) -> tuple[list[Path], list[str]]:
    if root.is_file():
        return [root], []
    files, notes = walk_files(root)
    return [f for f in files if is_dicom_candidate(f)], notes


def _identity(files: list[_File]) -> Identity:
    """The identifying values and the UIDs of ``files``: what :func:`scrub` codes in ids."""
    return set().union(*(f.phi for f in files)), set().union(*(f.uids for f in files))


def _read_all(root: Path, window, keep_phi: bool, skip_bad: bool, size=None, channels="keep"):
    """(files read, notes, (phi values, UIDs) seen) for every DICOM file under ``root``, frames resized to ``size``."""
    pydicom = require("pydicom", "dicom")
    paths, notes = _find(root)
    if size is not None:
        frames, colour = stated_frames(paths, pydicom)
        check_resized(frames, size, colour, channels, str(root), f"{frames:,} image(s)")
    read: list[_File] = []
    unused: list[tuple[str, Unused]] = []
    # Frames are resized to `size` READ_CHUNK_MB at a time, not held at full resolution to the end.
    # Not file by file: the allocator would then hand each file's temporaries back to the system
    # and fault them in again for the next (twice the time, bench/scans_size.py).
    unsized: list[_File] = []
    held = 0  # their bytes
    for path in paths:
        rel = relative_id(path, root)
        try:
            read.append(_read_file(path, rel, window, pydicom, keep_phi, size))
        except Unused as exc:
            unused.append((rel, exc))
            continue
        except NoWindow as exc:
            seen = union(_identity(read), exc.args[0], *(e.identity for _, e in unused))
            raise _no_window(shown(rel, seen, keep_phi), exc.args[1]) from None
        if size is not None:
            unsized.append(read[-1])
            held += sum(frame.nbytes for frame in read[-1].frames)
            if held > read_chunk_bytes():
                unsized, held = _resize(unsized, size), 0
    _resize(unsized, size)
    identity = (set(), set()) if keep_phi else _identity(read)
    # Messages code the names that any header identifies, those of the files left out included.
    _report_unused(root, unused, union(identity, *(e.identity for _, e in unused)), keep_phi, skip_bad, notes)
    if not read:
        what = f"none of the {len(paths)} DICOM file(s) holds an image" if paths else "no DICOM files found"
        raise EmptyDatasetError(f"{root}: {what}; give a folder of DICOM image files (.dcm or files with the DICM marker)")
    return read, notes, identity


def _no_window(name: str, stated) -> MedcneError:
    """The error for `window` 'file' and the file ``name`` that states no usable window (``stated``: what it states)."""
    states = "no window (WindowCenter/WindowWidth)" if stated is None else \
        f"an invalid window ({stated}; the width must be a positive number)"
    return MedcneError(f"{name}: the file states {states}; "
                       "give `window` as a preset such as soft-tissue or as WIDTH,LEVEL")


def _report_unused(root: Path, unused: list[tuple[str, Unused]], seen: Identity, keep_phi: bool, skip_bad: bool,
                   notes: list[str]) -> None:
    """Refuse the files that cannot be used (unless ``skip_bad``) and note those left out, their names
    coded with ``seen`` (see :mod:`.dicom_identity`)."""
    named = [(coded(rel, seen, keep_phi, exc.uids_unknown), exc) for rel, exc in unused]
    bad = [(name, exc) for name, exc in named if isinstance(exc, Bad)]
    if bad and not skip_bad:
        shown = listed([f"{printable(name)} ({exc})" for name, exc in bad])
        fix = CODECS_HINT + ", or pass `skip_bad` to leave them out" if any(isinstance(e, Codec) for _, e in bad) \
            else "fix or remove them, or pass `skip_bad` to leave them out"
        raise BadImageError(f"{root}: {len(bad)} DICOM file(s) cannot be used: {shown}; {fix}", [n for n, _ in bad])
    if bad:
        notes.append(f"skipped {len(bad)} unusable DICOM file(s): {listed([printable(n) for n, _ in bad])}")
    skipped: dict[str, list[str]] = {}
    for name, exc in named:
        if isinstance(exc, Skip):
            skipped.setdefault(str(exc), []).append(printable(name))
    for why, shown_names in sorted(skipped.items()):
        notes.append(f"skipped {len(shown_names)} DICOM file(s) without an image ({why}): {listed(shown_names)}")


def read_dicom(
    root,
    *,
    window=None,
    size=None,
    channels: str = "keep",
    skip_bad: bool = False,
    keep_phi: bool = False,
    label_csv=None,
    label_key: str | None = None,
    label_column: str | None = None,
) -> ImageSet:
    """Read a DICOM file or a folder of them (recursively) into an :class:`ImageSet`.

    Parameters
    ----------
    root : str or Path
        A folder searched recursively, or one DICOM file.
    window : str or (width, level), optional
        See :mod:`medcne.datasets.window`; default ``"auto"``.
    size : (H, W), optional
        Resize every frame; required when the files hold images of different sizes.
    channels : {'keep', 'rgb', 'gray'}
        See :mod:`medcne.datasets.convert`.
    skip_bad : bool
        Leave out files that cannot be read or decoded (noted) instead of failing.
    keep_phi : bool
        Keep patient identity in ids, notes and the ``series`` column (see the module docstring).
    label_csv : str or Path, optional
        A CSV of labels keyed by one of :data:`LABEL_KEYS` (see :mod:`medcne.datasets.scancommon`).
    label_key, label_column : str, optional
        The CSV's key column (default: the one it has) and label column (default ``label``).
    """
    root = Path(root)
    check_channels(channels)
    size, window = parse_size(size), parse_window(window)
    read, notes, identity = _read_all(root, window, keep_phi, skip_bad, size, channels)
    frames, owners, ids, series, slices, keys = [], [], [], [], [], []
    for f in read:
        rid = f.rel if keep_phi else scrub(f.rel, *identity)
        frames += f.frames
        owners += [rid] * len(f.frames)
        ids += [rid] if len(f.frames) == 1 else [f"{rid}#{k}" for k in f.slices]
        series += [f.series] * len(f.frames)
        slices += f.slices
        keys += [f.keys] * len(f.frames)
    if window not in (AUTO, FILE) and any(f.colour for f in read):
        notes.append(f"window {describe(window)} applies to grey images only; colour images were scaled by bit depth")
    labels = class_names = None
    if label_csv is not None:
        key, table, by_slice = read_label_csv(label_csv, LABEL_KEYS, label_key, label_column)
        if by_slice:  # a DICOM file is an image: labels are per file (path or SOPInstanceUID), not per slice
            raise DataError(f"{label_csv}: {len(by_slice)} row(s) fill the column 'slice', which DICOM labels "
                            "do not use; label each file by its path or SOPInstanceUID instead")
        if key == "path":  # the file's own path, or its id without #FRAME (coded without keep_phi), so that
            # a table made from a run's ids labels the same files
            matched = [k["path"] if k["path"] in table else owner for k, owner in zip(keys, owners, strict=True)]
        else:
            matched = [k[key] for k in keys]
        values = [table.get(m) for m in matched]
        labels, class_names = encode_with_missing(values, notes, Path(label_csv).name)
        check_unused(table, set(matched), notes, Path(label_csv).name)
    images = stack_images(frames, owners, size=size, channels=channels, source=str(root), notes=notes)
    return ImageSet(images, labels, class_names, np.asarray(ids), source=str(root), notes=notes,
                    provenance={"series": np.asarray(series), "slice": np.asarray(slices, dtype=np.int64)})
