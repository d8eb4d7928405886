"""Running a sweep: every cell an ordinary run folder; finished cells skipped, failures recorded.

Cells run in this process through the library (:func:`medcne.runs.fit_run`,
:func:`~medcne.runs.resume_run`, :func:`~medcne.runs.make_baseline`): a
Python exception fails one cell and the sweep goes on; a crash of the process
(killed, out of memory) loses only the cell in progress, since a rerun skips
every finished folder and resumes an interrupted t-SimCNE cell from its
checkpoint. The sweep folder holds ``sweep.json`` (the spec of every cell, to
refuse mixing results made differently), ``cells.csv`` (the status of every
cell it knows, also those of earlier, wider grids; rewritten after each) and
``failures.log`` (tracebacks). One sweep writes a folder at a time
(:func:`sweep_lock`); reading it (the report, ``--list``) needs no lock, as
every file is written atomically (``--report`` rewrites ``cells.csv`` only
when no sweep holds the folder: :func:`rewrite_status`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets.load import RECORDED_READING
from ..errors import MedcneError
from ..io import csv_cell, csv_value, write_json, write_text
from ..params import say
from ..runs import fit_run, make_baseline, read_run, resume_run
from ..runs.folder import CHECKPOINT, EMBEDDING, METRICS, PARAMS, read_json
from ..runs.outputs import lock
from .config import TSIMCNE, SweepConfig
from .grid import Cell

SWEEP = "sweep.json"
STATUS = "cells.csv"
FAILURES = "failures.log"
STATUS_COLUMNS = ("cell", "dataset", "method", "seed", "status", "seconds", "knn_accuracy", "silhouette", "message")
# finished: there before this run; done: made now; other settings: finished, but not as now asked (refused).
FINISHED, DONE, FAILED, NO_DATA, PENDING = "finished", "done", "failed", "no data", "pending"
OTHER = "other settings"


@contextmanager
def sweep_lock(out) -> Iterator[None]:
    """Hold the lock of the sweep folder ``out`` (:func:`medcne.runs.outputs.lock`, the file
    ``.NAME.medcne-lock`` beside it): a second sweep into it stops at once, naming this process."""
    with lock(Path(os.path.abspath(out))):
        yield


def is_finished(folder) -> bool:
    """A cell is finished when its folder reads back as a finished run with its metrics."""
    folder = Path(folder)
    if not (folder / EMBEDDING).exists() or not (folder / METRICS).exists():
        return False
    try:
        read_run(folder)
    except (MedcneError, OSError, ValueError):
        return False
    return True


def cell_status(cell: Cell, out: Path, specs: dict) -> tuple[str, str]:
    """What a sweep into ``out`` does with ``cell``, and why: (status, message).

    FINISHED (skipped); OTHER (finished, but its spec in ``specs``, those
    ``sweep.json`` stored, differs from the one now asked for: refused; the
    message names the first difference); NO_DATA; PENDING (to run).
    """
    if is_finished(cell.folder(out)):
        old = specs.get(cell.name)
        if old is not None and old != cell.spec():
            return OTHER, _first_difference(old, cell.spec())
        return FINISHED, ""
    if cell.data_path is None:
        return NO_DATA, cell.missing or ""
    return PENDING, ""


def read_sweep(out) -> dict | None:
    """The sweep folder's ``sweep.json``, or None when there is none."""
    path = Path(out) / SWEEP
    return read_json(path) if path.exists() else None


