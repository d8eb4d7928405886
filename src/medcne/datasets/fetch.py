"""Download the official MedMNIST 2D files into a local cache, checked by MD5.

The file lands in the cache only after its MD5 matches the published one: it is
streamed to a temporary file in the same folder and renamed, so an interrupted
or corrupted download never looks like a finished one. A body longer than the
file can be (its arrays uncompressed, see ``medmnist_info.max_file_bytes``) is
cut off there, not streamed to the end before the MD5 rejects it.

A file already under the final name is reused when its MD5 matches; any other
file there is not one of ours (ours only ever appear whole and checked), so it
is refused and left as it is: medcne never replaces what it did not write.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import numbers
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import FetchError, MedcneError
from ..io import atomic_write
from . import medmnist_info

CACHE_ENV = "MEDCNE_CACHE"
MIRROR_ENV = "MEDCNE_MEDMNIST_URL"
_CHUNK = 1 << 20
# Below this a progress bar is only noise (the tests' files, the small 28-pixel sets).
_BAR_MIN_BYTES = 8 << 20
# A day: far longer timeouts overflow the socket's clock (OverflowError) or never end in practice.
MAX_TIMEOUT = 86_400
DEFAULT_TIMEOUT = 60  # seconds to wait for the server


def default_cache() -> Path:
    """The cache folder: ``$MEDCNE_CACHE`` if set, else ``~/.cache/medcne``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medcne"


def md5_of(path: str | os.PathLike) -> str:
    """Hex MD5 of a file, read in chunks so multi-GB files need no memory."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_timeout(timeout) -> None:
    """Raise :class:`MedcneError` unless ``timeout`` is a positive number of seconds (at most a day)."""
    if not (isinstance(timeout, numbers.Real) and not isinstance(timeout, bool)
            and math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise MedcneError(
            f"`timeout` must be a positive number of seconds, at most {MAX_TIMEOUT:,} (a day), e.g. 60; got {timeout!r}"
        )


def _expected_md5(name: str, size: int) -> str:
    table = medmnist_info.MD5
    if name not in table:
        raise MedcneError(
            f"name must be one of {', '.join(sorted(table))}; got {name!r}"
        )
    sizes = table[name]
    if size not in sizes:
        raise MedcneError(
            f"`size` must be one of {', '.join(str(s) for s in sorted(sizes))} for {name}; got {size!r}"
        )
    return sizes[size]


def fetch_medmnist(
    name: str,
    size: int = 28,
    root: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download an official MedMNIST v3 2D ``.npz`` (or reuse a cached copy).

    Parameters
    ----------
    name : str
        A 2D MedMNIST dataset, e.g. ``'bloodmnist'`` (case-insensitive).
    size : {28, 64, 128, 224}
        Image side in pixels; 28 is ``bloodmnist.npz``, 64 is ``bloodmnist_64.npz``.
    root : str or Path, optional
        Cache folder; default ``$MEDCNE_CACHE`` or ``~/.cache/medcne``.
    url : str, optional
        Base URL to download from instead of Zenodo (a mirror); default
        ``$MEDCNE_MEDMNIST_URL`` if set. The file name is appended to it.
    timeout : float
        Seconds to wait for the server before giving up: positive, at most a day.

    Returns
    -------
    Path
        The verified file in the cache, readable with
        :func:`medcne.datasets.load_dataset`.

    Raises
    ------
    MedcneError
        Unknown ``name`` or ``size``, a bad ``timeout``, or a file under the
        file's name in ``root`` that is not the official one (it is left as it is).
    FetchError
        No network, the server failed, or the MD5 of the download is wrong.
    """
    name = str(name).lower()
    expected = _expected_md5(name, size)
    check_timeout(timeout)
    folder = Path(root).expanduser() if root is not None else default_cache()
    target = folder / medmnist_info.file_name(name, size)
    # A matching file is reused. Anything else under that name (the user's own data,
    # an edited copy, an older release, a folder or a link) was not written by us:
    # our downloads appear only whole and checked. It is refused, never replaced.
    if os.path.lexists(target):
        if target.is_file() and md5_of(target) == expected:
            return target
        what = "its MD5 differs from the published one" if target.is_file() else "it is not a file"
        raise MedcneError(
            f"{target} exists but is not the official {target.name} ({what}), so medcne leaves it alone; "
            "move or rename it, or pass another `root`"
        )

    base = url or os.environ.get(MIRROR_ENV) or medmnist_info.ZENODO_BASE
    source = medmnist_info.official_url(name, size, base)

    limit = medmnist_info.max_file_bytes(name, size)

    def download(tmp: Path) -> None:
        found = _stream(source, tmp, timeout, target.name, limit)
        if found != expected:
            raise FetchError(
                f"{source}: downloaded file has MD5 {found}, expected {expected}; "
                "the download is corrupt or the server sent another file, so nothing was kept; try again"
            )

    try:
        return atomic_write(target, download)
    except FetchError:
        raise
    except OSError as exc:
        # Network errors were turned into FetchError in _stream; what is left is the disk.
        raise FetchError(
            f"cannot write {target}: {exc.strerror or exc}; pass another folder with "
            f"`root` or set {CACHE_ENV}"
        ) from exc


def _stream(source: str, dest: Path, timeout: float, label: str, limit: int) -> str:
    """Write the body at ``source`` to ``dest``; returns its MD5.

    Stops with FetchError as soon as the body (or its announced length) exceeds
    ``limit`` bytes, the most the expected file can hold.
    """
    digest = hashlib.md5()
    too_long = (
        f"which is more than {label} can hold ({limit:,} bytes at most); nothing was kept: "
        "the server sends another file, check the URL (or the mirror)"
    )
    received = 0
    try:
        request = urllib.request.Request(source, headers={"User-Agent": "medcne"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as fh:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > limit:
                raise FetchError(f"{source}: the server announces {total:,} bytes, {too_long}")
            quiet = total is not None and total < _BAR_MIN_BYTES
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                # None lets tqdm go quiet when stderr is not a terminal (logs, CI).
                disable=True if quiet else None, file=sys.stderr, leave=False,
            ) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    received += len(chunk)
                    if received > limit:
                        raise FetchError(f"{source}: the server sent more than {limit:,} bytes, {too_long}")
                    fh.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        else:
            reason = getattr(exc, "reason", None) or exc
        raise FetchError(
            f"could not download {source} ({reason}); download that file yourself and pass it "
            f"to medcne instead, e.g. `medcne info /path/to/{label}`"
        ) from exc
    return digest.hexdigest()
