"""Static figures of maps. Functions take arrays and ``ax=None``, return the Axes, never show."""

from .maps import (
    class_colors,
    new_figure,
    plot_map,
    plot_placed,
    point_style,
    save_figure,
    save_map,
)
from .panels import plot_panels, shared_classes
from .thumbnails import count_thumbnails, plot_thumbnails, thumbnail_grid

__all__ = [
    "class_colors", "count_thumbnails", "new_figure", "plot_map", "plot_panels", "plot_placed", "plot_thumbnails",
    "point_style", "save_figure", "save_map", "shared_classes", "thumbnail_grid",
]