@dataclass
class SweepState:
    """What happened to each cell, for ``cells.csv`` and the summary.

    ``cells`` are the cells of this run; ``order`` names every cell the sweep
    folder knows (``sweep.json``), whose rows ``cells.csv`` lists.
    """

    out: Path
    cells: list[Cell]
    rows: dict[str, dict] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def set(self, cell: Cell | str, status: str, seconds: float | None = None, metrics: dict | None = None,
            message: str = "") -> None:
        name = cell if isinstance(cell, str) else cell.name
        dataset, method, seed = name.rsplit("/", 2)
        metrics = metrics or {}
        self.rows[name] = {
            "cell": name, "dataset": dataset, "method": method, "seed": seed.removeprefix("seed"), "status": status,
            "seconds": "" if seconds is None else f"{seconds:.1f}",
            "knn_accuracy": _fmt(metrics.get("knn_accuracy")), "silhouette": _fmt(metrics.get("silhouette")),
            "message": message,
        }

    def set_finished(self, name: str) -> None:
        metrics = read_json(self.out / name / METRICS)  # its seconds: the run's own, as the report's
        self.set(name, FINISHED, metrics.get("seconds"), metrics=metrics)

    def count(self, *statuses: str) -> int:
        """How many cells of this run have one of ``statuses``."""
        return sum(1 for c in self.cells if self.rows[c.name]["status"] in statuses)

    def write(self) -> Path:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=STATUS_COLUMNS)
        writer.writeheader()
        # Messages and names may start like a formula: escaped for spreadsheets (medcne.io.csv_cell).
        names = dict.fromkeys([*self.order, *(c.name for c in self.cells)])
        writer.writerows({k: csv_cell(v) for k, v in self.rows[n].items()} for n in names if n in self.rows)
        return write_text(self.out / STATUS, buf.getvalue())


def prepare_sweep(config: SweepConfig, out, cells: list[Cell]) -> SweepState:
    """Check ``out`` and record the cells' specs in ``sweep.json``; nothing is trained.

    Refuses a non-empty folder that is not a sweep folder, and a finished cell
    whose spec differs from the one now asked for (its result would be mixed
    with others made differently).
    """
    out = Path(out)
    with sweep_lock(out):
        if out.exists() and not out.is_dir():
            raise MedcneError(f"`out` {out} is a file; give a folder")
        stored = read_sweep(out)
        if stored is None and out.is_dir() and any(out.iterdir()):
            raise MedcneError(f"`out` {out} exists, is not empty and holds no {SWEEP}; choose a new or empty folder")
        stored = stored or {}
        specs = dict(stored.get("cells", {}))
        verdicts = {cell.name: cell_status(cell, out, specs) for cell in cells}
        for cell in cells:
            status, message = verdicts[cell.name]
            if status == OTHER:
                raise MedcneError(f"{cell.folder(out)} was made with other settings ({message}); rename the method "
                                  "in the config, or give another `out`")
            specs[cell.name] = cell.spec()
        order = list(dict.fromkeys([*stored.get("order", []), *(c.name for c in cells)]))
        earlier = _read_status(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / SWEEP, {
            "config": config.source, "description": config.description, "reference": config.reference,
            "datasets": list(dict.fromkeys([*stored.get("datasets", []), *config.datasets])),
            "methods": list(dict.fromkeys([*stored.get("methods", []), *config.methods])),
            "order": order, "cells": specs,
        })
        state = SweepState(out, cells, order=order)
        _fill(state, verdicts, earlier)
        state.write()
    return state


def rewrite_status(out) -> Path | None:
    """Rewrite ``cells.csv`` from the cell folders as they are now, as the report reads them (atomically).

    A finished cell with its metrics.json; any other as ``cells.csv`` last
    said (failed, no data), else pending: a cell whose metrics.json was
    removed is no longer listed as finished. None, and nothing written, while
    a sweep runs into ``out``: it rewrites the file after each cell.
    """
    out = Path(out)
    with ExitStack() as held:
        try:
            held.enter_context(sweep_lock(out))
        except (MedcneError, OSError):  # a sweep holds it (or its parent is read-only): the file stays
            return None
        state = SweepState(out, [], order=list((read_sweep(out) or {}).get("order", [])))
        _fill(state, {}, _read_status(out))
        return state.write()


