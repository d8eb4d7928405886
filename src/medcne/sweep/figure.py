"""The figure of a sweep: a grid of maps, one row per dataset and one column per method."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runs import read_run
from .run import is_finished


def first_finished(out: Path, sweep: dict, dataset: str, method: str):
    """The finished run of the lowest seed of a dataset x method, or None."""
    names = [n for n in sweep["order"] if n.rsplit("/", 2)[:2] == [dataset, method]]
    for name in sorted(names, key=lambda n: int(n.rsplit("seed", 1)[1])):
        if is_finished(out / name):
            return read_run(out / name)
    return None


def figure_grid(out, sweep: dict, path) -> Path | None:
    """Write the grid (PNG) atomically; None when no cell has finished yet.

    Each panel is the map of the lowest finished seed, titled with the method
    and that run's kNN accuracy; classes keep their colours along a row.
    """
    from matplotlib.lines import Line2D

    from ..plot import class_colors, new_figure, plot_map, save_figure

    out = Path(out)
    datasets, methods = sweep["datasets"], sweep["methods"]
    runs = {(d, m): first_finished(out, sweep, d, m) for d in datasets for m in methods}
    datasets = [d for d in datasets if any(runs[d, m] for m in methods)]
    methods = [m for m in methods if any(runs[d, m] for d in datasets)]
    if not datasets:
        return None
    fig = new_figure(3.2 * len(methods) + 2.5, 3.3 * len(datasets))
    grid = fig.add_gridspec(len(datasets), len(methods))
    for i, d in enumerate(datasets):
        names = None
        for j, m in enumerate(methods):
            ax = fig.add_subplot(grid[i, j])
            run = runs[d, m]
            if run is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{m}\n(no finished run)", ha="center", va="center", transform=ax.transAxes)
                continue
            knn = run.metrics.get("knn_accuracy")
            title = f"{m}" + ("" if knn is None else f"\nkNN {knn:.1f}%")
            plot_map(np.asarray(run.embedding)[:, :2], run.labels, run.class_names, ax=ax, title=title,
                     legend=False)
            if j == 0:
                ax.set_ylabel(d, fontsize="large")
            names = names or run.class_names
        if names:
            colours = class_colors(len(names))
            handles = [Line2D([], [], ls="", marker="o", color=colours[k], label=n) for k, n in enumerate(names)]
            fig.axes[-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False,
                                fontsize="small")
    try:
        return save_figure(fig, path)
    finally:
        fig.clear()
