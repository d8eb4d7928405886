"""Finding scan files (DICOM, NIfTI) in a folder tree, and telling a scan folder from an image folder.

The walk enters sub-folders recursively, but not hidden ones (names starting
with '.') or folders that medcne wrote (a run or a viewer inside the data
folder). A file counts as DICOM when it carries the ``DICM`` marker at byte
128 (the DICOM file format) or ends in ``.dcm``/``.dicom`` (files written
without the preamble); as NIfTI when it ends in ``.nii`` or ``.nii.gz``.
Needs neither pydicom nor nibabel.
"""

from __future__ import annotations

import os
from pathlib import Path

from .files import IMAGE_SUFFIXES, medcne_output_kind, text_name
from .identity import code

DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOMDIR = "DICOMDIR"
# Files that are never images in a DICOM folder, not worth opening.
NOT_DICOM_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".md", ".xml", ".html", ".pdf", ".zip", ".py")


def has_dicom_marker(path: Path) -> bool:
    """Whether ``path`` starts with the 128-byte preamble and ``DICM``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def is_dicom_candidate(path: Path) -> bool:
    """A file the DICOM reader opens: DICOM by its name or by its marker."""
    name = path.name.lower()
    if name.endswith(DICOM_SUFFIXES) or path.name == DICOMDIR:
        return True
    if name.endswith(NOT_DICOM_SUFFIXES + NIFTI_SUFFIXES + IMAGE_SUFFIXES) or name.startswith("."):
        return False
    return has_dicom_marker(path)


def walk_files(root: Path) -> tuple[list[Path], list[str]]:
    """Every regular file under ``root`` (sorted), and notes on the folders left out."""
    found: list[Path] = []
    skipped_medcne: list[str] = []
    unreadable: list[str] = []
    broken = 0

    def onerror(exc: OSError) -> None:
        unreadable.append(Path(exc.filename).name if exc.filename else "?")

    for folder, dirs, files in os.walk(root, onerror=onerror):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            if medcne_output_kind(here / d):
                skipped_medcne.append((here / d).relative_to(root).as_posix())
                continue
            keep.append(d)
        dirs[:] = keep
        shown = [here / f for f in files if not f.startswith(".")]
        found += [f for f in shown if f.is_file()]
        broken += sum(f.is_symlink() and not f.exists() for f in shown)
    notes = []
    if broken:  # counted, not named: a link's name may hold a patient ID
        notes.append(f"skipped {broken} broken symbolic link(s) (their targets are missing)")
    if skipped_medcne:
        notes.append(f"skipped {len(skipped_medcne)} folder(s) written by medcne")
    if unreadable:
        notes.append(f"skipped {len(unreadable)} unreadable folder(s)")
    return sorted(found), notes


def scan_format(folder: Path) -> str | None:
    """'dicom' or 'nifti' when ``folder`` holds scans and no ordinary image files, else None.

    Stops at the first ordinary image file (PNG, JPEG...), so a large image
    folder costs no more than before.
    """
    nifti = dicom = False
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            low = f.lower()
            if low.endswith(IMAGE_SUFFIXES):
                return None
            nifti = nifti or low.endswith(NIFTI_SUFFIXES)
            if not dicom and not nifti and not f.startswith("."):
                dicom = is_dicom_candidate(Path(here) / f) and f != DICOMDIR
    return "nifti" if nifti else "dicom" if dicom else None


def short_hash(text: str, prefix: str) -> str:
    """A stable 12-hex-digit stand-in for ``text`` (the same text and key give the same stand-in), keyed so
    that it does not give ``text`` back (:mod:`.identity`)."""
    return code(text, prefix)


def relative_id(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with '/' separators, as text (bytes that are not UTF-8 shown as
    ``\\xNN``, :func:`~.files.text_name`); the file name when ``root`` is the file."""
    return text_name(path.name if path == root else path.relative_to(root).as_posix())
