"""One table of the estimator's parameter rules, used by the Python API and the command line.

Each :class:`Rule` says what a parameter of :class:`medcne.TSimCNE` must be and
which command-line option sets it. The library checks values against the table
and names the Python parameter in backticks (``\\`batch_size\\` must be ...``);
the command line checks the same table before it reads any data, and
:func:`for_cli` turns the backticked names of any message into the options a
command-line user has (``--batch-size must be ...``). No rule is written twice.

Imports nothing that loads torch, so that the command line can check its
options and print help without it.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .defaults import (
    BACKBONES,
    DEVICES,
    HEAD_INITS,
    LOSSES,
    PAPER_EPOCHS,
    PAPER_WARMUP,
    PRECISIONS,
    PRESETS,
)
from .durations import parse_duration
from .errors import SEED_MUST, MedcneError, MedcneWarning, seed_ok


@dataclass(frozen=True)
class Rule:
    """What parameter ``name`` must be: ``ok(value)`` is True for a good value; ``must`` says
    what it must be, for the message; ``flag`` is its command-line option (None: not on the
    command line)."""

    name: str
    ok: Callable[[object], bool]
    must: str
    flag: str | None = None


def _int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _choice(options) -> tuple[Callable[[object], bool], str]:
    return (lambda v: isinstance(v, str) and v in options), "one of " + ", ".join(map(repr, options))


def _one_number(value) -> bool:
    """One non-negative whole number (``20``, ``'20'``, ``[20]``): the epochs of an annealed run."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and value.strip().isdigit():
        return True
    return _int(value) and value >= 0


def _epochs_ok(name: str) -> Callable[[object], bool]:
    def ok(value) -> bool:
        if _one_number(value):
            return True
        try:
            parse_epochs(value, name=name)
        except MedcneError:
            return False
        return True

    return ok


def _duration_ok(value) -> bool:
    try:
        parse_duration(value)
    except MedcneError:
        return False
    return True


def _random_state_ok(value) -> bool:
    return value is None or seed_ok(value) or isinstance(value, np.random.Generator)


_BOOL = (lambda v: isinstance(v, (bool, np.bool_))), "True or False"
_AUTO_BOOL = (lambda v: v == "auto" or isinstance(v, (bool, np.bool_))), "'auto', True or False"

RULES: Mapping[str, Rule] = {r.name: r for r in (
    Rule("dim", lambda v: _int(v) and v >= 2, "an integer >= 2 (2 for a map, 3 for a 3D map)", "--dim"),
    Rule("epochs", _epochs_ok("epochs"), "3 non-negative integers, one per stage, e.g. 1000,50,450 (one for the anneal schedule)", "--epochs"),
    Rule("batch_size", lambda v: _int(v) and v >= 2, "an integer >= 2 (paper: 1024)", "--batch-size"),
    Rule("lr", lambda v: v == "auto" or (_number(v) and v > 0), "a positive number or 'auto'", "--lr"),
    Rule("stage3_lr_factor", lambda v: _number(v) and v > 0, "a positive number (stage-3 lr / lr, paper: 0.001)",
         "--stage3-lr-factor"),
    Rule("warmup", _epochs_ok("warmup"), "3 non-negative integers, one per stage, e.g. 10,0,10", "--warmup"),
    Rule("head_init", *_choice(HEAD_INITS), "--head-init"),
    Rule("loss", *_choice(LOSSES)),
    Rule("preset", *_choice(PRESETS), "--preset"),
    Rule("crop", *_BOOL),
    Rule("jitter", *_BOOL),
    Rule("grayscale", *_BOOL),
    Rule("backbone", *_choice(BACKBONES), "--backbone"),
    Rule("width", lambda v: _int(v) and v >= 1, "a positive integer (64 as in the paper; 16 or 32 on a CPU)",
         "--width"),
    Rule("small_stem", *_AUTO_BOOL),
    Rule("device", *_choice(DEVICES), "--device"),
    Rule("precision", *_choice(PRECISIONS), "--precision"),
    Rule("budget", lambda v: v is None or _duration_ok(v), "a duration such as 15m, 90s, 1.5h or 1h30m",
         "--budget"),
    Rule("compile", *_BOOL, "--compile"),
    Rule("knn_every", lambda v: _int(v) and v >= 0, "an integer >= 0 (0: off)", "--knn-every"),
    Rule("checkpoint_minutes", lambda v: _number(v) and v >= 0, "a number >= 0 (0: every epoch)",
         "--checkpoint-minutes"),
    Rule("random_state", _random_state_ok, f"None, {SEED_MUST} or a numpy Generator", "--seed"),
    Rule("verbose", *_BOOL),
    Rule("sync_bn", *_AUTO_BOOL, "--no-sync-bn"),
    Rule("stream", *_AUTO_BOOL, "--stream"),
    Rule("checkpoint", lambda v: v is None or isinstance(v, (str, os.PathLike)), "None or a file path"),
    Rule("schedule", lambda v: isinstance(v, str) and v.split(":")[0] in ("stages", "anneal"),
         "'stages', 'anneal' or 'anneal:key=value,...'", "--schedule"),
)}


