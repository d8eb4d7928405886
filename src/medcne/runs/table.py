"""Small CSV tables a user hands to a command (``evaluate --labels``, ``plot --values``), read strictly.

The strict reading (UTF-8, well-formed quoting, one cell per column, a line
number in every message) is the dataset reader's
(:func:`medcne.datasets.csvfile.read_table`); here the rows become dicts by
column and a missing file names the option that gave it.
"""

from __future__ import annotations

from pathlib import Path

from ..datasets.csvfile import read_table as read_cells
from ..errors import MedcneError
from ..io import csv_value


def read_table(path, option: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (dicts by column) of the CSV file ``path`` given to ``option``.

    Parameters
    ----------
    path : str or Path
        A comma-separated file (``.tsv``: tab-separated), UTF-8 (a byte-order mark is allowed).
    option : str
        The parameter that named it, for messages (e.g. 'labels'; the command line shows its option).

    Returns
    -------
    (list of str, list of dict)
        Column names, and one dict per non-empty row.
    """
    path = Path(path)
    if not path.is_file():
        raise MedcneError(f"`{option}` {path}: no such file; give a CSV file")
    header, body = read_cells(path)
    # Undo the escape of formula-like cells (medcne.io.csv_cell) that medcne's CSVs and the viewer's export carry.
    header = [csv_value(c) for c in header]
    return header, [dict(zip(header, map(csv_value, cells), strict=True)) for _, cells in body]
