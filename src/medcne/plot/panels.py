"""Several maps side by side with the same class colours in every panel."""

from __future__ import annotations

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


def plot_panels(maps: list[dict], fig, n_cols: int | None = None) -> list:
    """Draw one panel per map into ``fig`` and one legend for all.

    Parameters
    ----------
    maps : list of dict
        Each with ``Z`` (N, 2), ``labels`` (N,) or None, ``class_names`` or
        None, ``title``; optional ``row`` (a dataset) puts maps of one row together.
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
    grid = fig.add_gridspec(n_rows, n_cols)
    axes = []
    for m, (r, c) in zip(maps, positions, strict=True):
        ax = fig.add_subplot(grid[r, c])
        labels = recode(m.get("labels"), m.get("class_names"), union)
        plot_map(m["Z"], labels, union if labels is not None else None, ax=ax, title=m.get("title"),
                 legend=False)
        axes.append(ax)
    if union:
        colours = class_colors(len(union))
        handles = [Line2D([], [], ls="", marker="o", color=colours[i], label=n) for i, n in enumerate(union)]
        # Below the panels; savefig(bbox_inches="tight") keeps it in the file.
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.02),
                   ncol=min(len(union), 4), frameon=False, fontsize="small")
    return axes
