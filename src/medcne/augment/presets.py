"""The augmentation presets of the paper and the validation of their parameters.

A preset is a set of defaults; every value can be overridden by name. The
values are those of SimCLR as t-SimCNE uses them (docs/design.md, "Augmentations").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..defaults import PRESETS
from ..errors import MedcneError

# How each preset rotates: not at all, by k * 90 degrees, or by any angle.
ROTATION = {"simclr": None, "rot90": "quarter", "rotate": "angle", "none": None}

_COMMON = dict(
    scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), brightness=0.4, contrast=0.4, saturation=0.4,
    hue=0.1, jitter_p=0.8, grayscale_p=0.2, hflip_p=0.5,
)
DEFAULTS = {
    "simclr": {**_COMMON, "vflip_p": 0.0},
    "rot90": {**_COMMON, "vflip_p": 0.5},
    "rotate": {**_COMMON, "vflip_p": 0.5},
    # Orientation-preserving: crops and colour only, so that a mirrored organ
    # (kidney left / kidney right) stays a different image.
    "none": {**_COMMON, "hflip_p": 0.0, "vflip_p": 0.0},
}
OVERRIDES = tuple(DEFAULTS["simclr"])


@dataclass(frozen=True)
class AugmentConfig:
    """Every resolved parameter of an :class:`~medcne.augment.Augmenter`.

    Attributes
    ----------
    preset : str
        One of :data:`PRESETS`.
    crop, jitter, grayscale : bool
        Switches for random resized crop, colour jitter and random grayscale
        (the ablations of the paper's Table S1).
    fill : tuple of float or None
        Colour in [0, 1] of the corners uncovered by rotations; ``None`` is black.
    scale : (float, float)
        Range of the crop area as a fraction of the image area.
    ratio : (float, float)
        Range of the crop aspect ratio (width / height), sampled log-uniformly.
    brightness, contrast, saturation : float
        Factors are drawn uniformly from [max(0, 1 - v), 1 + v].
    hue : float
        Hue shifts are drawn uniformly from [-hue, hue] (a fraction of the circle).
    jitter_p, grayscale_p, hflip_p, vflip_p : float
        Probabilities of colour jitter, grayscale, horizontal and vertical flip.
    """

    preset: str
    crop: bool
    jitter: bool
    grayscale: bool
    fill: tuple[float, ...] | None
    scale: tuple[float, float]
    ratio: tuple[float, float]
    brightness: float
    contrast: float
    saturation: float
    hue: float
    jitter_p: float
    grayscale_p: float
    hflip_p: float
    vflip_p: float

    @property
    def rotation(self) -> str | None:
        """None, ``"quarter"`` (k * 90 degrees) or ``"angle"`` (uniform in [0, 360))."""
        return ROTATION[self.preset]

    def as_dict(self) -> dict:
        """Plain JSON-serialisable values (for ``params.json``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def resolve(preset: str, crop: bool, jitter: bool, grayscale: bool, fill, overrides: dict) -> AugmentConfig:
    """Check every parameter and merge the overrides into the preset's defaults."""
    if preset not in PRESETS:
        raise MedcneError(
            f"`preset` must be one of {', '.join(repr(p) for p in PRESETS)}; got {preset!r}"
        )
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise MedcneError(
            f"unknown augmentation parameter {unknown[0]!r}; "
            f"choose from {', '.join(OVERRIDES)}"
        )
    for name, value in (("crop", crop), ("jitter", jitter), ("grayscale", grayscale)):
        if not isinstance(value, bool):
            raise MedcneError(f"`{name}` must be True or False; got {value!r}")
    values = {**DEFAULTS[preset], **overrides}
    values["scale"] = _pair("scale", values["scale"], low=0.0, high=1.0, closed_low=False)
    values["ratio"] = _pair("ratio", values["ratio"], low=0.0, high=math.inf, closed_low=False)
    for name in ("brightness", "contrast", "saturation"):
        values[name] = _number(name, values[name], 0.0, math.inf, "a number >= 0, e.g. 0.4")
    values["hue"] = _number("hue", values["hue"], 0.0, 0.5, "a number in [0, 0.5], e.g. 0.1")
    for name in ("jitter_p", "grayscale_p", "hflip_p", "vflip_p"):
        values[name] = _number(name, values[name], 0.0, 1.0, "a probability in [0, 1]")
    return AugmentConfig(
        preset=preset, crop=crop, jitter=jitter, grayscale=grayscale, fill=_fill(fill), **values
    )


def _number(name: str, value, low: float, high: float, fix: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (low <= number <= high):
        raise MedcneError(f"`{name}` must be {fix}; got {value!r}")
    return number


def _pair(name: str, value, low: float, high: float, closed_low: bool) -> tuple[float, float]:
    fix = f"`{name}` must be two numbers (min, max) with min <= max"
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise MedcneError(f"{fix}, e.g. {DEFAULTS['simclr'][name]}; got {value!r}") from None
    above_low = a > low or (closed_low and a == low)
    if not (above_low and a <= b <= high):
        where = f"in ({low:g}, {high:g}]" if math.isfinite(high) else f"> {low:g}"
        raise MedcneError(f"{fix}, both {where}; got {value!r}")
    return a, b


def _fill(fill) -> tuple[float, ...] | None:
    if fill is None:
        return None
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        fill = (fill,)
    try:
        values = tuple(float(v) for v in fill)
    except (TypeError, ValueError):
        values = ()
    if len(values) not in (1, 3) or not all(0.0 <= v <= 1.0 for v in values):
        raise MedcneError(f"`fill` must be 1 or 3 numbers in [0, 1], one per channel, such as the images' border "
                          f"colour; got {fill!r}")
    return values
