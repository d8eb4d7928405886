"""t-SimCNE runs: train and write a run folder, resume one, write a fitted estimator as a run.

The library side of ``medcne fit``: :func:`fit_run` reads the data, checks the
parameters, writes ``params.json`` and trains with checkpoints and
``history.csv`` kept up to date; :func:`resume_run` continues an interrupted
run; :func:`write_tsimcne_run` writes the model, embedding, metrics and map of
a fitted :class:`~medcne.TSimCNE`, and ``"finished": true`` last.

A run that replaces another is trained in the staging folder beside it and
moved in when finished (:mod:`.staging`). A run stopped before its first
checkpoint (Ctrl-C, SIGTERM, an error) leaves nothing behind; one stopped later
keeps its checkpoint, and ``medcne fit --resume OUT`` continues it (in the
staging folder when it was replacing a run).
"""

from __future__ import annotations

from pathlib import Path

from ..embedfile import write_embedding
from ..errors import DivergedError, MedcneError
from ..io import remove_stale_temps, write_json
from ..params import as_user, check_new_lr, say
from ..runfiles import FINGERPRINT, IMAGES_FINGERPRINT
from ..train import checkpoint as ckpt
from ..train import distributed
from ..train.progress import end_progress_bars
from ..train.stages import check_trains
from . import staging
from .evaluate import evaluate_and_write, label_problem
from .folder import (
    CHECKPOINT,
    FINISHED,
    MAP,
    MODEL,
    PARAMS,
    RUN_FILES,
    TSIMCNE_FILES,
    Run,
    is_finished,
    no_params_message,
    read_as_recorded,
    read_json,
    read_run,
    staging_path,
    staging_target,
    write_history,
)
from .outputs import dataset_inputs


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
            quick: bool = False, verbose: bool = True, resume_hint: bool = True) -> Run | None:
    """Train t-SimCNE on a dataset and write the run folder ``out``.

    Parameters
    ----------
    data_path : str or Path
        The dataset, as for :func:`medcne.datasets.load_dataset`.
    out : str or Path
        The run folder; an existing non-empty one needs ``overwrite``.
    params : dict
        :class:`~medcne.TSimCNE` parameters (at least one epoch in all).
    data_spec : dict, optional
        Keyword arguments of ``load_dataset`` (size, channels, subset, seed...).
    overwrite : bool
        Replace the run in ``out``: the new run is written beside it and
        moved in once finished; other files in ``out`` are left alone.
    quick : bool
        Recorded in params.json (the settings came from ``--quick``).
    verbose : bool
        Progress bar, expected duration, notes and what is written.
    resume_hint : bool
        When interrupted, say how to continue (`medcne fit --resume OUT`); a
        sweep says its own way (rerun the sweep) instead.

    Returns
    -------
    Run or None
        The finished run, read back (None on the other processes of a run of several:
        only rank 0 writes and reads the folder).
    """
    from ..datasets import as_recorded, load_dataset
    from ..estimator import TSimCNE

    out = Path(out)
    inputs = dataset_inputs(data_path)
    # The lock first: a second writer is told who is writing, before any check on what `out` holds.
    with staging.locked(out):
        # Refused before the data are read; with several processes rank 0 says why and all stop.
        distributed.on_main(lambda: staging.check(out, overwrite, option="overwrite", inputs=inputs))
        # A store's parts now: those appended later are never taken for this run's images.
        spec = as_recorded(data_path, {k: v for k, v in (data_spec or {}).items() if v is not None})
        with distributed.together():  # every process reads and checks the same: one says what is wrong
            data = load_dataset(data_path, **spec)
            est = TSimCNE(**params).validate(data)  # bad parameters fail here, before anything is written
            check_trains(est.stages_)
        _note_data(data, verbose, est)
        data_record = {**spec, "path": str(Path(data_path).resolve())}
        # What --resume checks the data against: a run continues only on the images it began with.
        record = {"quick": bool(quick), FINGERPRINT: data.fingerprint(),
                  IMAGES_FINGERPRINT: data.fingerprint(sampled=None, labels=False)}  # every image, up to 256 MB
        with staging.writing(out, overwrite, option="overwrite", inputs=inputs, keep=_resumable) as work:
            distributed.on_main(lambda: write_json(
                work / PARAMS, tsimcne_params(est, data_record, **record, **{FINISHED: False})))
            finished = _train(work, out, est, data, data_record, resume_from=None, verbose=verbose, record=record,
                              resume_hint=resume_hint)
        return read_run(out) if finished else None


