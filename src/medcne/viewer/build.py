"""Build the offline viewer page of a run folder.

The output folder holds ``index.html``, ``medcne-viewer.js`` (the bundled
JavaScript: regl-scatterplot and the page's own code), ``data.js`` (points,
labels, ids, numeric columns and the sprite layout as ``window.MEDCNE_DATA``)
``sprites/sheet-NNN.png``, ``slides/NNNNN.png`` (thumbnails of the slides
that tiles came from, when the dataset has them; see :mod:`.provenance`) and
the marker file ``.medcne-viewer``. A 3-D map (``fit --dim 3``) is shown as
one pair of its axes at a time, chosen in the page. Data travels
in a ``<script>`` file because a page opened from ``file://`` may not
``fetch()`` local files in Chromium.

The folder is built next to its destination and renamed into place, so a
reader never sees a half-written page, and a failed build leaves the old one.
An existing folder is replaced whole, so it is replaced only when asked, and
only while everything in it, at any depth, is what this module wrote: the
marker lists every file of the page with its size and sha256
(:func:`.pagefolder.foreign_entry`). A file the user added or edited is never lost.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import string
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..defaults import UNLABELLED
from ..embedfile import read_columns
from ..errors import MedcneError
from ..runfiles import EMBEDDING, VIEWER_DIR
from ..runs import Run, read_run
from ..runs.folder import writing_into
from ..runs.outputs import lock, refuse_inputs
from .bundlestamp import stale_bundle
from .pagefolder import (
    BUNDLE_NAME,
    SPRITES,
    check_out,
    remove_leftovers,
    replace_folder,
    write_marker,
)
from .provenance import column_values, copy_slide_thumbnails, data_folder
from .qc import QC_FILE, SCORES, qc_meta, read_qc
from .sprites import check_thumb, thumbnail_sample, thumbnail_size, write_sprites

HERE = Path(__file__).parent
BUNDLE = HERE / "static" / "medcne-viewer.js"
TEMPLATE = HERE / "templates" / "index.html"


# Beside the package in a source checkout (and an editable install), not in an installed wheel.
JS_SOURCES = HERE / "js" / "package.json"


def check_bundle(bundle: Path | None = None) -> Path:
    """The bundled JavaScript, or one clear line saying how to get it where the user is.

    In a source checkout it is built by ``make viewer-assets``; an installed
    medcne without it came from a wheel built without it (setup.py refuses that).
    """
    bundle = BUNDLE if bundle is None else Path(bundle)
    # A checkout: the bundle in static/ beside the js/ sources it is built from (another file given is not).
    if bundle.is_file() and JS_SOURCES.is_file() and bundle.parent.parent == JS_SOURCES.parent.parent:
        if reason := stale_bundle(bundle, JS_SOURCES.parent):
            raise MedcneError(f"{bundle}: the viewer's JavaScript bundle is out of date ({reason}); rebuild it "
                              "with `make viewer-assets`")
    if not bundle.is_file():
        if JS_SOURCES.is_file():
            raise MedcneError(
                f"{bundle}: the viewer's JavaScript bundle is missing; build it with "
                "`make viewer-assets` (npm ci and esbuild in src/medcne/viewer/js)"
            )
        raise MedcneError(
            f"{bundle}: this installation of medcne lacks the viewer's JavaScript; reinstall "
            "medcne from a wheel built with it (`make viewer-assets` before building the wheel)"
        )
    return bundle


def build_viewer(run, out=None, *, data_path=None, images=None, thumb: int | None = None,
                 max_sheet: int = 4096, columns: dict | None = None,
                 bundle: Path | None = None, overwrite: bool = False) -> Path:
    """Write the viewer of ``run`` into ``out`` and return the path of its ``index.html``.

    Parameters
    ----------
    run : str, Path or Run
        A run folder (see :mod:`medcne.runs`) with a 2-D or 3-D embedding.
    out : str or Path, optional
        Output folder; default ``RUN/viewer``. It may be missing or empty; an
        existing viewer folder (one with the ``.medcne-viewer`` marker) is
        replaced whole when ``overwrite`` is true and it holds nothing but the
        files the build wrote, unchanged; any other folder is refused.
    data_path : str or Path, optional
        Where the run's images are, when they moved since the run was made.
    images : array, optional
        uint8 N x H x W x C images in embedding order, instead of re-reading them.
    thumb : int, optional
        Thumbnail side in pixels (default: image side, at most 64).
    max_sheet : int
        Largest side of a sprite sheet in pixels (browser texture limit).
    columns : dict of str to array, optional
        Extra numeric columns (length N) to colour by.
    bundle : Path, optional
        The bundled JavaScript (default: the one ``make viewer-assets`` builds).
    overwrite : bool
        Replace ``out`` when it holds a viewer built before.

    A ``qc.csv`` in the run folder (see :mod:`medcne.viewer.qc`) adds its scores
    as colour columns, a filter for the likely problems and hover details.
    """
    if thumb is not None:
        check_thumb(thumb, max_sheet)  # before any image is read
    if not isinstance(run, Run):
        run = read_run(run)  # a missing or unfinished run is said before a missing bundle
    if run.embedding.ndim != 2 or run.embedding.shape[1] not in (2, 3):
        raise MedcneError(
            f"{run.path}: the viewer needs a 2-D or 3-D embedding; {EMBEDDING} holds shape "
            f"{tuple(run.embedding.shape)}"
        )
    n = len(run.ids)
    bad = ~np.isfinite(run.embedding).all(axis=1)
    if bad.any():
        raise MedcneError(
            f"{run.path}: {int(bad.sum())} points of {EMBEDDING} are not finite (NaN or inf), "
            f"e.g. id {str(run.ids[bad][0])!r}; the run diverged, so fit it again"
        )
    bundle = check_bundle(bundle)  # before any image is read
    if images is None:
        images = run.load_images(data_path).images
    if len(images) != n:
        raise MedcneError(f"{run.path}: {len(images)} images for {n} points; pass the run's own images")
    # `.` or `a/..` named: the page is built beside that folder (then swapped in), not inside it.
    out = Path(os.path.abspath(out)) if out is not None else run.path / VIEWER_DIR
    refuse_inputs(out, [data_path], runs=[run.path], derived=VIEWER_DIR)
    check_out(out, overwrite)
    qc = read_qc(run.path / QC_FILE, run.ids) if (run.path / QC_FILE).is_file() else None
    qc_cols = {name: qc.scores[name] for name in SCORES} if qc else {}
    # prov_* columns say where an image came from (shown as text); other stored numbers are colours.
    prov, stored = read_columns(run.path / EMBEDDING, n)
    cols = {**stored, **qc_cols, **{k: np.asarray(v, float) for k, v in (columns or {}).items()}}
    for name, values in cols.items():
        if values.shape != (n,):
            raise MedcneError(f"column {name!r} has shape {values.shape}; give one number per point ({n})")

    out.parent.mkdir(parents=True, exist_ok=True)
    in_run = out.parent.resolve() == run.path.resolve()
    with writing_into(run) if in_run else nullcontext(), lock(out):  # the run: not replaced meanwhile
        remove_leftovers(out)
        _build(run, out, images, thumb, max_sheet, cols, qc, bundle, overwrite,
               (prov, data_folder(run.params, data_path)))
    return out / "index.html"


def _build(run: Run, out: Path, images, thumb, max_sheet: int, cols: dict, qc, bundle: Path,
           overwrite: bool, provenance: tuple) -> None:
    """Build the page in a new folder beside ``out``, then swap it in (see :func:`_replace_folder`).

    ``provenance``: the run's provenance columns and the dataset folder that may hold slide thumbnails.
    """
    prov, slide_folder = provenance
    n = len(run.ids)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tile = thumbnail_size(tuple(images.shape[1:]), thumb)
        brightness = np.empty(n)

        def measure(start: int, batch: np.ndarray) -> None:
            # Mean pixel value in [0, 1]: dark, blank or overexposed images stand out.
            brightness[start:start + len(batch)] = batch.reshape(len(batch), -1).mean(axis=1) / 255.0

        keep = thumbnail_sample(n, tile, first=_shown_in_pairs(qc))
        layout, sheets = write_sprites(images, tmp / SPRITES, tile, max_sheet, on_batch=measure, keep=keep)
        cols = {"brightness": brightness, **cols}
        sprite_info = {"tile": tile, "cols": layout.cols, "perSheet": layout.per_sheet,
                       "sheets": sheets, **({} if keep is None else {"points": keep.tolist()})}
        slides = copy_slide_thumbnails(prov, slide_folder, tmp)
        source = {"columns": {k: column_values(v) for k, v in prov.items()}, "slides": slides}
        (tmp / "data.js").write_text(_data_js(run, cols, sprite_info, qc, source), encoding="utf-8")
        shutil.copyfile(bundle, tmp / BUNDLE_NAME)
        title = f"medcne: {run.name} ({run.method}, {n:,} images)"
        page = string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
            title=html.escape(title), bundle=BUNDLE_NAME)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        write_marker(tmp)
        check_out(out, overwrite)  # again: the build took a while, and someone may have used the folder
        replace_folder(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.filename is None and exc.errno is not None:  # a failed write names no file: name the page
            raise OSError(exc.errno, exc.strerror, str(out)) from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _shown_in_pairs(qc) -> np.ndarray | None:
    """The points QC flags and their likely duplicates: the page lists them and shows each pair side by
    side, so they come first when only a sample of the points gets thumbnails."""
    if qc is None:
        return None
    flagged = np.flatnonzero(np.any(np.stack(list(qc.flags.values())), axis=0))
    partners = qc.duplicate[flagged]
    return np.concatenate([flagged, partners[partners >= 0]])


def run_key(run: Run) -> str:
    """Names the run for the page's browser storage of annotations.

    Pages opened from ``file://`` share one storage area, so the key must tell
    runs apart; the hash of the ids (in order) keeps annotations, stored by
    point index, from landing on another run's points.
    """
    digest = hashlib.sha256("\n".join(str(i) for i in run.ids).encode("utf-8")).hexdigest()[:16]
    return f"{run.name}|{run.method}|{len(run.ids)}|{digest}"


def _numbers(values) -> str:
    """A JSON array of 6 significant digits (as embedding.csv), ``null`` for NaN/inf."""
    a = np.asarray(values, dtype=float)
    text = [f"{v:.6g}" for v in a.tolist()]
    bad = ~np.isfinite(a)
    for i in np.flatnonzero(bad):
        text[i] = "null"
    return "[" + ",".join(text) + "]"


def _palette(k: int) -> list[str]:
    """Distinct class colours: matplotlib's tab10 / tab20, then evenly spaced hues."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if k <= 10:
        return [to_hex(c) for c in colormaps["tab10"].colors[:k]]
    if k <= 20:
        return [to_hex(c) for c in colormaps["tab20"].colors[:k]]
    return [to_hex(colormaps["hsv"](i / k)) for i in range(k)]