def check(name: str, value) -> None:
    """Raise :class:`MedcneError` naming ``name`` when ``value`` breaks its rule."""
    rule = RULES[name]
    if not rule.ok(value):
        if name in ("epochs", "warmup"):
            parse_epochs(value, name=name)  # its own message says what is wrong in the list
        if name == "budget":
            parse_duration(value)
        raise MedcneError(f"`{name}` must be {rule.must}; got {value!r}")


def check_all(params: Mapping[str, object]) -> None:
    """Check every parameter of ``params`` that has a rule (the others are left alone)."""
    for name, value in params.items():
        if name in RULES:
            check(name, value)


def check_new_lr(lr, given: str | None = None) -> None:
    """The ``lr`` of a resume: a new peak rate, to continue a run that diverged from its last good
    checkpoint with a lower one (None: the run's own; 'auto' would be the run's own too, so it is refused).
    ``given``: the value as the user typed it, for the message (the command line's text)."""
    if lr is not None and not (_number(lr) and lr > 0):
        raise MedcneError(f"`lr` of a resume must be a positive number, the new peak rate; "
                          f"got {given if given is not None else repr(lr)}")


def check_split(batch_size: int, processes: int, capped_at: int | None = None) -> None:
    """The global batch must divide evenly among the processes of a run."""
    if processes > 1 and batch_size % processes:
        capped = f" (capped at the {capped_at} images)" if capped_at is not None else ""
        raise MedcneError(
            f"`batch_size` {batch_size}{capped} must divide evenly among the {processes} processes "
            f"(it is the global batch); use a multiple of {processes}, e.g. {batch_size - batch_size % processes}"
        )


def parse_epochs(epochs, n: int = 3, name: str = "epochs") -> tuple[int, ...]:
    """``'1000,50,450'`` or a sequence -> a tuple of ``n`` non-negative ints; ``name`` is the parameter in messages."""
    example = ",".join(map(str, (PAPER_EPOCHS if name == "epochs" else PAPER_WARMUP)[:n]))
    if isinstance(epochs, str):
        try:
            epochs = [int(e) for e in epochs.split(",")]
        except ValueError:
            raise MedcneError(
                f"`{name}` must be {n} integers separated by commas, e.g. {example}; got {epochs!r}"
            ) from None
    try:
        if any(isinstance(e, bool) or (isinstance(e, float) and not e.is_integer()) for e in epochs):
            raise ValueError  # 1.5 epochs would be cut to 1
        epochs = tuple(int(e) for e in epochs)
    except (TypeError, ValueError):
        raise MedcneError(f"`{name}` must be {n} non-negative integers, e.g. {example}; got {epochs!r}") from None
    if len(epochs) != n or any(e < 0 for e in epochs):
        raise MedcneError(
            f"`{name}` must be {n} non-negative integers (one per stage), e.g. "
            f"{example}; got {','.join(map(str, epochs))}"
        )
    return epochs


