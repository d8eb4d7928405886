"""Baselines as run folders: the same files as a t-SimCNE run, without model or history.

Written like a t-SimCNE run (:func:`.staging.writing`): into ``out`` when it is
missing or empty, else (``force``, and only over a run medcne wrote) beside it
and moved in once finished; a baseline that fails (e.g. on a full disk) leaves
nothing behind.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..embedfile import write_embedding
from ..errors import MedcneError
from ..io import write_json
from ..params import say
from ..runfiles import IMAGES_FINGERPRINT
from . import staging
from .evaluate import evaluate_and_write
from .folder import FINISHED, MAP, PARAMS, Run, read_run
from .outputs import dataset_inputs


def make_baseline(data_path, method: str, out, data_spec: dict | None = None, force: bool = False,
                  **options) -> Run:
    """Write a baseline run folder: params.json, embedding.npz/.csv, metrics.json, map.png.

    Parameters
    ----------
    data_path : str or Path
        The dataset, as for :func:`medcne.datasets.load_dataset`.
    method : one of :data:`medcne.defaults.BASELINES`
    out : str or Path
        The run folder to write.
    data_spec : dict, optional
        Keyword arguments of ``load_dataset`` (format, split, size, subset, seed...).
    force : bool
        Replace the run in ``out`` (the old one stays whole until the new one is finished).
    **options
        Passed to :func:`medcne.baselines.embed_baseline` (seed, n_jobs, weights,
        download, tsne_params, simclr). Any other name is refused before anything
        is read or written (``overwrite``, :func:`~medcne.runs.fit_run`'s name for
        ``force``, too).

    Returns
    -------
    Run
        The finished run, read back (``metrics`` evaluated).
    """
    from ..baselines import METHODS, embed_baseline
    from ..datasets import as_recorded, load_dataset
    from ..plot import save_map

    _check_options(options, embed_baseline)
    out = Path(out)
    if method not in METHODS:
        raise MedcneError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}")
    inputs = dataset_inputs(data_path)
    with staging.locked(out):  # a second writer is told who is writing, before any check of `out`
        staging.check(out, force, option="force", inputs=inputs)
        spec = as_recorded(data_path, {k: v for k, v in (data_spec or {}).items() if v is not None})
        data = load_dataset(data_path, **spec)
        for note in data.notes:  # skipped files, dropped alpha...: what `info` says of these data
            say(f"note: {note}")
        with staging.writing(out, force, option="force", inputs=inputs) as work:
            start = time.perf_counter()
            Z, record = embed_baseline(data, method, **options)
            seconds = time.perf_counter() - start
            params = {"method": method, "data": {**spec, "path": str(Path(data_path).resolve())},
                      "seed": options.get("seed", 0), **record, IMAGES_FINGERPRINT: data.fingerprint(sampled=None, labels=False)}
            write_json(work / PARAMS, {**params, FINISHED: False})
            write_embedding(work, Z, data.ids, data.labels, data.class_names, data.provenance)
            run = read_run(work, finished=False)
            evaluate_and_write(run, extra={"seconds": round(seconds, 1)}, data=data)
            save_map(work / MAP, Z, data.labels, data.class_names, title=f"{method} of {Path(data_path).name}")
            write_json(work / PARAMS, {**params, FINISHED: True})
    return read_run(out)


def _check_options(options: dict, embed_baseline) -> None:
    """Refuse keyword arguments that neither make_baseline nor ``embed_baseline`` takes, in one line
    naming those they take (``overwrite`` is fit_run's word for ``force``)."""
    import inspect

    takes = [n for n in inspect.signature(embed_baseline).parameters if n not in ("data", "method")]
    unknown = [n for n in options if n not in takes]
    if not unknown:
        return
    names = ("an unknown option " if len(unknown) == 1 else "unknown options ") + ", ".join(f"`{n}`" for n in unknown)
    hint = (": here the switch that replaces a run is `force` (`overwrite` is fit_run's)"
            if "overwrite" in unknown else "")
    raise MedcneError(f"make_baseline got {names}{hint}; its options are `data_spec`, `force`, "
                      + ", ".join(f"`{n}`" for n in takes))
