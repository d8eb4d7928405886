"""Several maps side by side with the same class colours in every panel."""

from __future__ import annotations

import re

import numpy as np

from .maps import class_colors, plot_map


def shared_classes(label_sets) -> list[str]:
    """Union of class names over maps, in order of first appearance."""
    names: list[str] = []
    for class_names in label_sets:
        for name in class_names or []:
            if name not in names:
                names.append(name)
    return names


def recode(labels, class_names, union: list[str]) -> np.ndarray | None:
    """Labels of one map as indices into ``union`` (so one name has one colour everywhere)."""
    if labels is None or class_names is None:
        return None
    lookup = np.array([union.index(name) for name in class_names], dtype=np.int64)
    return lookup[np.asarray(labels)]


def wrap(text: str, width: int) -> str:
    """``text`` with each line cut into lines of at most ``width`` characters, after a space, ``_`` or
    ``/`` where it can (dataset names and paths have few spaces) but not inside ``[...]``, else anywhere."""
    out = []
    for line in text.split("\n"):
        current = ""
        for piece in re.split(r"(?<=[ _/])(?![^\[]*\])", line):
            if current and len((current + piece).rstrip()) > width:
                out.append(current.rstrip())
                current = ""
            while len(piece.rstrip()) > width:
                out.append(piece[:width])
                piece = piece[width:]
            current += piece
        out.append(current.rstrip())
    return "\n".join(out)


def fitting(inches: float, size: str | float = "large") -> int:
    """How many characters of font ``size`` fit in ``inches`` with room to spare (an average character
    is taken as 0.6 em wide)."""
    return max(8, int(0.9 * inches * 72 / (0.6 * _points(size))))


def _points(size: str | float) -> float:
    from matplotlib.font_manager import FontProperties

    return FontProperties(size=size).get_size_in_points()


def _row_gap(fig, n_rows: int, lines: int) -> float:
    """The gridspec ``hspace`` that leaves room between rows for titles of ``lines`` lines (matplotlib's
    default, 0.2, fits two), so that a title never runs into the maps above it."""
    gap = (lines * 1.2 * _points("large") + 12) / 72  # inches: the lines, the title's pad and a margin
    # matplotlib's default margins leave 0.77 of the height to the axes and the gaps between them.
    height = (0.77 * fig.get_figheight() - (n_rows - 1) * gap) / n_rows
    return max(0.2, gap / height) if height > 0 else 0.2


def plot_panels(maps: list[dict], fig, n_cols: int | None = None) -> list:
    """Draw one panel per map into ``fig`` and one legend for all.

    Parameters
    ----------
    maps : list of dict
        Each with ``Z`` (N, 2), ``labels`` (N,) or None, ``class_names`` or
        None, ``title`` (wrapped to its column's width); optional ``row`` (a
        dataset) puts maps of one row together, and ``row_label`` is said once,
        left of the row.
    fig : matplotlib Figure
    n_cols : int, optional
        Panels per row when no ``row`` is given; default: all in one row up to 4.

    Returns
    -------
    list of Axes
        One per map, in the order given.
    """
    from matplotlib.lines import Line2D

    union = shared_classes(m.get("class_names") for m in maps)
    rows = list(dict.fromkeys(m.get("row") for m in maps))
    if rows == [None]:
        n_cols = n_cols or min(len(maps), 4)
        positions = [(i // n_cols, i % n_cols) for i in range(len(maps))]
        n_rows = (len(maps) + n_cols - 1) // n_cols
    else:
        seen: dict = {}
        positions = []
        for m in maps:
            r = rows.index(m.get("row"))
            positions.append((r, seen.get(r, 0)))
            seen[r] = seen.get(r, 0) + 1
        n_rows, n_cols = len(rows), max(seen.values())
    # Titles wrapped to their column, row labels along their row: neighbours never overlap.
    titles = [wrap(m["title"], fitting(fig.get_figwidth() / n_cols)) if m.get("title") else None for m in maps]
    lines = max((t.count("\n") + 1 for t in titles if t), default=1)
    grid = fig.add_gridspec(n_rows, n_cols, hspace=_row_gap(fig, n_rows, lines))
    axes = []
    for m, title, (r, c) in zip(maps, titles, positions, strict=True):
        ax = fig.add_subplot(grid[r, c])
        labels = recode(m.get("labels"), m.get("class_names"), union)
        plot_map(m["Z"], labels, union if labels is not None else None, ax=ax, title=title, legend=False)
        if c == 0 and m.get("row_label"):
            ax.set_ylabel(wrap(m["row_label"], fitting(0.7 * fig.get_figheight() / n_rows)), fontsize="large")
        axes.append(ax)
    if union:
        colours = class_colors(len(union))
        handles = [Line2D([], [], ls="", marker="o", color=colours[i], label=n) for i, n in enumerate(union)]
        # Below the panels; savefig(bbox_inches="tight") keeps it in the file.
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.02),
                   ncol=min(len(union), 4), frameon=False, fontsize="small")
    return axes
