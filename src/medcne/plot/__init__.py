"""Static figures of maps. Functions take arrays and ``ax=None``, return the Axes, never show."""

from .maps import class_colors, new_figure, plot_map, point_style, save_figure, save_map

__all__ = ["class_colors", "new_figure", "plot_map", "point_style", "save_figure", "save_map"]
