"""What a terminal shows for the bytes a program wrote: for checking progress bars line by line."""

from __future__ import annotations

import re


def screen(text: str) -> list[str]:
    """The lines a terminal shows for ``text`` (carriage return, newline, cursor up), trailing blanks cut."""
    rows, row, col = [[]], 0, 0
    for token in re.findall(r"\x1b\[A|.|\n", text, flags=re.S):
        if token == "\x1b[A":
            row = max(0, row - 1)
        elif token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            rows += [[] for _ in range(row + 1 - len(rows))]
        else:
            line = rows[row]
            line += [" "] * (col + 1 - len(line))
            line[col] = token
            col += 1
    return ["".join(r).rstrip() for r in rows]
