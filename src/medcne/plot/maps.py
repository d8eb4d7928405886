"""The map: one dot per image, coloured by class or by a per-image value."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..datasets.imageset import label_range_problem
from ..datasets.labels import class_name_reader
from ..errors import MedcneError
from ..io import atomic_write
from ..params import say

FORMATS = (".png", ".pdf", ".svg")
# matplotlib's warning for a character its font lacks: "Glyph 20013 (...) missing from font(s) DejaVu Sans."
MISSING_GLYPH = re.compile(r"Glyph (\d+) .*missing from font\(s\) (.+?)\.?$")
# Single colour of unlabeled maps.
PLAIN = "#3b6ea5"


def class_colors(n_classes: int) -> np.ndarray:
    """One RGBA colour per class index, shape (n_classes, 4); the same for every panel.

    tab10 up to 10 classes, tab20 up to 20, then evenly spaced hues.
    """
    from matplotlib import colormaps

    if n_classes <= 10:
        return colormaps["tab10"](np.arange(n_classes))
    if n_classes <= 20:
        return colormaps["tab20"](np.arange(n_classes))
    return colormaps["hsv"](np.linspace(0, 1, n_classes, endpoint=False))


def point_style(n: int) -> tuple[float, float]:
    """Marker size (points^2) and alpha readable for ``n`` points.

    Few points get large opaque dots; hundreds of thousands get small faint
    ones, so dense regions show density instead of one solid blob. Both follow
    1/n between clipping limits: size 20 and alpha 0.9 at 1,000 points, size
    0.3 and alpha ~0.3 at 300,000.
    """
    size = float(np.clip(2e4 / max(n, 1), 0.3, 30.0))
    alpha = float(np.clip(np.sqrt(9e3 / max(n, 1)), 0.25, 0.9))
    return size, alpha


def _as_map(Z) -> np.ndarray:
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[1] != 2 or len(Z) == 0:
        raise MedcneError(f"a map must be an N x 2 array; got shape {Z.shape}")
    return Z


def categories(values) -> tuple[np.ndarray, list[str]] | None:
    """Codes and names when ``values`` are categorical (not numbers), else None."""
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        return None
    names, codes = np.unique(values.astype(str), return_inverse=True)
    return codes.reshape(-1), [str(n) for n in names]


def plot_map(
    Z,
    labels=None,
    class_names=None,
    ax=None,
    title: str | None = None,
    values=None,
    cmap: str = "viridis",
    legend: bool = True,
    seed: int = 0,
    colorbar: bool = True,
):
    """Draw a map as one scatter (a single PathCollection of N points).

    Parameters
    ----------
    Z : array, shape (N, 2)
        The map coordinates.
    labels : array of int, shape (N,), optional
        Class index of each point (into ``class_names``); colours by class with
        a legend of class names.
    class_names : list of str, optional
        Name per class index; default: the indices.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.
    title : str, optional
    values : array, shape (N,), optional
        Colour by this per-image value instead of the class: numbers get a
        colour map and a colour bar, strings are categories with a legend.
    cmap : str
        Colour map for numeric ``values``.
    legend : bool
        Draw the legend of classes.
    seed : int
        Seed of the drawing order (shuffled so that no class hides another).
    colorbar : bool
        Draw the colour bar of numeric ``values``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.lines import Line2D

    Z = _as_map(Z)
    n = len(Z)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 7))
    numeric = None
    if values is not None:
        values = np.asarray(values)
        if values.shape != (n,):
            raise MedcneError(f"values must be one per point ({n}); got shape {values.shape}")
        cats = categories(values)
        if cats is None:
            numeric = values.astype(float)
        else:
            labels, class_names = cats
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise MedcneError(f"labels must be {n} integer class indices; got {labels.dtype} {labels.shape}")
        n_classes = int(labels.max()) + 1 if class_names is None else len(class_names)
        if problem := label_range_problem(labels, n_classes):
            raise MedcneError(problem)
        class_names = [str(c) for c in (class_names if class_names is not None else range(n_classes))]
    size, alpha = point_style(n)
    order = np.random.default_rng(seed).permutation(n)
    kw = dict(s=size, alpha=alpha, linewidths=0, rasterized=n > 5000)
    if numeric is not None:
        sc = ax.scatter(Z[order, 0], Z[order, 1], c=numeric[order], cmap=cmap, **kw)
        if colorbar:
            ax.figure.colorbar(sc, ax=ax, shrink=0.7)
    elif labels is not None:
        colors = class_colors(len(class_names))
        ax.scatter(Z[order, 0], Z[order, 1], c=colors[labels[order]], **kw)
        if legend:
            present = np.unique(labels)
            handles = [
                Line2D([], [], ls="", marker="o", color=colors[c], label=class_names[c]) for c in present
            ]
            ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                      fontsize="small", markerscale=1.2)
    else:
        ax.scatter(Z[order, 0], Z[order, 1], c=PLAIN, **kw)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def plot_placed(ax, Z, names=None, class_names=None, what: str = "placed images", legend: bool = True):
    """Draw points placed into a map (``medcne embed``) over it: larger, edged in black, in their
    class's colour of the map when ``names`` (a class name per point) is one of ``class_names`` (the
    map's classes, or the categories it is coloured by; a name with spaces around it matches too),
    else white. ``legend``: add an entry "``what`` (N)" to the map's legend (below the map when it
    has none, as when coloured by numbers)."""
    from matplotlib.lines import Line2D

    Z = _as_map(Z)
    face = np.tile(np.array([1.0, 1.0, 1.0, 1.0]), (len(Z), 1))
    if names is not None and class_names:
        class_names = [str(c) for c in class_names]
        named, code = class_name_reader(class_names), {}
        for name in set(map(str, names)):  # read as evaluate reads labels; a name two classes may bear: none
            try:
                code[name] = class_names.index(named(name)) if named(name) in class_names else -1
            except MedcneError:
                code[name] = -1
        codes = np.array([code[str(n)] for n in names])
        face[codes >= 0] = class_colors(len(class_names))[codes[codes >= 0]]
    size = max(4.0 * point_style(len(Z))[0], 12.0)
    ax.scatter(Z[:, 0], Z[:, 1], s=size, c=face, edgecolors="black", linewidths=0.6, zorder=3)
    if not legend:
        return ax
    entry = Line2D([], [], ls="", marker="o", markerfacecolor="white", markeredgecolor="black",
                   label=f"{what} ({len(Z):,})")
    old = ax.get_legend()
    if old is None:  # a colour bar stands on the right
        ax.legend(handles=[entry], loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False, fontsize="small")
    else:
        ax.legend(handles=[*old.legend_handles, entry], loc="center left", bbox_to_anchor=(1.0, 0.5),
                  frameon=False, fontsize="small", markerscale=1.2)
    return ax