def _ramp(name: str = "viridis", k: int = 256) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps[name]
    return [to_hex(cmap(i / (k - 1))) for i in range(k)]


def _data_js(run: Run, cols: dict[str, np.ndarray], sprites: dict, qc=None, source: dict | None = None) -> str:
    n = len(run.ids)
    if run.labels is None:
        labels, names = np.zeros(n, dtype=np.int64), ["(no label)"]
    else:
        labels, names = run.labels, list(run.class_names)
    label_names = [names[k] for k in labels] if run.labels is not None else None
    # The class that means "no label" (-1: none): the page suggests labels for its images only.
    no_label = 0 if run.labels is None else names.index(UNLABELLED) if UNLABELLED in names else -1
    hues = _palette(24)
    meta = {
        "title": run.name, "method": run.method, "n": n, "runKey": run_key(run), "classNames": names,
        "palette": _palette(len(names)), "ramp": _ramp(),
        # Colours for labels added in the page: 24 hues, taken 7 apart so that two
        # labels added one after the other never look alike (magenta first: rare among classes).
        "spare": [hues[(20 + 7 * i) % 24] for i in range(24)], "sprites": sprites,
        "labeled": run.labels is not None, "noLabel": no_label,
        "qc": qc_meta(qc, label_names) if qc is not None else None,
        "dim": int(run.embedding.shape[1]),
        # provenance columns ({column: values}) and slide thumbnails ({slide: file, size, scale})
        "source": source or {"columns": {}, "slides": {}},
    }
    parts = [
        json.dumps(meta)[:-1],
        ', "x": ' + _numbers(run.embedding[:, 0]),
        ', "y": ' + _numbers(run.embedding[:, 1]),
        *([', "z": ' + _numbers(run.embedding[:, 2])] if run.embedding.shape[1] == 3 else []),
        ', "labels": [' + ",".join(map(str, np.asarray(labels).tolist())) + "]",
        ', "ids": ' + json.dumps([str(i) for i in run.ids]),
        ', "columns": {' + ",".join(f"{json.dumps(k)}: {_numbers(v)}" for k, v in cols.items()) + "}",
        "}",
    ]
    # JSON.parse of a string literal is about twice as fast in V8 as the same
    # object literal (bench/RESULTS.md has the figures).
    # json.dumps escapes all non-ASCII, so only \\ and ' need escaping here.
    text = "".join(parts).replace("\\", "\\\\").replace("'", "\\'")
    return "window.MEDCNE_DATA = JSON.parse('" + text + "');\n"
