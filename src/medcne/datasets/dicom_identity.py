"""Patient identity in the DICOM reader's ids and messages: which values identify a file, and how a path is coded.

A path component that holds a value identifying the patient (name, ID, birth
date...) or one of a file's study, series and instance UIDs is replaced by a
stable keyed code (:func:`.scanfiles.short_hash`). Messages about files that
are not used (damaged, without an image) code with the values of every header
that was read, those files' own included. A file whose header gave none or not
all of its three UIDs (unreadable, cut off) cannot say which names are its
UIDs: in messages about it every component holding a dotted number like a UID
is coded too (:func:`code_uid_like`), so that its name never shows a UID raw.
"""

from __future__ import annotations

import re

from ..errors import printable
from .scanfiles import short_hash

# Attributes that identify a patient: their values never reach ids, notes or provenance without keep_phi.
PHI_ATTRIBUTES = ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
                  "PatientMotherBirthName", "PatientBirthDate", "AccessionNumber", "IssuerOfPatientID")
# UIDs that folders and files are often named after: coded in ids as whole values (see scrub).
UID_ATTRIBUTES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
UID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
# What may be a UID in a name when the file's own UIDs are unknown: three numbers or more joined by dots.
UID_LIKE = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")

Identity = tuple[set[str], set[str]]  # (lower-case identifying values, UIDs)


def phi_values(ds) -> Identity:
    """Lower-case identifying strings of ``ds`` (person names also split into their parts), and its UIDs."""
    from pydicom.multival import MultiValue

    out: set[str] = set()
    uids: set[str] = set()
    for attr in PHI_ATTRIBUTES + UID_ATTRIBUTES:
        value = _value(ds, attr)
        for v in value if isinstance(value, (list, tuple, MultiValue)) else [value]:
            text = str(v or "").strip().lower()
            if attr in UID_ATTRIBUTES and UID.fullmatch(text):
                uids.add(text)
            elif text:  # a malformed UID is matched like a patient ID
                out.add(text)
                out.update(p for p in re.split(r"[\^=\s]+", text) if len(p) >= 2)
    return out, uids


def states_its_uids(ds) -> bool:
    """Whether ``ds`` gives all three of its UIDs: then its name holds no UID that :func:`scrub` would miss."""
    return all(UID.fullmatch(str(_value(ds, attr) or "").strip()) for attr in UID_ATTRIBUTES)


def _value(ds, attr: str):
    """``ds``'s ``attr``; None when missing or damaged (pydicom raises as it converts a value of the wrong length)."""
    try:
        return ds.get(attr)
    except Exception:
        return None


def scrub(rel: str, phi: set[str], uids: set[str] = frozenset()) -> str:
    """``rel`` with every path component that holds a value of ``phi`` or a UID of ``uids`` replaced by a stable hash.

    A component holds a value when one of its word-like tokens equals it, or
    (values of 4 characters or more) when it contains it. It holds a UID when
    one of its dotted numbers (the runs of digits and dots, end dots left off)
    is the whole UID: ``1.2.3.dcm`` holds ``1.2.3``, ``1.2.34`` does not.
    """
    parts = rel.split("/")
    for i, part in enumerate(parts):
        low = part.lower()
        tokens = set(re.split(r"[^0-9a-z]+", low))
        dotted = {t.strip(".") for t in re.split(r"[^0-9.]+", low)}
        if not dotted.isdisjoint(uids) or any(v in tokens or (len(v) >= 4 and v in low) for v in phi):
            parts[i] = short_hash(part, "x-")
    return "/".join(parts)


def code_uid_like(rel: str) -> str:
    """``rel`` with every component that holds a dotted number of three parts or more (``1.2.840.1.dcm``)
    coded as :func:`scrub` codes it: for a file whose own UIDs are unknown. Codes already in ``rel``
    (``x-`` and hex digits) hold no dot and stay as they are."""
    return "/".join(short_hash(p, "x-") if UID_LIKE.search(p) else p for p in rel.split("/"))


def coded(rel: str, identity: Identity, keep_phi: bool, uids_unknown: bool = False) -> str:
    """``rel`` as it is with ``keep_phi``, else coded with ``identity`` (and, for a file whose UIDs
    are unknown, every dotted number like a UID)."""
    if keep_phi:
        return rel
    out = scrub(rel, *identity)
    return code_uid_like(out) if uids_unknown else out


def shown(rel: str, identity: Identity, keep_phi: bool, uids_unknown: bool = False) -> str:
    """``rel`` as a one-line message prints it (see :func:`coded`)."""
    return printable(coded(rel, identity, keep_phi, uids_unknown))


def union(*identities: Identity) -> Identity:
    """The values and UIDs of all ``identities`` together."""
    return set().union(*(i[0] for i in identities)), set().union(*(i[1] for i in identities))
