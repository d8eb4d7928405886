"""Intensity windows: how 12-16-bit scan values (CT in Hounsfield units, MR signal) become 8-bit pixels.

A window is a width W and a level (centre) L in the units of the stored values
after rescaling (Hounsfield units for CT). Values below ``L - W/2`` become 0,
values above ``L + W/2`` become 255, and values between are mapped linearly.

The ``window`` option of the DICOM and NIfTI readers takes:

- a named preset (:data:`PRESETS`; CT values in Hounsfield units), e.g. ``lung``
  or ``soft-tissue``;
- ``"W,L"``: a width and a level, e.g. ``"400,40"``;
- ``"file"``: the window the DICOM file itself states (WindowWidth and
  WindowCenter; the first when it states several); NIfTI files state none;
- ``"auto"`` (the default): the file's own window when a DICOM file states one,
  otherwise the 0.5th to 99.5th percentile of the values of the image (DICOM)
  or of the whole volume (NIfTI), so that a few extreme voxels do not decide
  the contrast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..defaults import chunk_rows
from ..errors import MedcneError, printable

# (width, level) in Hounsfield units: the windows radiologists use for CT.
PRESETS: dict[str, tuple[float, float]] = {
    "lung": (1500.0, -600.0),
    "mediastinum": (350.0, 50.0),
    "soft-tissue": (400.0, 50.0),
    "abdomen": (400.0, 50.0),
    "liver": (150.0, 30.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
    "subdural": (200.0, 75.0),
    "stroke": (40.0, 40.0),
}
AUTO, FILE = "auto", "file"
# The share of values cut at each end by the automatic window.
AUTO_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Window:
    """A width and a level, in the units of the values it is applied to."""

    width: float
    level: float

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (any shape, any numeric dtype) as uint8 of the same shape."""
        values = np.asarray(values)
        if values.ndim == 0:
            return self.apply(values.reshape(1)).reshape(())
        if values.flags.f_contiguous and not values.flags.c_contiguous:  # NIfTI's order: slabs of the last axis
            return self.apply(values.T).T
        out = np.empty(values.shape, dtype=np.uint8)
        # A float32 temporary of READ_CHUNK_MB at a time, worked in place: a CT volume is
        # hundreds of MB as float32.
        step = chunk_rows(4 * values[:1].size)
        for start in range(0, len(values), step):
            scaled = np.subtract(values[start : start + step], np.float32(self.low), dtype=np.float32)
            scaled *= np.float32(255.0 / self.width)
            np.rint(scaled, out=scaled)
            np.clip(scaled, 0, 255, out=scaled)
            out[start : start + step] = scaled
        return out


def parse_window(spec) -> str | Window:
    """``spec`` as a :class:`Window`, or ``"auto"`` / ``"file"``.

    Accepts None (``"auto"``), a preset name, ``"W,L"``, a (W, L) pair, or a Window.
    """
    if spec is None:
        return AUTO
    if isinstance(spec, Window):
        return _checked(spec.width, spec.level, spec)
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return _checked(spec[0], spec[1], spec)
    text = str(spec).strip().lower()
    if text in (AUTO, FILE):
        return text
    if text in PRESETS:
        return Window(*PRESETS[text])
    parts = text.split(",")
    if len(parts) == 2:
        try:
            return _checked(float(parts[0]), float(parts[1]), spec)
        except ValueError:
            pass
    raise MedcneError(
        f"`window` must be 'auto', 'file', a preset ({', '.join(PRESETS)}) or 'WIDTH,LEVEL' such as "
        f"'400,40'; got {spec!r}"
    )


def _checked(width, level, spec) -> Window:
    try:
        width, level = float(width), float(level)
    except (TypeError, ValueError):
        raise MedcneError(f"window width and level must be numbers; got {spec!r}") from None
    if not (np.isfinite(width) and np.isfinite(level)) or width <= 0:
        raise MedcneError(f"`window` {spec!r}: the width must be a positive number and the level finite")
    return Window(width, level)


def auto_window(values: np.ndarray, *, scratch: bool = False) -> Window:
    """The 0.5th-99.5th percentile range of ``values`` (finite values only) as a window.

    A constant image gets a window of width 1 around its value (all pixels then
    map to the middle grey, not to noise). ``scratch``: ``values`` (float32) may be
    reordered, so that the percentiles of finite values need no copy of them (a
    NIfTI volume's values are hundreds of MB).
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if not (scratch and flat.size and np.isfinite(flat.min()) and np.isfinite(flat.max())):
        flat = flat[np.isfinite(flat)]  # a copy, which the percentiles reorder
    if flat.size == 0:
        return Window(1.0, 0.0)
    low, high = np.percentile(flat, AUTO_PERCENTILES, overwrite_input=True)  # a copy, or scratch
    if not high > low:
        return Window(1.0, float(low))
    return Window(float(high - low), float((high + low) / 2))


def _first_item(value):
    """The first item of a DICOM value of several (a MultiValue), the value itself when it is one; None when
    a sequence has no first item."""
    if value is None or isinstance(value, (str, bytes, int, float)):
        return value
    try:
        return value[0]
    except (TypeError, IndexError, KeyError):
        return None


def first_number(value) -> float | None:
    """The first number of a DICOM value (one number, or several), or None (absent, not a number, not finite)."""
    value = _first_item(value)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def file_window(ds) -> Window | None:
    """The window a DICOM file ``ds`` states (the first of WindowWidth / WindowCenter), or None when it
    states none or one that cannot be applied (see :func:`unusable_window`)."""
    width, level = first_number(ds.get("WindowWidth")), first_number(ds.get("WindowCenter"))
    if width is None or level is None or not width > 0:
        return None
    return Window(width, level)


def unusable_window(ds) -> str | None:
    """What a DICOM file states as its window when :func:`file_window` cannot use it (a width of 0, a
    level that is not a number, one of the two missing), e.g. ``"WindowWidth 0.0, WindowCenter 40"``;
    None when it states a usable window or none at all. An invalid window is not "no window": saying
    which values are wrong lets the user find the files their scanner or converter damaged."""
    values = [ds.get(name) for name in ("WindowWidth", "WindowCenter")]
    if file_window(ds) is not None or all(v in (None, "") for v in values):
        return None
    shown = [_first_text(v) for v in values]
    return f"WindowWidth {shown[0]}, WindowCenter {shown[1]}"


def _first_text(value) -> str:
    """The first of a DICOM value's items as short text ('none' when absent)."""
    if value in (None, ""):
        return "none"
    first = _first_item(value)
    value = value if first is None else first
    return printable(value.decode("latin-1") if isinstance(value, bytes) else str(value), 24)


def describe(window: str | Window) -> str:
    """A short text for notes: the preset's name or the numbers."""
    if isinstance(window, str):
        return window
    named = [n for n, wl in PRESETS.items() if wl == (window.width, window.level)]
    numbers = f"W {window.width:g}, L {window.level:g}"
    return f"{named[0]} ({numbers})" if named else numbers
