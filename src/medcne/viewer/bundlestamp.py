"""Which sources the viewer's JavaScript bundle was built from: a digest of them, written into the
bundle's header by ``js/build.js`` and computed here the same way.

A bundle older than its sources would show a viewer that the code no longer describes, in a wheel
(setup.py loads this file by its path and refuses one) or in a checkout (``medcne view`` refuses one
where the sources are present). Imports nothing from medcne.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

# The files `make viewer-assets` rebuilds the bundle from (its prerequisites in the Makefile).
LOCK_FILES = ("package.json", "package-lock.json")
STAMP = re.compile(rb"Sources: sha256 ([0-9a-f]{64})")
HEADER_BYTES = 1 << 20  # the stamp is in the licence header at the bundle's top


def sources_digest(js_dir) -> str:
    """sha256 over the bundle's sources in ``js_dir``, each as its name, NUL, its bytes, NUL, by name."""
    js_dir = Path(js_dir)
    names = sorted(p.name for p in js_dir.iterdir() if p.is_file() and (p.suffix == ".js" or p.name in LOCK_FILES))
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (js_dir / name).read_bytes() + b"\0")
    return digest.hexdigest()


def recorded_digest(bundle) -> str | None:
    """The digest of the sources ``bundle`` says it was built from; None for a bundle without one."""
    with open(bundle, "rb") as fh:
        found = STAMP.search(fh.read(HEADER_BYTES))
    return found.group(1).decode() if found else None


def stale_bundle(bundle, js_dir) -> str | None:
    """Why ``bundle`` is not built from the sources in ``js_dir`` now, or None when it is."""
    recorded = recorded_digest(bundle)
    if recorded is None:
        return "it does not say which sources it was built from"
    if recorded != sources_digest(js_dir):
        return "its sources have changed since it was built"
    return None
