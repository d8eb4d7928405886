"""Augmentation without PIL: the paper's presets, batched on any device.

Two engines give the same views: batched tensor operations (any device) and a
compiled CPU kernel (:mod:`.kernel`, the default for CPU batches).

>>> from medcne.augment import Augmenter, border_colour, PRESETS
>>> aug = Augmenter("rotate", fill=border_colour(images))   # images: N x H x W x C uint8
>>> view1, view2 = aug(batch, generator), aug(batch, generator)

``batch`` is B x C x H x W (uint8 or float in [0, 1]) on any device and
``generator`` a ``torch.Generator`` on the same device; each call returns one
float32 view per image. :func:`render` makes views with every random choice
given explicitly (:class:`ViewParams`), for tests and previews.
"""

from .augmenter import Augmenter, render
from .border import augmenter_for, border_colour
from .geometry import needs_fill
from .presets import PRESETS, AugmentConfig
from .sampling import ViewParams

__all__ = [
    "PRESETS", "AugmentConfig", "Augmenter", "ViewParams", "augmenter_for", "border_colour", "needs_fill",
    "render",
]
