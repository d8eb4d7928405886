"""A viewer's page folder: the marker that lists what medcne wrote there, and the rule for replacing it.

Every page folder holds ``.medcne-viewer``, written last by the build: the
path, size and sha256 of every file the build wrote. ``medcne view
--overwrite`` replaces a folder only while everything in it, at any depth, is
such a file, unchanged (:func:`foreign_entry`); a file the user added or
edited is never lost. The new page is built beside the old one and swapped in
with renames (:func:`replace_folder`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..errors import MedcneError
from ..runfiles import VIEWER_FORMAT, VIEWER_MARKER
from ..runs.outputs import file_digest
from .provenance import SLIDES

BUNDLE_NAME = "medcne-viewer.js"
SPRITES = "sprites"

# In every folder build_viewer writes: {"format", "version", "files": {relative path: {"size", "sha256"}}},
# the licence to replace the files it lists while they are unchanged.
MARKER = VIEWER_MARKER
MARKER_CONTENT = {"format": VIEWER_FORMAT, "version": 2}
# Pages built before the marker listed its files (version 1) are replaced only while every file in
# them has a name the build writes; edits to those files cannot be told then.
_BUILT_NAMES = re.compile(
    rf"(index\.html|data\.js|{re.escape(BUNDLE_NAME)}|{SPRITES}/sheet-\d{{3,}}\.png|{SLIDES}/\d{{5,}}\.png)")


def write_marker(folder: Path) -> None:
    """Write the marker of a page just built in ``folder``, listing every file in it (last of all)."""
    files = {rel: file_digest(p) for rel, p in _entries(folder) if p.is_file()}
    (folder / MARKER).write_text(json.dumps({**MARKER_CONTENT, "files": files}) + "\n", encoding="utf-8")


def remove_leftovers(out: Path) -> list[Path]:
    """Remove the build folders a killed ``medcne view`` left beside ``out`` (called under its lock).

    Only folders named as the builder and :func:`replace_folder` name them
    (``.NAME.XXXXXXXX``, ``.NAME.old-PID``) that hold nothing but a page's
    files (:func:`foreign_entry`) are removed; returns them.
    """
    pattern = re.compile(rf"\.{re.escape(out.name)}\.([a-z0-9_]{{8}}|old-\d+)")
    found = []
    for p in out.parent.iterdir() if out.parent.is_dir() else ():
        if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink() and foreign_entry(p) is None:
            shutil.rmtree(p)
            found.append(p)
    return found


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an output folder whose replacement could lose someone's files.

    Missing or empty: fine. Holding the marker: a viewer built before, replaced
    only with ``overwrite`` and only while it holds nothing but the page's own
    files, unchanged (:func:`foreign_entry`). Anything else is refused even
    with ``overwrite``: a user's folder that happens to hold an ``index.html``
    has lost its other files this way before.
    """
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise MedcneError(f"{out}: exists and is not a folder; choose another `out`")
    if not any(out.iterdir()):
        return
    if not is_viewer_folder(out):
        raise MedcneError(
            f"{out}: exists and is not a viewer folder built by `medcne view` (no {MARKER} file), "
            "so it is never replaced; choose another `out`"
        )
    if not overwrite:
        raise MedcneError(f"{out}: holds a viewer built before; pass `overwrite` to replace it, "
                          "or choose another `out`")
    if found := foreign_entry(out):
        rel, changed = found
        what = (f"{rel} was changed since medcne wrote it" if changed
                else f"holds {rel}, which medcne did not write")
        raise MedcneError(f"{out}: {what}; replacing the page would delete it: move it out of the folder, "
                          "or choose another `out`")


def is_viewer_folder(folder: Path) -> bool:
    """Whether ``folder`` holds the marker that build_viewer writes into every page folder."""
    return _marker(folder) is not None


def _marker(folder: Path) -> dict | None:
    marker = Path(folder) / MARKER
    try:
        content = None if marker.is_symlink() else json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(content, dict) and content.get("format") == MARKER_CONTENT["format"]
    return content if ok else None


def _entries(folder: Path) -> list[tuple[str, Path]]:
    """Everything below ``folder`` but its marker, at any depth, sorted, as (path relative to it with
    ``/``, path); a link is listed, never followed."""
    def unreadable(exc: OSError):  # a folder it cannot list may hold anything: never replaced unseen
        raise exc

    found = []
    for root, dirs, files in os.walk(folder, onerror=unreadable):  # a link to a folder is listed, not entered
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(root, name)
            rel = p.relative_to(folder).as_posix()
            if rel != MARKER:
                found.append((rel, p))
    return found


def foreign_entry(folder: Path) -> tuple[str, bool] | None:
    """The first entry of the page folder ``folder`` that replacing it would lose, or None.

    Returns ``(path relative to the folder, changed)``: ``changed`` is true for
    a file the build wrote that differs from what its marker records (size, or
    sha256, read in blocks), false for anything medcne did not write (a file
    it does not list, a link, a folder of its own). A marker without a list
    (a page of an earlier medcne, or a killed build) vouches only for the
    names the build writes.
    """
    listed = (_marker(folder) or {}).get("files")
    listed = listed if isinstance(listed, dict) else None
    entries = _entries(folder)
    for rel, p in entries:  # names and sizes first: cheap, and a user's file is named before any hashing
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            return rel, False
        if p.is_dir():
            if rel not in (SPRITES, SLIDES):
                return rel, False
        elif listed is None:
            if not _BUILT_NAMES.fullmatch(rel):
                return rel, False
        elif not isinstance(listed.get(rel), dict):
            return rel, False
        elif listed[rel].get("size") != p.stat().st_size:
            return rel, True
    for rel, p in entries:
        if listed is not None and p.is_file() and file_digest(p) != listed[rel]:
            return rel, True
    return None


def replace_folder(new: Path, dest: Path) -> None:
    """Swap ``new`` into ``dest`` with renames (each atomic); only the old copy is deleted."""
    os.chmod(new, 0o755)  # mkdtemp makes 0700 folders; a page folder should be readable
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(new, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, dest)
