"""Sweeps: which augmentations suit my data? The paper's experiments as one resumable command.

A sweep is every dataset x method (t-SimCNE presets and ablations, baselines)
x seed of a configuration (:mod:`medcne.sweep.config`); each cell is an
ordinary run folder ``DIR/DATASET/METHOD/seedS``. Finished cells are skipped,
so an interrupted sweep resumes; a failed cell is recorded and the others go
on; the report (:mod:`medcne.sweep.report`) reads the cells' metrics.json.

>>> from medcne.sweep import load_config, run_sweep
>>> result = run_sweep(load_config("quick"), "sweep-out")   # needs datasets; see `medcne sweep --help`
"""

from __future__ import annotations

from pathlib import Path

from .config import SweepConfig, load_config, parse_config, shipped, shorthand, with_data
from .grid import Cell, cells
from .report import write_report
from .run import FAILED, NO_DATA, SweepState, is_finished, prepare_sweep, run_cells, sweep_lock

__all__ = [
    "Cell", "SweepConfig", "SweepState", "cells", "is_finished", "load_config", "parse_config", "prepare_sweep",
    "run_cells", "run_sweep", "shipped", "shorthand", "with_data", "write_report",
]


def run_sweep(config: SweepConfig, out, overrides: dict | None = None, verbose: bool = True, echo=print,
              plan: list[Cell] | None = None) -> dict:
    """Run every unfinished cell of ``config`` into ``out``, then write the report.

    Parameters
    ----------
    config : SweepConfig
    out : str or Path
        The sweep folder (new, empty, or one this sweep wrote before).
    overrides : dict, optional
        t-SimCNE settings that win over the file (``quick``, ``epochs``, ``width``...).
    verbose : bool
        Training progress of each cell.
    echo : callable
        Where the sweep's own lines go (progress, failures, missing data).
    plan : list of Cell, optional
        ``cells(config, overrides)`` when the caller has made them already (each
        t-SimCNE method is checked on dummy images there); made here otherwise.

    Returns
    -------
    dict
        ``state`` (:class:`SweepState`, the status of every cell), ``report``
        (paths and answer lines), ``failed`` and ``no_data`` (counts).
    """
    plan = cells(config, overrides) if plan is None else plan
    with sweep_lock(out):  # one sweep writes a folder at a time, from its first look to its report
        state = prepare_sweep(config, Path(out), plan)
        run_cells(state, verbose=verbose, echo=echo)
        report = write_report(out)
    return {"state": state, "report": report, "failed": state.count(FAILED), "no_data": state.count(NO_DATA)}
