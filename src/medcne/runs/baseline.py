"""Baselines as run folders: the same files as a t-SimCNE run, without model or history."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import MedcneError
from ..io import write_json
from .evaluate import evaluate_and_write
from .folder import EMBEDDING, MAP, PARAMS, Run, read_run, write_embedding


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
        Overwrite a finished run in ``out``.
    **options
        Passed to :func:`medcne.baselines.embed_baseline` (seed, n_jobs, weights,
        download, tsne_params, simclr).

    Returns
    -------
    Run
        The finished run, read back (``metrics`` evaluated).
    """
    from ..baselines import METHODS, embed_baseline
    from ..datasets import load_dataset
    from ..plot import save_map

    out = Path(out)
    if (out / EMBEDDING).exists() and not force:
        raise MedcneError(f"{out}: already holds a finished run; choose another --out or pass --force")
    if method not in METHODS:
        raise MedcneError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    spec = {k: v for k, v in (data_spec or {}).items() if v is not None}
    data = load_dataset(data_path, **spec)
    start = time.perf_counter()
    Z, record = embed_baseline(data, method, **options)
    seconds = time.perf_counter() - start
    params = {"method": method, "data": {**spec, "path": str(Path(data_path).resolve())},
              "seed": options.get("seed", 0), **record}
    write_json(out / PARAMS, params)
    write_embedding(out, Z, data.ids, data.labels, data.class_names)
    run = read_run(out)
    evaluate_and_write(run, extra={"seconds": round(seconds, 1)}, data=data)
    save_map(out / MAP, Z, data.labels, data.class_names, title=f"{method} of {Path(data_path).name}")
    return run