# The options of the readers (:func:`medcne.datasets.load_dataset`) and of commands' own
# parameters, for messages that name them.
OTHER_FLAGS: Mapping[str, str] = {
    "format": "--format", "split": "--split", "size": "--size", "channels": "--channels", "subset": "--subset",
    "seed": "--seed", "skip_bad": "--skip-bad", "path_column": "--path-column", "label_column": "--label-column",
    "allow_outside": "--allow-outside", "labels_map": "--labels-map", "merge_rare": "--merge-rare",
    "weights": "--weights", "root": "--root", "out": "--out", "n_queries": "--np-queries", "grid": "--grid",
    "timeout": "--timeout", "space": "--space", "overwrite": "--overwrite", "force": "--force",
    "tile_size": "--tile-size", "window": "--window", "label_csv": "--label-csv", "label_key": "--label-key",
    "mpp": "--mpp", "magnification": "--magnification", "min_tissue": "--min-tissue", "unlabelled": "--unlabelled",
    "labels": "--labels", "annotations": "--annotations", "workers": "--workers", "presets": "--presets",
    "baselines": "--baselines", "data": "--data", "data_dir": "--data-dir", "seeds": "--seeds",
    "hover_id": "--hover-id", "axes": "--axes", "nproc": "--nproc", "values": "--values", "method": "--method", "axis": "--axis", "k": "--k", "labels_csv": "--labels", "data_path": "--data", "keep_phi": "--keep-phi",
    "drop_background": "--drop-background", "n_splits": "--splits", "fill": "--fill", "thumb": "--thumb",
}


def flag(name: str) -> str | None:
    """The command-line option of parameter ``name`` (None when it has none)."""
    rule = RULES.get(name)
    return rule.flag if rule is not None else OTHER_FLAGS.get(name)


_NAMED = re.compile(r"`([a-z][a-z0-9_]*)`")


def named_in(message: str) -> set[str]:
    """The parameter names ``message`` gives in backticks."""
    return set(_NAMED.findall(message))


def for_cli(message: str) -> str:
    """``message`` with each backticked parameter name replaced by its command-line option."""
    return _NAMED.sub(lambda m: flag(m.group(1)) or m.group(0), message)


_CLI = {"on": False}


def speak_as_cli(on: bool = True) -> None:
    """Name parameters by their command-line options in what :func:`say` prints (set by the command line)."""
    _CLI["on"] = bool(on)


def on_cli() -> bool:
    """Whether the user is the command line (:func:`speak_as_cli`), not a Python caller."""
    return _CLI["on"]



def as_user(command: str, call: str) -> str:
    """What to run next, as this user runs it: the shell ``command`` on the command line (while
    :func:`speak_as_cli` marks a command running), the Python ``call`` from Python."""
    return command if on_cli() else call

def say(message: str) -> None:
    """Print a message of the library to the user, with parameters named as the user knows them."""
    print(for_cli(message) if _CLI["on"] else message, flush=True)


def warn(message: str) -> None:
    """Warn the user of something that runs, but not as they may think: on the command line a line
    ``warning: ...`` as :func:`say` prints it; from Python a :class:`~medcne.errors.MedcneWarning`
    (``warnings.warn``: shown whatever ``verbose`` is, and a caller may filter or catch it), told at
    the line of the caller's code that called medcne (``fit(X)``), not inside medcne."""
    if _CLI["on"]:
        say(f"warning: {message}")
        return
    import sys
    import warnings

    package, level, frame = os.path.dirname(os.path.abspath(__file__)), 1, sys._getframe(0)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, MedcneWarning, stacklevel=level)