def _note_data(data, verbose: bool, est=None) -> None:
    """Say before training (process 0 of several) what the reader noticed and handled (skipped files,
    dropped alpha...: what `info` says of these data), a batch larger than the data, and when the
    labels cannot score the map (it is trained and written without metrics)."""
    if not verbose or not distributed.world().is_main:
        return
    if est is not None and est.batch_size_ < est.batch_size:
        say(f"note: batch size {est.batch_size} is larger than the {len(data)} images; using {est.batch_size_}")
    for note in data.notes:
        say(f"note: {note}")
    labels = data.known_labels()  # the class `unlabelled` is no label
    if problem := label_problem(labels[labels >= 0]) if labels is not None else None:
        say(f"note: the map is trained, but kNN accuracy and silhouette will be skipped: {problem}")


def _resumable(work: Path) -> bool:
    return (work / CHECKPOINT).is_file()


def resume_run(out, verbose: bool = True, lr: float | None = None, data_path=None,
               resume_hint: bool = True) -> Run | None:
    """Continue the interrupted run ``out`` from its last checkpoint.

    ``out`` is the run folder (or its staging folder ``.OUT.medcne-new``): an
    interrupted replacement of ``OUT`` continues in its staging folder and is
    moved into ``OUT`` when finished; one that was stopped while being moved
    in is completed without training. ``lr``: continue with this peak learning
    rate instead of the run's (after a divergence; the schedule is otherwise
    the same, so the result is no longer that of an uninterrupted run); each
    change is listed under ``lr_changes`` in params.json. ``data_path``: where
    the run's dataset is now, when it moved. The data must be those the run
    began with (their fingerprint in params.json), else the run is refused.
    ``resume_hint``: as for :func:`fit_run`.
    """
    from ..estimator import TSimCNE

    check_new_lr(lr)
    out = Path(out)
    out = staging_target(out) or out
    with staging.locked(out):  # before anything is checked or moved (see fit_run)
        main = distributed.world().is_main
        # Only rank 0 moves files; every process learns whether there is anything left to train.
        if distributed.agree(main and staging.pending(out)):
            if verbose and main:
                print(f"completed the interrupted replacement of {out}")
            return read_run(out) if main else None
        # Every process checks the same folder and data: one says what is wrong.
        with distributed.together():
            staged = staging_path(out)
            work = staged if staged.is_dir() and not staged.is_symlink() else out
            if is_finished(work):
                raise MedcneError(f"{out}: the run is finished; nothing to resume")
            saved = read_json(work / PARAMS)
            if problem := _nothing_to_resume(out, work):
                raise MedcneError(problem)
            if not (work / PARAMS).is_file():  # not "no checkpoint.pt": it is there, the run's record is not
                raise MedcneError(no_params_message(out, work))
            if not isinstance(saved.get("data"), dict) or "path" not in saved["data"] or "estimator" not in saved:
                raise MedcneError(f"{work / PARAMS}: damaged (no data path or estimator); start the run again")
            if main:
                remove_stale_temps(work, RUN_FILES)
            data_record = {**saved["data"], **({} if data_path is None else {"path": str(Path(data_path).resolve())})}
            spec = {k: v for k, v in data_record.items() if k != "path"}
            data = read_as_recorded(data_record["path"], spec, out, "give the dataset the run began with ("
                                    + as_user(f"`medcne fit --resume {out} DATA`",
                                               f"`resume_run({str(out)!r}, data_path=DATA)`") + " where it moved)")
            fingerprint = data.fingerprint()
            images = data.fingerprint(sampled=None, labels=False) if IMAGES_FINGERPRINT in saved else None
            if saved.get(FINGERPRINT, fingerprint) != fingerprint or saved.get(IMAGES_FINGERPRINT) != images:
                raise MedcneError(
                    f"{out}: {data_record['path']} does not hold the images the run began with (their pixels, "
                    "ids or labels differ), and a run continues only on its own data; give the run's dataset, or "
                    "start a new run with " + as_user("`medcne fit DATA --out NEW`", "`fit_run(DATA, NEW, params)`"))
            changes = _lr_changes(saved, lr)
            if main and (data_path is not None or lr is not None):
                # Where the data are now, and the rate this resume trains with: one interrupted now continues so.
                write_json(work / PARAMS, {**saved, "data": data_record, **({"lr_changes": changes} if changes else {})})
            est = TSimCNE(**saved["estimator"])
        record = {"quick": saved.get("quick", False), FINGERPRINT: fingerprint, IMAGES_FINGERPRINT: images}
        if changes:
            record["lr_changes"] = changes
            est.set_params(lr=float(changes[-1]["lr"]))  # the last change: this one, or that of a resume before
        with staging.writing(out, resume=True, keep=_resumable) as work:
            finished = _train(work, out, est, data, data_record, resume_from=work / CHECKPOINT, verbose=verbose,
                              record=record, new_lr=bool(changes), resume_hint=resume_hint)
        return read_run(out) if finished else None


