"""The one rule for seeds: an integer from 0 to 2**32 - 1, for every seed medcne takes.

The estimator's ``random_state``, the readers' ``seed`` (which images a
subset draws), the baselines' ``seed`` and a sweep's ``seeds`` all hold to it,
so a seed one of them takes is never refused by another. The bound is the
largest seed numpy's ``RandomState`` takes, which openTSNE and UMAP seed with.
It lives with the readers, the lowest layer that all the others use.
"""

from __future__ import annotations

import numbers

from ..errors import MedcneError

SEED_MAX = 2**32 - 1
SEED_MUST = f"an integer from 0 to {SEED_MAX}"


def seed_ok(value) -> bool:
    """Whether ``value`` is a seed: an integer from 0 to :data:`SEED_MAX`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= SEED_MAX


def check_seed(seed, name: str = "seed") -> None:
    """Refuse a seed outside the rule, naming parameter ``name`` (numpy's own error would name none)."""
    if not seed_ok(seed):
        raise MedcneError(f"`{name}` must be {SEED_MUST}; got {seed!r}")