def _fill(state: SweepState, verdicts: dict, earlier: dict) -> None:
    """The row of every cell the folder knows: its verdict in ``verdicts`` (the cells of this run), else
    what its folder and ``earlier`` (the rows of cells.csv) say."""
    for name in state.order:
        status, message = verdicts.get(name) or _outside_status(state.out, name, earlier.get(name))
        if status == FINISHED:
            state.set_finished(name)
        else:
            state.set(name, status, message=message)


def _outside_status(out: Path, name: str, earlier: dict | None) -> tuple[str, str]:
    """The status of a cell of an earlier grid that this run does not ask for: finished, else as
    ``cells.csv`` last said (failed, no data...), else pending."""
    if is_finished(out / name):
        return FINISHED, ""
    if earlier and earlier.get("status") not in (None, FINISHED, DONE):
        return earlier["status"], earlier.get("message") or ""
    return PENDING, ""


def _read_status(out: Path) -> dict[str, dict]:
    """The rows of ``cells.csv`` by cell (none when there is no readable one)."""
    try:
        with open(out / STATUS, encoding="utf-8", newline="") as fh:
            return {csv_value(r["cell"]): {k: csv_value(v or "") for k, v in r.items() if k}
                    for r in csv.DictReader(fh) if r.get("cell")}
    except (OSError, ValueError, csv.Error):
        return {}


def run_cells(state: SweepState, verbose: bool = True, echo=say) -> SweepState:
    """Run every pending cell, recording each result; a failed cell does not stop the others."""
    with sweep_lock(state.out):
        return _run_cells(state, verbose, echo)


def _run_cells(state: SweepState, verbose: bool, echo) -> SweepState:
    todo = [c for c in state.cells if state.rows[c.name]["status"] == PENDING]
    for line in dict.fromkeys(c.missing for c in state.cells if state.rows[c.name]["status"] == NO_DATA):
        echo(line)
    bar = CellProgress(todo, echo, finished=state.count(FINISHED))
    for cell in todo:
        bar.start(cell)
        start = time.perf_counter()
        try:
            run = run_cell(cell, cell.folder(state.out), verbose)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the cell waits for the next run of the sweep
            state.set(cell, PENDING, message="interrupted")
            state.write()
            _say_interrupted(cell, echo)
            raise
        except Exception as exc:  # one cell's failure must not stop the sweep
            seconds = time.perf_counter() - start
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            state.set(cell, FAILED, seconds, message=message)
            _log_failure(state.out, cell, traceback.format_exc())
            echo(f"{cell.name} failed: {message}")
        else:
            seconds = time.perf_counter() - start
            state.set(cell, DONE, seconds, metrics=run.metrics)
            echo(f"{cell.name}: {_summary(run.metrics)} in {_duration(seconds)}")
        bar.finish(cell, time.perf_counter() - start)
        state.write()
    return state


def _say_interrupted(cell: Cell, echo) -> None:
    """How to go on: the same sweep again (it skips finished cells and resumes this one from its
    checkpoint), not `medcne fit --resume`, which would leave the sweep's other cells undone."""
    try:
        echo(f"{cell.name} interrupted; rerun the same `medcne sweep` command to go on (finished cells are "
             "skipped, this one continues from its checkpoint when it has one)")
    except OSError:
        pass  # the terminal is gone (SIGHUP): there is no one to tell