def _nothing_to_resume(out: Path, work: Path) -> str | None:
    """Why the run ``out`` (being written in ``work``) has no checkpoint to continue from, with what to
    do instead; None when it has one."""
    if (work / CHECKPOINT).exists():
        return None
    if work != out:
        return (f"{out}: its replacement in {work} stopped before its first checkpoint, so there is nothing "
                f"to resume ({out} still holds the previous run); start the replacement again with "
                + as_user(f"`medcne fit DATA --out {out} --overwrite`",
                           f"`fit_run(DATA, {str(out)!r}, params, overwrite=True)`"))
    return (f"{out}: nothing to resume (no {CHECKPOINT}: training stopped before its first checkpoint, "
            "or this is not a run of " + as_user(
                f"`medcne fit`); start it again with `medcne fit DATA --out {out}` "
                "(with `overwrite` when the folder is not empty)",
                f"`fit_run` or `medcne fit`); start it again with `fit_run(DATA, {str(out)!r}, params)` "
                "(with `overwrite=True` when the folder is not empty)"))


def _lr_changes(saved: dict, lr) -> list[dict]:
    """The changes of peak learning rate a run's params.json (``saved``) lists, and this resume's ``lr``
    (None: the run's own) after them, with the rate it replaces."""
    changes = list(saved.get("lr_changes", []))
    if lr is not None:
        was = changes[-1]["lr"] if changes else saved.get("resolved", {}).get("lr")
        changes.append({"lr": float(lr), "was": was})
    return changes


def _train(work: Path, out: Path, est, data, data_record: dict, resume_from, verbose: bool,
           record: dict, new_lr: bool = False, resume_hint: bool = True) -> bool:
    """Train (checkpoints in ``work``) and write the run into ``work``; :func:`staging.writing` moves it
    into ``out``. ``record``: what params.json says beside the estimator (quick, the data's fingerprint).

    With several processes only rank 0 writes (history, checkpoints, the run)
    and returns True; the others return False.
    """
    main = distributed.world().is_main
    est.set_params(checkpoint=str(work / CHECKPOINT), verbose=verbose)
    if verbose and main:
        print(f"training on {len(data)} images {data.image_shape} -> {out}", flush=True)
    history = (lambda end: write_history(work, end.position.history)) if main else None
    try:
        est.fit(data, resume_from=resume_from, callback=history, new_lr=new_lr)
        if not main:
            return False
        est.set_params(checkpoint=None)  # the model file should not name this run's checkpoint
        write_tsimcne_run(work, est, data, data_record, **record)
    except BaseException as exc:
        if main:
            _stopped(work, out, exc, verbose and resume_hint)
        if isinstance(exc, RuntimeError):  # another process of the run died: one line, the checkpoint kept
            distributed.raise_if_lost(exc, work / CHECKPOINT)
        raise
    return True


def _stopped(work: Path, out: Path, exc: BaseException, verbose: bool) -> None:
    """After training stopped: say how to continue a resumable run (:func:`staging.writing` keeps it;
    it removes one stopped before its first checkpoint).

    A diverged run keeps its last good checkpoint (one is never written with
    non-finite weights): it can continue from there with a lower learning rate.
    """
    end_progress_bars()
    resumable = _resumable(work)
    resume = staging.resume_command(out)
    if isinstance(exc, KeyboardInterrupt):
        if verbose and resumable:
            print(f"interrupted; continue with {resume}")
        elif verbose:
            kept = f"; {out} still holds the previous run" if work != out else ""
            print(f"interrupted before the first checkpoint, so there is nothing to resume{kept}; "
                  + as_user("run the same command again", "call `fit_run` again") + " to start over")
    elif isinstance(exc, DivergedError) and resumable:
        raise DivergedError(
            f"{exc}; {out} keeps its last good checkpoint: continue from it with a lower learning rate, "
            + as_user(f"`medcne fit --resume {out} --lr LOWER`", f"`resume_run({str(out)!r}, lr=LOWER)`")
            + ", or start again"
        ) from exc
    elif isinstance(exc, OSError) and resumable:
        raise MedcneError(
            f"{exc.filename or work}: {exc.strerror or exc}; the run is kept at its last checkpoint: fix this "
            f"(e.g. free disk space) and continue with {resume}"
        ) from exc


