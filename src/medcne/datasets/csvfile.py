"""The CSV (or TSV) reader: a column of image paths, relative to the file, and an optional label column.

Strict by design: the file must be UTF-8, every row must have one value per
column, quoting must be well formed, every row needs a path and (when a label
column is used) a label; each problem is one error naming the file and the
line. Image paths must stay inside the CSV's folder (after resolving ``..`` and
symbolic links) unless ``allow_outside=True``: a CSV from elsewhere cannot
make medcne open ``/etc/passwd`` or print paths outside the dataset.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..errors import DataError, EmptyDatasetError, MissingColumnError, printable
from .files import decode_files
from .imageset import ImageSet, repeated_ids

MAX_LINES_LISTED = 5


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); check the path and its permissions") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8 "
            "(spreadsheets: 'CSV UTF-8')"
        ) from None


def refuse_semicolons(path, first_line: str, delimiter: str = ",") -> None:
    """One line for a CSV whose first line has ';' between columns and no ``delimiter`` (a spreadsheet's
    export in a language that writes decimal commas), rather than a quoting error or a missing column."""
    if ";" in first_line and delimiter not in first_line:
        what, fix = ("a tab", "tabs") if delimiter == "\t" else ("commas", "commas")
        raise DataError(f"{path}: its first line '{printable(first_line, 80)}' has ';' between columns, not "
                        f"{what}; save the file again with {fix} between columns")


def read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(column names, [(line number, cells), ...]) of a CSV (``.tsv``: tab-separated); blank rows skipped."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    text = _text(path)
    refuse_semicolons(path, next((line for line in text.splitlines() if line.strip()), ""), delimiter)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise DataError(
            f"{path}: line {reader.line_num}: {exc}; check the quoting: a value holding the delimiter, a quote "
            "or a line break must be in double quotes, with inner quotes doubled"
        ) from None
    if not rows:
        return [], []
    (_, header), body = rows[0], rows[1:]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(
            f"{path}: column(s) {printable(', '.join(map(repr, repeated)))} appear more than once in the header; rename them"
        )
    for line, cells in body:
        if len(cells) != len(header):
            raise DataError(
                f"{path}: line {line} has {len(cells)} values but the header has {len(header)} columns; "
                "give one value per column (quote values that hold the delimiter)"
            )
    return header, body


def _lines(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:MAX_LINES_LISTED])
    return shown + (f" and {len(lines) - MAX_LINES_LISTED} more" if len(lines) > MAX_LINES_LISTED else "")


def image_paths(path: Path, cells: list[str], lines: list[int], allow_outside: bool) -> list[Path]:
    """The image files named in the path column, resolved against the CSV's folder and kept inside it."""
    root = path.parent.resolve()
    empty = [n for n, c in zip(lines, cells, strict=True) if not c.strip()]
    if empty:
        raise DataError(f"{path}: empty image path on line(s) {_lines(empty)}; give every row a path or remove the row")
    files, outside = [], []
    for line, cell in zip(lines, cells, strict=True):
        try:
            full = (root / cell).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise DataError(
                f"{path}: line {line}: '{printable(cell)}' is not a usable path ({type(exc).__name__}); fix that row"
            ) from None
        if not allow_outside and not full.is_relative_to(root):
            outside.append((line, cell))
        files.append(full)
    if outside:
        line, cell = outside[0]
        raise DataError(
            f"{path}: {len(outside)} image path(s) lead outside the CSV's folder {root} (line {line}: '{printable(cell)}'); "
            "medcne reads only files under it unless you pass `allow_outside`"
        )
    return files


def read_csv(
    path: Path,
    *,
    path_column: str = "path",
    label_column: str | None = None,
    size=None,
    channels="keep",
    skip_bad=False,
    allow_outside: bool = False,
    upright: bool = True,
) -> ImageSet:
    """A CSV with a column of image paths (relative to the CSV) and optional labels.

    ``label_column=None`` uses a column named ``label`` when there is one. Every
    row of a label column needs a label (an empty cell is an error: give the
    unlabeled images a class such as ``unknown``, or leave out the column).
    ``allow_outside=True`` lets paths leave the CSV's folder (``..``, absolute).
    ``upright``: turn photos as their EXIF orientation tag says (see :func:`.files.read_folder`).
    """
    path = Path(path)
    columns, rows = read_table(path)
    if path_column not in columns:
        raise MissingColumnError(
            f"{path}: no column '{printable(path_column)}' ({_header(columns)}); "
            "name the path column with `path_column`"
        )
    if label_column is not None and label_column not in columns:
        raise MissingColumnError(
            f"{path}: no column '{printable(label_column)}' ({_header(columns)}); "
            "name the label column with `label_column`"
        )
    if label_column is None and "label" in columns:
        label_column = "label"
    if not rows:
        raise EmptyDatasetError(f"{path}: the CSV has no rows; add one row per image")
    lines = [line for line, _ in rows]
    cells = [r[columns.index(path_column)] for _, r in rows]
    if problem := repeated_ids(cells):  # an image's id is its path as listed
        raise DataError(f"{path}: in column '{printable(path_column)}', {problem.replace('the id', 'the path')}: "
                        "a file listed twice; remove the repeated rows")
    files = image_paths(path, cells, lines, allow_outside)
    labels = class_names = None
    if label_column is not None:
        values = [r[columns.index(label_column)].strip() for _, r in rows]
        empty = [n for n, v in zip(lines, values, strict=True) if not v]
        if empty:
            raise DataError(
                f"{path}: empty {label_column!r} on line(s) {_lines(empty)}; give every image a label "
                "(e.g. 'unknown') or remove those rows"
            )
        labels, class_names = encode_labels(values)
    return decode_files(
        files, cells, labels, class_names,
        source=str(path), size=size, channels=channels, skip_bad=skip_bad, upright=upright,
    )


def encode_labels(values: list[str]) -> tuple[list[int], list[str]]:
    """Strings -> (codes, class names); names sort numerically when all are integers."""
    names = sorted(set(values))
    try:
        names = sorted(names, key=int)
    except ValueError:  # not all integers ("--5" or "²" pass str.isdigit checks but not int)
        pass
    code = {name: i for i, name in enumerate(names)}
    return [code[v] for v in values], names


def _header(columns: list[str]) -> str:
    """The columns of a header for a message; a first line that does not look like column names is
    not repeated: the file may not be a table at all (it may be someone's private file)."""
    names = [c for c in columns if c]
    if not names or not all(re.fullmatch(r"[\w .()#-]{1,40}", c) for c in names):
        return f"its first line is no header of column names ({len(columns)} cell(s)); is it a CSV of image paths?"
    return "columns: " + printable(", ".join(names))