def run_cell(cell: Cell, folder: Path, verbose: bool = True):
    """Make one cell's run folder (resuming an interrupted t-SimCNE cell from its checkpoint)."""
    if cell.kind == TSIMCNE:
        saved = read_json(folder / PARAMS)
        # The same data and estimator parameters: the checkpoint continues this very cell.
        # A run records how it read its data (a store's parts, photos turned), which the cell's spec does not name.
        read = {k: v for k, v in (saved.get("data") or {}).items() if k not in RECORDED_READING}
        if (folder / CHECKPOINT).exists() and json_equal(read, cell.spec()["data"]) \
                and _same_estimator(saved.get("estimator", {}), cell.options):
            try:
                return resume_run(folder, verbose=verbose, resume_hint=False)
            except MedcneError:
                pass  # an unusable checkpoint: train the cell again from the start
        # The folder is this sweep's own (an unfinished cell): its run files may be replaced. Interrupted,
        # the sweep says how to go on (_say_interrupted), not fit.
        return fit_run(cell.data_path, folder, cell.options, data_spec=cell.load, overwrite=True, verbose=verbose,
                       resume_hint=False)
    options = dict(cell.options)
    if "simclr" in options:
        options["simclr"] = {**options["simclr"], "verbose": verbose}
    # A baseline cell stopped between its embedding and its metrics is made again (force).
    return make_baseline(cell.data_path, cell.kind, folder, cell.load, force=(folder / EMBEDDING).exists(),
                         **options)


class CellProgress:
    """A text progress bar over cells with an ETA from the cells done (one line per cell, log friendly):
    ``[#############.......] cell 5/6 (4 finished before), 0s elapsed, ETA unknown | NAME``."""

    def __init__(self, cells: list[Cell], echo=say, width: int = 20, finished: int = 0):
        # ``finished``: the sweep's cells done before this run; counted, so that a resumed sweep says
        # where the whole sweep stands ("cell 5/6"), not where this run does.
        self.finished, self.total, self.echo, self.width = finished, finished + len(cells), echo, width
        self.remaining = [(c.dataset, c.method) for c in cells]
        self.done: list[tuple[tuple[str, str], float]] = []
        self.started = time.perf_counter()

    def eta(self) -> float | None:
        """Seconds left: each remaining cell takes the mean time of the done cells of its dataset and
        method, else of its method, else of all (t-SNE cells take seconds, trained ones minutes)."""
        if not self.done:
            return None

        def mean(times):
            return sum(times) / len(times) if times else None

        total = 0.0
        for dataset, method in self.remaining:
            same = mean([s for key, s in self.done if key == (dataset, method)])
            method_only = mean([s for key, s in self.done if key[1] == method])
            total += next(v for v in (same, method_only, mean([s for _, s in self.done])) if v is not None)
        return total

    def start(self, cell: Cell) -> None:
        n = self.finished + len(self.done)
        filled = int(self.width * n / max(self.total, 1))
        eta = self.eta()
        before = f" ({self.finished} finished before)" if self.finished else ""
        self.echo(f"[{'#' * filled}{'.' * (self.width - filled)}] cell {n + 1}/{self.total}{before}, "
                  f"{_duration(time.perf_counter() - self.started)} elapsed, "
                  f"ETA {'unknown' if eta is None else _duration(eta)} | {cell.name}")

    def finish(self, cell: Cell, seconds: float) -> None:
        self.done.append(((cell.dataset, cell.method), seconds))
        self.remaining.remove((cell.dataset, cell.method))


def _same_estimator(saved: dict, options: dict) -> bool:
    keys = [k for k in options if k in saved]
    return json_equal({k: saved[k] for k in keys}, {k: options[k] for k in keys})


def json_equal(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=list) == json.dumps(b, sort_keys=True, default=list)


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _first_difference(a, b, f"{prefix}{key}.")
            return f"{prefix}{key}: {a!r} then, {b!r} now"
    return "?"


def _log_failure(out: Path, cell: Cell, text: str) -> None:
    path = out / FAILURES
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    write_text(path, f"{old}== {time.strftime('%Y-%m-%d %H:%M:%S')} {cell.name}\n{text}\n")


def _summary(metrics: dict) -> str:
    if "knn_accuracy" not in metrics:
        return "map written (no labels)"
    return f"kNN {metrics['knn_accuracy']:.1f}%, silhouette {metrics['silhouette']:.3f}"


def _fmt(value) -> str:
    return "" if value is None else f"{float(value):.6g}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