def write_tsimcne_run(out, est, data, data_record: dict, **extra) -> Run:
    """Write a fitted estimator as a run: params, history, model, embedding, metrics, map.

    ``data`` are the training images (their ids and labels go with the map);
    ``data_record`` is what params.json says of them (``load_dataset``
    arguments and ``path``). ``params.json`` is written first with
    ``"finished": false`` and again with ``true`` after the last file.
    """
    from ..plot import save_map

    out = Path(out)
    # What the run's readers (qc, view, plot, evaluate) check when they read its images again.
    extra = {k: v for k, v in extra.items() if k != FINISHED and v is not None}
    if IMAGES_FINGERPRINT not in extra:  # written from Python without fit_run's record
        extra[IMAGES_FINGERPRINT] = data.fingerprint(sampled=None, labels=False)
    write_json(out / PARAMS, tsimcne_params(est, data_record, **extra, **{FINISHED: False}))
    write_history(out, est.history_)
    ckpt.save_model(out / MODEL, est.model_, est.record(), est.history_)  # est.save refuses a run folder's files
    Z = est.embedding_
    write_embedding(out, Z, data.ids, data.labels, data.class_names, data.provenance)
    run = read_run(out, finished=False)
    seconds = getattr(est, "fit_seconds_", None)
    evaluate_and_write(run, extra={} if seconds is None else {"seconds": round(seconds, 1)}, data=data)
    # A 3-D map is drawn as three pairs of axes; a wider one by its first two axes.
    save_map(out / MAP, Z if Z.shape[1] == 3 else Z[:, :2], data.labels, data.class_names,
             title=f"t-SimCNE ({est.preset}) of {Path(str(data.source)).name}")
    write_json(out / PARAMS, tsimcne_params(est, data_record, **extra, **{FINISHED: True}))
    staging.mark(out, [n for n in TSIMCNE_FILES if (out / n).exists()])
    run.params = read_json(out / PARAMS)
    return run


def load_run_model(run, device: str = "auto"):
    """The fitted :class:`~medcne.TSimCNE` of a finished t-SimCNE run, refusing non-finite weights.

    ``run`` is the run folder, or the :class:`~medcne.runs.Run` that :func:`~medcne.runs.read_run` gave.
    """
    import torch

    from ..estimator import TSimCNE

    run = run.path if isinstance(run, Run) else run
    path = Path(run) / MODEL
    if not path.exists():
        raise MedcneError(f"{Path(run)}: no {MODEL}; give a finished run folder of `medcne fit` "
                          "(baselines have no model to place new images with)")
    est = TSimCNE.load(path, device=device)
    if not all(torch.isfinite(t).all() for t in est.model_.state_dict().values() if t.is_floating_point()):
        raise DivergedError(f"{path}: the model's weights are not finite (NaN or inf): the run diverged; "
                            "fit it again with a lower `lr`")
    if (Path(run) / PARAMS).is_file():
        _check_runs_model(path, est, read_json(Path(run) / PARAMS).get("estimator"))
    return est


def _check_runs_model(path: Path, est, recorded) -> None:
    """Refuse a model file whose settings are not those its run's params.json records (one copied in from
    another run places images into a map it did not make). ``device`` is where it runs now."""
    import json

    if not isinstance(recorded, dict):
        return
    ignored = ("checkpoint", "device")
    mine = json.loads(json.dumps({k: v for k, v in est.record()["params"].items() if k not in ignored}))
    # Only what params.json records: a run of an older medcne lacks the parameters added since, which
    # the model's record (read with their defaults) then holds.
    differ = sorted(k for k in set(recorded) - set(ignored) if mine.get(k) != recorded[k])
    if differ:
        k = differ[0]
        raise MedcneError(f"{path}: not the model of this run: its {k} is {mine.get(k)!r}, where the run's "
                          f"params.json records {recorded.get(k)!r}; put the run's own model.pt back, or fit the "
                          "run again")
