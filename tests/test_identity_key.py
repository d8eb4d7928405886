"""The codes standing in for patient identity are keyed: stable under one key, and not found again by
hashing every possible ID (a plain SHA-256 of a seven-digit patient ID was reversed in 0.4 s)."""

from __future__ import annotations

import hashlib
import stat

import pytest

from medcne.datasets import identity
from medcne.datasets.scanfiles import short_hash
from medcne.errors import MedcneError


@pytest.fixture
def own_key(tmp_path, monkeypatch):
    """No key given: medcne keeps its own under $XDG_CONFIG_HOME (a fresh folder per test)."""
    monkeypatch.delenv(identity.KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    identity._key_file.cache_clear()
    yield tmp_path / "config" / "medcne" / "identity.key"
    identity._key_file.cache_clear()


def test_a_code_cannot_be_found_again_by_hashing_the_candidates(monkeypatch):
    monkeypatch.setenv(identity.KEY_ENV, "the site's secret")
    patient = "0483920"
    code = short_hash(patient, "x-")
    assert code == short_hash(patient, "x-")  # stable: a run reads its images again
    assert code != "x-" + hashlib.sha256(patient.encode()).hexdigest()[:12]
    found = [c for c in (f"{i:07d}" for i in range(483_000, 484_000))
             if "x-" + hashlib.sha256(c.encode()).hexdigest()[:12] == code]
    assert found == []  # the attack that worked on plain hashes finds nothing
    monkeypatch.setenv(identity.KEY_ENV, "another site's secret")
    assert short_hash(patient, "x-") != code


def test_the_users_key_is_made_once_readable_by_the_user_only_and_kept(own_key):
    code = short_hash("4MR1", "x-")
    assert own_key.is_file() and stat.S_IMODE(own_key.stat().st_mode) == 0o600
    key = own_key.read_bytes()
    assert len(key.strip()) == 64 and not list(own_key.parent.glob(".*.tmp"))
    identity._key_file.cache_clear()  # another process: reads the same key, never makes a new one
    assert short_hash("4MR1", "x-") == code and own_key.read_bytes() == key


def test_an_empty_or_unwritable_key_is_one_line(own_key, tmp_path, monkeypatch):
    own_key.parent.mkdir(parents=True)
    own_key.write_text("\n")
    with pytest.raises(MedcneError, match=r"identity.key: the key .* is empty; restore it from a copy"):
        short_hash("4MR1", "x-")
    blocked = tmp_path / "not-a-folder"  # where the key's folder would go lies a file (unwritable even by root)
    blocked.write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocked))
    with pytest.raises(MedcneError, match=r"cannot keep the key .*; set MEDCNE_IDENTITY_KEY"):
        short_hash("4MR1", "x-")


def test_an_empty_key_gives_the_unkeyed_codes_of_runs_made_before(monkeypatch):
    monkeypatch.setenv(identity.KEY_ENV, "")
    assert short_hash("4MR1", "x-") == "x-9435c3ae61f5" == "x-" + hashlib.sha256(b"4MR1").hexdigest()[:12]
