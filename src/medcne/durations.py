"""Durations as users write them (``15m``, ``90s``, ``1h30m``) and as medcne prints them.

A leaf: the command line, the estimator's ``budget`` and the messages of a
training session all read and write durations through these two functions.
"""

from __future__ import annotations

import math
import re

from .errors import MedcneError

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text, name: str = "budget") -> float:
    """``'15m'``, ``'90s'``, ``'1.5h'``, ``'1h30m'`` or a number of seconds -> seconds (> 0).

    ``name`` is the parameter the value belongs to, for the message.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d*)?)\s*(h|min|m|sec|s)?", str(text).strip().lower())
        joined = "".join(n + (u or "") for n, u in parts)
        if not parts or joined != re.sub(r"\s+", "", str(text).strip().lower()):
            raise MedcneError(f"`{name}` must be a duration such as 15m, 90s, 1.5h or 1h30m; got {text!r}")
        seconds = sum(float(n) * _UNITS[u or "s"] for n, u in parts)
    if not (math.isfinite(seconds) and seconds > 0):
        raise MedcneError(f"`{name}` must be a positive duration such as 15m; got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration for people: '42 s', '12 min', '3.5 h', '2.1 days' (never negative)."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