def save_figure(fig, path) -> Path:
    """Write a matplotlib figure atomically as PNG, PDF or SVG (by extension)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise MedcneError(f"{path}: figures must end in .png, .pdf or .svg")
    fmt = path.suffix.lower().lstrip(".")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        atomic_write(path, lambda p: fig.savefig(p, format=fmt, dpi=150, bbox_inches="tight"))
    lacking = {}
    for w in caught:
        if m := MISSING_GLYPH.search(str(w.message)):
            lacking[chr(int(m[1]))] = m[2]
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if lacking:  # one note, not matplotlib's warning (and its source line) per character
        shown = "".join(sorted(lacking))
        say(f"note: {path}: the font ({', '.join(sorted(set(lacking.values())))}) has no glyph for "
            f"{shown[:20]!r}{'...' if len(shown) > 20 else ''}, drawn as boxes; install a font that has "
            "them (e.g. Noto Sans CJK) and make it matplotlib's (`font.family`)")
    return path


def new_figure(width: float, height: float):
    """A figure outside pyplot (Agg canvas): no GUI, nothing to close, freed with its last reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


AXIS_PAIRS = ((0, 1), (0, 2), (1, 2))
AXIS_NAMES = "xyz"


def plot_map_pairs(Z, labels=None, class_names=None, fig=None, title: str | None = None, values=None) -> list:
    """Draw a 3-D map as three panels, one per pair of axes (x/y, x/z, y/z).

    A flat scatter of the first two coordinates would hide a third of the
    map and look like a 2-D map; the panels show all of it, and the figure's
    title says that it is 3-D.

    Parameters
    ----------
    Z : array, shape (N, 3)
        The map coordinates.
    labels, class_names, values
        As for :func:`plot_map`; the legend (or colour bar) goes with the last panel.
    fig : matplotlib Figure, optional
        Where to draw; default: a new figure (see :func:`new_figure`).
    title : str, optional
        Put before "3-D map, shown as three pairs of axes".

    Returns
    -------
    list of matplotlib.axes.Axes
        The three panels, in the order x/y, x/z, y/z.
    """
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[1] != 3 or len(Z) == 0:
        raise MedcneError(f"a 3-D map must be an N x 3 array; got shape {Z.shape}")
    if fig is None:
        fig = new_figure(16, 6)
    axes = fig.subplots(1, 3)
    for k, (ax, (a, b)) in enumerate(zip(axes, AXIS_PAIRS, strict=True)):
        plot_map(Z[:, [a, b]], labels, class_names, ax=ax, values=values, legend=k == 2,
                 title=f"{AXIS_NAMES[a]} / {AXIS_NAMES[b]}", colorbar=k == 2)
        ax.set_xlabel(AXIS_NAMES[a])
        ax.set_ylabel(AXIS_NAMES[b])
    fig.suptitle(f"{title}: 3-D map, shown as three pairs of axes" if title
                 else "3-D map, shown as three pairs of axes")
    return list(axes)


def save_map(path, Z, labels=None, class_names=None, title: str | None = None, values=None) -> Path:
    """Draw a map into a new figure and write it atomically.

    An N x 2 map is one :func:`plot_map`; an N x 3 map (``fit --dim 3``)
    three panels of :func:`plot_map_pairs`, titled as 3-D.

    Parameters
    ----------
    path : str or Path
        Output ending in ``.png``, ``.pdf`` or ``.svg``.
    Z, labels, class_names, title, values
        As for :func:`plot_map`; ``Z`` may have 3 columns.

    Returns
    -------
    Path
        The written file.
    """
    if np.ndim(Z) == 2 and np.shape(Z)[1] == 3:
        fig = new_figure(16, 6)
        plot_map_pairs(Z, labels, class_names, fig=fig, title=title, values=values)
    else:
        fig = new_figure(7, 7) if labels is None else new_figure(9, 7)
        plot_map(Z, labels, class_names, ax=fig.add_subplot(), title=title, values=values)
    try:
        return save_figure(fig, path)
    finally:
        fig.clear()
