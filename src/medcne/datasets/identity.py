"""The secret behind the codes that stand in for patient identity in ids and messages.

A code must be stable (the same folder name gives the same code, so that a run
reads its images again) and must not give the name back. A plain hash of a
short identifier fails the second: all seven-digit patient IDs are hashed in
under a second. So the code is an HMAC-SHA256 under a secret key: the text of
``$MEDCNE_IDENTITY_KEY`` when set, else a random key that medcne makes once per
user in ``~/.config/medcne/identity.key`` (``$XDG_CONFIG_HOME`` when set),
readable by that user only. Without the key, trying every ID gives nothing.

The same key gives the same codes: to read a run's DICOM images on another
machine, copy the key file there or set the same ``$MEDCNE_IDENTITY_KEY``.
An empty ``$MEDCNE_IDENTITY_KEY`` gives the unkeyed codes of earlier medcne
versions (a plain SHA-256), for their runs only: those codes can be reversed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from ..errors import MedcneError

KEY_ENV = "MEDCNE_IDENTITY_KEY"
KEY_FILE = Path("medcne") / "identity.key"
CODE_DIGITS = 12


def key_path() -> Path:
    """Where the user's key is kept: ``$XDG_CONFIG_HOME/medcne/identity.key``, else under ``~/.config``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / KEY_FILE


def identity_key() -> bytes:
    """The key of the codes: ``$MEDCNE_IDENTITY_KEY``, else the user's key file (made on first use)."""
    given = os.environ.get(KEY_ENV)
    return given.encode("utf-8") if given is not None else _key_file(key_path())


def code(text: str, prefix: str) -> str:
    """``prefix`` and a 12-hex-digit code of ``text`` under :func:`identity_key` (stable, not reversible)."""
    key = identity_key()
    data = text.encode("utf-8")
    digest = hmac.new(key, data, hashlib.sha256) if key else hashlib.sha256(data)
    return prefix + digest.hexdigest()[:CODE_DIGITS]


@lru_cache(maxsize=8)
def _key_file(path: Path) -> bytes:
    """The key in ``path``, made there (random, mode 0600) when there is none: created whole or not at all,
    and a key another process made first is the one kept."""
    try:
        if not path.exists():
            _make_key(path)
        return _read_key(path)
    except OSError as exc:
        raise MedcneError(f"{path}: cannot keep the key of the codes that stand in for patient identity "
                          f"({exc.strerror or exc}); set {KEY_ENV} to a secret text of your own") from None


def _make_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)  # fails when the file exists: a key is never replaced
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if not key:
        raise MedcneError(f"{path}: the key of the codes that stand in for patient identity is empty; "
                          f"restore it from a copy, or set {KEY_ENV}")
    return key
