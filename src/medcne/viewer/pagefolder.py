"""A viewer's page folder: the rule for replacing it.

Every page folder holds ``.medcne-viewer``, written last by the build: the
path, size and sha256 of every file the build wrote (:mod:`medcne.runs.pagemarks`).
``medcne view --overwrite`` replaces a folder only while everything in it, at
any depth, is such a file, unchanged (:func:`foreign_entry`); a file the user
added or edited is never lost. The new page is built beside the old one and swapped in
with renames (:func:`replace_folder`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..errors import MedcneError
from ..runs.pagemarks import (  # noqa: F401 (re-exported: the page's marker, for the builder and its tests)
    BUNDLE_NAME,
    MARKER,
    MARKER_CONTENT,
    SPRITES,
    foreign_entry,
    is_viewer_folder,
    write_marker,
)


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
