"""What medcne wrote in a viewer's page folder: the marker it leaves there, and whether the folder still
holds only that (so that it may be replaced or removed without losing anyone's file).

Every page folder holds ``.medcne-viewer``, written last by the build: the path,
size and sha256 of every file the build wrote. :func:`foreign_entry` names the
first entry that is not such a file, unchanged. The viewer replaces a page only
while there is none (:mod:`medcne.viewer.pagefolder`); a run that is replaced
removes its ``viewer/`` page on the same condition (:func:`retire_page`), since
that page shows the replaced run's map.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..runfiles import VIEWER_FORMAT, VIEWER_MARKER, VIEWER_SLIDES
from .outputs import file_digest

SLIDES = VIEWER_SLIDES
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


def retire_page(folder: Path) -> str | None:
    """Remove the page folder ``folder`` of a run being replaced when it holds nothing but the page medcne
    built, unchanged. A page with a file of the user's in it is left as it is; then the note returned
    says so (it shows the replaced run's map). None when the page was removed, or there was none."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir() or not is_viewer_folder(folder):
        return None
    kept = foreign_entry(folder)
    if kept is None:
        shutil.rmtree(folder)
        return None
    whose = "changed since medcne wrote it" if kept[1] else "which medcne did not write"
    return (f"note: {folder} still shows the replaced run's map: it holds {kept[0]}, {whose}, so it was kept; "
            f"move that file out and run `medcne view {folder.parent} --overwrite`, or build the page elsewhere "
            f"with `medcne view {folder.parent} --out NEW`")
