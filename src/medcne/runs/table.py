"""Small CSV tables a user hands to a command (``evaluate --labels``, ``plot --values``), read strictly.

Python's csv module reads almost anything: a missing closing quote swallows
the rest of the file into one cell, a short row gets ``None`` cells. Here a
file that is not UTF-8, is badly quoted or has rows of another length than its
header is refused with one line naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import MedcneError


def read_table(path, option: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (dicts by column) of the CSV file ``path`` given to ``option``.

    Parameters
    ----------
    path : str or Path
        A comma-separated file, UTF-8 (a byte-order mark is allowed).
    option : str
        The command-line option that named it, for messages (e.g. '--labels').

    Returns
    -------
    (list of str, list of dict)
        Column names, and one dict per non-empty row.
    """
    path = Path(path)
    if not path.is_file():
        raise MedcneError(f"{option} {path}: no such file; give a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            lines = [(reader.line_num, row) for row in reader if row]
    except UnicodeDecodeError as exc:
        raise MedcneError(f"{option} {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise MedcneError(f"{option} {path}: badly quoted CSV near line {reader.line_num} ({exc}); "
                          "close every quote and double quotes inside quoted cells") from None
    if not lines:
        return [], []
    header = lines[0][1]
    rows = []
    for number, row in lines[1:]:
        if len(row) != len(header):
            raise MedcneError(f"{option} {path}: line {number} has {len(row)} cells but the header has "
                              f"{len(header)}; give every row one cell per column")
        rows.append(dict(zip(header, row, strict=True)))
    return header, rows
