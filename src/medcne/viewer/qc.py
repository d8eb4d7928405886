"""Quality-check results of a run (``RUN/qc.csv``), read for the viewer page.

``qc.csv`` has one row per image, matched to the run by ``id``; other columns
are ignored::

    id,label,label_issue_score,suggested_label,likely_label_error,duplicate_id,
    duplicate_distance,likely_duplicate,outlier_score,likely_outlier

Scores are floats (higher: more suspicious; an empty field is a missing
value), ``likely_*`` are 0 or 1, ``suggested_label`` is a class name or empty,
``duplicate_id`` the id of the nearest other image of the run (or empty). The
file is checked here, before the page is built, so that a bad file gives one
line naming it and the problem instead of a page that shows wrong flags.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedcneError
from ..io import csv_value
from ..runs.folder import QC

QC_FILE = QC  # the run folder's name for it (medcne.runs.folder)
SCORES = ("label_issue_score", "duplicate_distance", "outlier_score")
FLAGS = ("likely_label_error", "likely_duplicate", "likely_outlier")
# ``label`` is in the format but not needed: the page has the run's own labels.
REQUIRED = ("id", "label_issue_score", "suggested_label", "likely_label_error", "duplicate_id",
            "duplicate_distance", "likely_duplicate", "outlier_score", "likely_outlier")


@dataclass
class QC:
    """QC columns in the run's point order (N points)."""

    scores: dict[str, np.ndarray]  # float N per score; NaN where missing
    flags: dict[str, np.ndarray]  # bool N per likely_* column
    suggested: list[str]  # suggested label per point, "" for none
    duplicate: np.ndarray  # int N: point index of duplicate_id, -1 for none


def read_qc(path, ids) -> QC:
    """Read and check ``qc.csv`` against the run's ``ids`` (in embedding order).

    Points without a row get missing scores, no flags and no suggestion; an id
    that is not in the run, an id given twice, a missing column, or a value
    that does not parse is refused with one line naming the file.
    """
    path = Path(path)
    index = {str(i): n for n, i in enumerate(ids)}
    n = len(index)
    scores = {name: np.full(n, np.nan) for name in SCORES}
    flags = {name: np.zeros(n, dtype=bool) for name in FLAGS}
    suggested = [""] * n
    duplicate = np.full(n, -1, dtype=np.int64)
    seen: set[str] = set()
    try:
        # utf-8-sig: a spreadsheet program may have saved the file with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise MedcneError(f"{path}: missing columns {', '.join(missing)}; "
                                  f"qc.csv needs {','.join(REQUIRED)}")
            for row in reader:
                row = {k: csv_value(v) if isinstance(v, str) else v for k, v in row.items()}
                where = f"{path}, line {reader.line_num}"
                image = row["id"]
                if image not in index:
                    raise MedcneError(f"{where}: id {image!r} is not in this run; "
                                      "qc.csv must come from this run's images")
                if image in seen:
                    raise MedcneError(f"{where}: id {image!r} appears twice")
                seen.add(image)
                i = index[image]
                for name in SCORES:
                    scores[name][i] = _number(row[name], name, where)
                for name in FLAGS:
                    flags[name][i] = _flag(row[name], name, where)
                # As written: an id or a class name may begin or end with a space (a folder's name).
                suggested[i] = row["suggested_label"] or ""
                dup = row["duplicate_id"] or ""
                if dup:
                    if dup not in index:
                        raise MedcneError(f"{where}: duplicate_id {dup!r} is not an id of this run")
                    duplicate[i] = index[dup]
    except (UnicodeDecodeError, csv.Error) as e:
        raise MedcneError(f"{path}: not a readable UTF-8 CSV file ({e})") from None
    return QC(scores, flags, suggested, duplicate)


def _number(text: str | None, column: str, where: str) -> float:
    text = (text or "").strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise MedcneError(f"{where}: {column} {text!r} is not a number") from None


def _flag(text: str | None, column: str, where: str) -> bool:
    text = (text or "").strip()
    if text not in ("0", "1"):
        raise MedcneError(f"{where}: {column} must be 0 or 1; got {text!r}")
    return text == "1"


def qc_meta(qc: QC, label_names: list[str] | None) -> dict:
    """The page's ``qc`` entry of data.js (the scores travel as colour columns).

    ``flags``: point indices per likely_* column; ``suggested``: per point an
    index into ``suggestedNames`` or -1, kept only where it differs from the
    run's label (``label_names``: class name per point, or None), as only a
    differing suggestion is news to the reader; ``duplicate``: per point the
    index of its nearest other image where ``likely_duplicate`` is set, -1
    elsewhere. Every image has a nearest other image, so showing it for all
    would call half the dataset duplicates; the flag carries the check's
    threshold (see :func:`medcne.curate.qc.near_duplicates`).
    """
    names: list[str] = []
    codes = {}
    suggested = []
    for i, name in enumerate(qc.suggested):
        if not name or (label_names is not None and name == label_names[i]):
            suggested.append(-1)
            continue
        if name not in codes:
            codes[name] = len(names)
            names.append(name)
        suggested.append(codes[name])
    return {
        "flags": {name: np.flatnonzero(qc.flags[name]).tolist() for name in FLAGS},
        "suggested": suggested,
        "suggestedNames": names,
        "duplicate": np.where(qc.flags["likely_duplicate"], qc.duplicate, -1).tolist(),
    }
