"""Exceptions for bad user input, and the two checks that every layer makes.

Every error a user can cause derives from :class:`MedcneError` (a ``ValueError``),
so the CLI can print its one-line message and exit with status 2. The checks:
an optional package is installed (:func:`require`), and a seed holds to the one
rule for seeds (:func:`check_seed`).
"""

from __future__ import annotations

import numbers

# The exit status of a command stopped by Ctrl-C, as the shell gives it (128 + SIGINT).
INTERRUPTED = 130


class MedcneError(ValueError):
    """Bad input or parameters; the message names the file/parameter and the fix."""


class DataError(MedcneError):
    """A dataset could not be read as given."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The path given as a dataset does not exist."""


class UnknownFormatError(DataError):
    """The path exists but no reader recognises it."""


class BadImageError(DataError):
    """One or more image files could not be decoded."""

    def __init__(self, message: str, bad_files: list[str]):
        super().__init__(message)
        self.bad_files = bad_files


class MixedSizeError(DataError):
    """Images of different sizes without a resize option."""


class LabelMismatchError(DataError):
    """Labels and images disagree in number."""


class EmptyDatasetError(DataError):
    """The dataset has no images."""


class PixelRangeError(DataError):
    """Float pixels outside [0, 1] or not finite."""


class MissingColumnError(DataError):
    """A CSV lacks a column that was named."""


class DivergedError(MedcneError):
    """Training produced a non-finite loss (NaN or inf): the learning rate is too high for the data."""


class FetchError(MedcneError):
    """A download failed or gave a file with the wrong checksum."""


class MissingExtraError(MedcneError, ImportError):
    """An optional dependency is not installed."""


class MedcneWarning(UserWarning):
    """Something the user asked for that runs, but not as they may think (shown through ``warnings``)."""


def __getattr__(name: str):
    """``NotFittedError``, made on first use: it derives from scikit-learn's, which ``import medcne.errors``
    does not load (the command line starts without scikit-learn)."""
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError as SklearnNotFitted

        class NotFittedError(MedcneError, SklearnNotFitted):
            """An estimator used before it was fitted: a :class:`MedcneError` and scikit-learn's
            ``NotFittedError`` (what ``check_is_fitted`` raises)."""

        NotFittedError.__qualname__ = name  # found by pickle as medcne.errors.NotFittedError
        globals()[name] = NotFittedError
        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def printable(text: str, limit: int = 120) -> str:
    """``text`` for a one-line message: control characters escaped (a file name may hold a line
    break), cut in the middle to at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= limit else f"{text[: limit // 2 - 2]}...{text[-(limit // 2 - 1):]}"


def require(module: str, extra: str):
    """Import an optional dependency or fail naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"this feature needs the package '{module}'; install it with "
            f"`pip install 'medcne[{extra}]'`"
        ) from exc


class ConfigError(MedcneError):
    """A bad value in a configuration file: its message names the file's keys, which the
    command line keeps as they are (it does not turn them into its options)."""

    names_are_keys = True


# The one rule for seeds, for every seed medcne takes: the estimator's `random_state`, the readers'
# `seed` (which images a subset draws), the baselines' and the metrics' `seed`, a sweep's `seeds`.
# The bound is the largest seed numpy's RandomState takes (openTSNE, UMAP and scikit-learn's splits
# seed with it), so a seed one of them takes is never refused by another.
SEED_MAX = 2**32 - 1
SEED_MUST = f"an integer from 0 to {SEED_MAX}"


def seed_ok(value) -> bool:
    """Whether ``value`` is a seed: an integer from 0 to :data:`SEED_MAX`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= SEED_MAX


def check_seed(seed, name: str = "seed") -> None:
    """Refuse a seed outside the rule, naming parameter ``name`` (numpy's own error would name none)."""
    if not seed_ok(seed):
        raise MedcneError(f"`{name}` must be {SEED_MUST}; got {seed!r}")
