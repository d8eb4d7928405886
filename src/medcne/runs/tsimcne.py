"""t-SimCNE runs: train and write a run folder, resume one, write a fitted estimator as a run.

The library side of ``medcne fit``: :func:`fit_run` reads the data, checks the
parameters, writes ``params.json`` and trains with checkpoints and
``history.csv`` kept up to date; :func:`resume_run` continues an interrupted
run in place; :func:`write_tsimcne_run` writes the model, embedding, metrics
and map of a fitted :class:`~medcne.TSimCNE`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MedcneError
from ..io import write_json
from ..train import distributed
from .evaluate import evaluate_and_write
from .folder import CHECKPOINT, MAP, MODEL, PARAMS, RUN_FILES, Run, read_json, read_run, write_embedding, write_history


def prepare_out(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new run: refuse a non-empty folder unless ``overwrite``;
    with it, remove the run files of the old run and nothing else."""
    if out.exists() and not out.is_dir():
        raise MedcneError(f"--out {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise MedcneError(
                f"--out {out} exists and is not empty; pass --overwrite to replace its run files, "
                f"--resume {out} to continue it, or choose another folder"
            )
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def tsimcne_params(est, data_record: dict, **extra) -> dict:
    """``params.json`` of a t-SimCNE run: method, data, the estimator's record."""
    record = est.record()
    return {
        "method": "tsimcne",
        "data": data_record,
        "estimator": {k: v for k, v in record["params"].items() if k != "checkpoint"},
        "resolved": record["resolved"],
        **extra,
    }


def fit_run(data_path, out, params: dict, *, data_spec: dict | None = None, overwrite: bool = False,
            quick: bool = False, verbose: bool = True) -> Run | None:
    """Train t-SimCNE on a dataset and write the run folder ``out``.

    Parameters
    ----------
    data_path : str or Path
        The dataset, as for :func:`medcne.datasets.load_dataset`.
    out : str or Path
        The run folder; an existing non-empty one needs ``overwrite``.
    params : dict
        :class:`~medcne.TSimCNE` parameters.
    data_spec : dict, optional
        Keyword arguments of ``load_dataset`` (size, channels, subset, seed...).
    overwrite : bool
        Replace the run files of an existing run in ``out``.
    quick : bool
        Recorded in params.json (the settings came from ``--quick``).
    verbose : bool
        Progress bar, expected duration and what is written.

    Returns
    -------
    Run or None
        The finished run, read back (None on the other ranks of a run of several
        processes: only rank 0 writes and reads the folder).
    """
    from ..datasets import load_dataset
    from ..estimator import TSimCNE

    out = Path(out)
    spec = {k: v for k, v in (data_spec or {}).items() if v is not None}
    data = load_dataset(data_path, **spec)
    est = TSimCNE(**params).validate(data)  # bad parameters fail here, before anything is written
    data_record = {**spec, "path": str(Path(data_path).resolve())}

    def start() -> None:  # rank 0 writes; with several processes all stop if it fails
        prepare_out(out, overwrite)
        write_json(out / PARAMS, tsimcne_params(est, data_record, quick=bool(quick)))

    distributed.on_main(start)
    return _train(out, est, data, data_record, resume_from=None, verbose=verbose)


def resume_run(out, verbose: bool = True) -> Run | None:
    """Continue the interrupted run in folder ``out`` from its last checkpoint (None on ranks
    other than 0 of several processes, which all read the folder: on several machines it
    must be on a shared file system)."""
    from ..datasets import load_dataset
    from ..estimator import TSimCNE

    out = Path(out)
    saved = read_json(out / PARAMS)
    if not saved or not (out / CHECKPOINT).exists():
        raise MedcneError(f"--resume {out}: not an interrupted run (needs {PARAMS} and {CHECKPOINT})")
    data_record = dict(saved["data"])
    spec = {k: v for k, v in data_record.items() if k != "path"}
    data = load_dataset(data_record["path"], **spec)
    est = TSimCNE(**saved["estimator"])
    return _train(out, est, data, data_record, resume_from=out / CHECKPOINT, verbose=verbose,
                  quick=saved.get("quick", False))


def _train(out: Path, est, data, data_record: dict, resume_from, verbose: bool, quick: bool = False) -> Run | None:
    est.set_params(checkpoint=str(out / CHECKPOINT), verbose=verbose)
    main = distributed.world().is_main  # with several processes (torchrun) only rank 0 writes
    if verbose and main:
        print(f"training on {len(data)} images {data.image_shape} -> {out}", flush=True)
    try:
        est.fit(data, resume_from=resume_from,
                callback=lambda end: write_history(out, end.position.history) if main else None)
    except KeyboardInterrupt:
        if verbose:
            print(f"interrupted; continue with `medcne fit --resume {out}`")
        raise
    except RuntimeError as exc:  # another process of the run died: one line, the checkpoint kept
        distributed.raise_if_lost(exc, out / CHECKPOINT)
        raise
    if not main:
        return None
    return write_tsimcne_run(out, est, data, data_record, quick=quick)


def write_tsimcne_run(out, est, data, data_record: dict, **extra) -> Run:
    """Write a fitted estimator as a run: params, history, model, embedding, metrics, map.

    ``data`` are the training images (their ids and labels go with the map);
    ``data_record`` is what params.json says of them (``load_dataset``
    arguments and ``path``).
    """
    from ..plot import save_map

    out = Path(out)
    write_json(out / PARAMS, tsimcne_params(est, data_record, **extra))
    write_history(out, est.history_)
    est.save(out / MODEL)
    Z = est.embedding_
    write_embedding(out, Z, data.ids, data.labels, data.class_names)
    run = read_run(out)
    seconds = getattr(est, "fit_seconds_", None)
    evaluate_and_write(run, extra={} if seconds is None else {"seconds": round(seconds, 1)}, data=data)
    save_map(out / MAP, Z[:, :2], data.labels, data.class_names,
             title=f"t-SimCNE ({est.preset}) of {Path(str(data.source)).name}")
    return run
