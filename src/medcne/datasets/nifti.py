"""The NIfTI reader: ``.nii`` / ``.nii.gz`` volumes cut into 2-D slices.

Each volume is turned to the closest canonical orientation (RAS+: the first
voxel axis runs towards the patient's right, the second towards anterior, the
third towards superior; ``nibabel.as_closest_canonical``), so that left and
right, front and back mean the same in every volume whatever order its voxels
were stored in. It is then cut along ``axis``:

- ``axial``: slices from inferior to superior, shown as seen from below
  (anterior up, the patient's right on the image's right);
- ``coronal``: slices from posterior to anterior, superior up, the patient's right on the right;
- ``sagittal``: slices from the patient's left to right, superior up, anterior on the right.

Slice k of a volume has the id ``PATH#k`` (PATH relative to the data folder,
k counting from 0 in the canonical orientation) and the provenance columns
``volume`` (PATH) and ``slice`` (k). Values are windowed to 0..255 as described
in :mod:`medcne.datasets.window` (stored values after the file's scale factor;
CT in Hounsfield units); a volume holding NaN or infinite values is refused, as
is one whose header states more data than an uncompressed file holds or than
memory holds (all three skipped with ``skip_bad``). Volumes of more than three
dimensions give their first volume (noted).

Labels per slice come from a label CSV (:mod:`medcne.datasets.scancommon`:
column ``volume``, optional ``slice``) or from a segmentation volume beside the
image: ``NAME_seg``, ``NAME_label``, ``NAME_labels``, ``NAME_mask`` or
``NAME_segmentation`` (``.nii`` or ``.nii.gz``) next to ``NAME.nii.gz``, or the
file of the same name in a ``labels*`` folder beside an ``images*`` folder (the
Medical Segmentation Decathlon layout; nnU-Net's ``_0000`` channel suffix is
allowed). A slice takes the non-zero label that covers most of its voxels
(ties: the smaller label value), named by its value (``"1"``, ``"2"``; rename
with ``labels_map``); slices without any are ``"background"``, or are left out
with ``drop_background=True``. Segmentation volumes are never read as images.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError, EmptyDatasetError, MedcneError, printable, require
from .convert import check_channels, parse_size
from .files import listed, shortened
from .imageset import ImageSet
from .memory import check_memory
from .scancommon import (
    check_resized,
    check_unused,
    encode_with_missing,
    read_label_csv,
    sized,
    stack_images,
)
from .scanfiles import is_nifti_name, relative_id, walk_files
from .window import FILE, Window, auto_window, parse_window

AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
SEG_SUFFIXES = ("_seg", "_label", "_labels", "_mask", "_segmentation")
BACKGROUND = "background"


def stem(path: Path) -> str:
    """The file name without ``.nii`` / ``.nii.gz``."""
    name = path.name
    return re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE)


def pair_segmentations(files: list[Path]) -> tuple[list[Path], dict[Path, Path]]:
    """(image volumes, {image: its segmentation}) among NIfTI ``files``."""
    by_key = {(f.parent, stem(f)): f for f in files}
    segs: dict[Path, Path] = {}
    for f in files:
        s = stem(f)
        for suffix in SEG_SUFFIXES:
            if s.lower().endswith(suffix) and (f.parent, s[: -len(suffix)]) in by_key:
                segs[by_key[(f.parent, s[: -len(suffix)])]] = f
        if f.parent.name.lower().startswith("labels"):
            images_dir = f.parent.parent / ("images" + f.parent.name[len("labels"):])
            for name in (s, s + "_0000"):
                if (images_dir, name) in by_key:
                    segs[by_key[(images_dir, name)]] = f
    seg_files = set(segs.values())
    return [f for f in files if f not in seg_files], segs


def _load(path: Path, nib, what: str) -> tuple[np.ndarray, bool]:
    """A volume's values as float32 in the canonical orientation (3-D), and whether
    dimensions beyond the third were dropped (their first volume kept)."""
    with warnings.catch_warnings(), _quiet(logging.getLogger("nibabel.global")):
        warnings.simplefilter("ignore")  # nibabel warns and logs on odd header fields it can read around
        try:
            img = nib.load(str(path))
            _check_size(img, path, what)
            data = np.asarray(nib.as_closest_canonical(img).dataobj, dtype=np.float32)
        except DataError:
            raise
        except MemoryError:
            raise DataError(f"{path}: the {what} is too large for the memory available; read it on a machine "
                            "with more memory, or pass `skip_bad` to leave it out") from None
        except Exception as exc:  # damaged headers and data make nibabel raise nearly anything
            raise DataError(f"{path}: not a readable NIfTI {what} ({type(exc).__name__}: "
                            f"{printable(' '.join(str(exc).split()), 100)}); replace it with a readable "
                            "copy, or pass `skip_bad` to leave it out") from None
    if data.ndim < 2:
        raise DataError(f"{path}: the {what} has {data.ndim} dimension(s); give 2-D or 3-D volumes")
    _check_finite(data, path, what)
    dropped = data.ndim > 3 and any(n > 1 for n in data.shape[3:])
    if data.ndim > 3:
        data = data[(slice(None),) * 3 + (0,) * (data.ndim - 3)]
    return (data[..., None] if data.ndim == 2 else data), dropped


def _check_size(img, path: Path, what: str) -> None:
    """Refuse, before any voxel is read, a header that states more data than an uncompressed file
    holds (damaged), or more than the memory available holds (its values and their float32 copy)."""
    voxels, itemsize = int(np.prod(img.shape, dtype=object)), img.get_data_dtype().itemsize
    offset = getattr(img.dataobj, "offset", None)  # the header's vox_offset as nibabel reads the data
    if offset is not None and path.name.lower().endswith(".nii"):
        need, have = int(offset) + voxels * itemsize, path.stat().st_size
        if need > have:
            raise DataError(f"{path}: damaged or truncated: the header states {need:,} bytes, the file holds "
                            f"{have:,}; replace it, or pass `skip_bad` to leave it out")
    shape = "x".join(map(str, img.shape))
    check_memory(voxels * (itemsize + 4), str(path), f"the {what} of {shape} voxels",
                 "read it on a machine with more memory, or pass `skip_bad` to leave it out")


def _stated_slices(volumes: list[Path], nib, axis: int) -> int:
    """How many slices along ``axis`` (in the canonical orientation) the headers of ``volumes`` state,
    read without their voxels, so that what a `size` needs is checked before the first slice is
    resized. A volume refused on its own (unreadable, damaged, or larger than memory:
    :func:`_check_size`; left out with `skip_bad`) counts nothing here."""
    count = 0
    for path in volumes:
        with warnings.catch_warnings(), _quiet(logging.getLogger("nibabel.global")):
            warnings.simplefilter("ignore")
            try:
                img = nib.load(str(path))
                _check_size(img, path, "volume")
                turned = nib.orientations.io_orientation(img.affine)[:, 0]  # voxel axis i -> canonical axis
                count += next(n for i, n in enumerate((*img.shape, 1, 1)[:3]) if int(turned[i]) == axis)
            except Exception:  # named when the volume is read
                continue
    return count


def _check_stated(volumes: list[Path], nib, axis: int, size, channels: str, root: Path, droppable) -> None:
    """Refuse a `size` whose slices will not fit in memory, before any voxel is read. Of volumes in
    ``droppable`` (with a segmentation, under `drop_background`) the slices kept are known only once
    read: they count as none, and at least one slice is kept in all (the check before stacking counts them)."""
    if size is None:
        return
    n = _stated_slices([v for v in volumes if v not in droppable], nib, axis)
    lower = any(v in droppable for v in volumes)
    n = max(n, 1) if lower else n
    check_resized(n, size, False, channels, str(root), f"{'at least ' if lower else ''}{n:,} slice(s)")


def _check_finite(data: np.ndarray, path: Path, what: str) -> None:
    """Refuse NaN and infinite values, as float pixels are refused elsewhere: no window makes them a grey."""
    if data.size and not (np.isfinite(data.min()) and np.isfinite(data.max())):
        count = data.size - int(np.count_nonzero(np.isfinite(data)))
        raise DataError(f"{path}: the {what} holds {count:,} non-finite value(s) (NaN or infinity); replace them "
                        "with numbers (e.g. numpy.nan_to_num) or pass `skip_bad` to leave it out")


@contextlib.contextmanager
def _quiet(logger: logging.Logger):
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _slices(volume: np.ndarray, axis: int) -> np.ndarray:
    """The 2-D slices of a 3-D array along ``axis``, turned for display (see the module docstring):
    (n, rows, columns), made contiguous in one copy: taking slices one by one across NIfTI's
    column-major order was the reader's slowest step."""
    moved = np.moveaxis(volume, axis, 0)  # (n, a, b): a, b the remaining axes in RAS order
    return np.ascontiguousarray(moved.transpose(0, 2, 1)[:, ::-1, :])


def dominant_labels(seg: np.ndarray, axis: int) -> list[int]:
    """Per slice of ``seg`` along ``axis``: the non-zero label covering most voxels (ties: the
    smaller value), 0 for a slice without any."""
    out = []
    for cut in _slices(np.rint(seg).astype(np.int64), axis):
        values = cut.reshape(-1)
        values = values[values != 0]
        if values.size == 0:
            out.append(0)
            continue
        labels, counts = np.unique(values, return_counts=True)
        out.append(int(labels[np.argmax(counts)]))
    return out


def _volume_labels(rel: str, n: int, seg: np.ndarray | None, table, single, axis_n: int) -> list[str | None]:
    """The label of each of the ``n`` slices of one volume (None: unlabelled)."""
    if table is not None:
        return [single.get((rel, k), table.get(rel)) for k in range(n)]
    if seg is None:
        return [None] * n
    return [BACKGROUND if v == 0 else str(v) for v in dominant_labels(seg, axis_n)]


def _window_volume(volume: np.ndarray, window, path: Path) -> np.ndarray:
    if window == FILE:
        raise MedcneError(f"{path}: NIfTI files state no window; give `window` as a preset such as "
                          "soft-tissue, as WIDTH,LEVEL, or auto")
    w = window if isinstance(window, Window) else auto_window(volume)
    return w.apply(volume)


def _find(root: Path) -> tuple[list[Path], dict[Path, Path], list[str]]:
    if root.is_file():
        return [root], {}, []
    files, notes = walk_files(root)
    volumes, segs = pair_segmentations([f for f in files if is_nifti_name(f)])
    if not volumes:
        raise EmptyDatasetError(f"{root}: no NIfTI volumes (.nii, .nii.gz) found; give a folder of volumes")
    return volumes, segs, notes


def _labels_beside(root: Path) -> str | None:
    """A note when ``root`` is the ``images*`` folder of the Decathlon layout: the segmentations in
    the ``labels*`` folder beside it are outside the folder given, so they are not read."""
    root = root.resolve()
    if not root.name.lower().startswith("images"):
        return None
    beside = root.parent / ("labels" + root.name[len("images"):])
    if not (beside.is_dir() and any(is_nifti_name(f) for f in beside.iterdir())):
        return None
    return (f"segmentations lie beside this folder in {printable(beside.name)}/ but are not read; give the folder "
            f"above ({printable(root.parent.name)}) to label the slices by them")


def read_nifti(
    root,
    *,
    axis: str = "axial",
    window=None,
    size=None,
    channels: str = "keep",
    skip_bad: bool = False,
    label_csv=None,
    label_column: str | None = None,
    drop_background: bool = False,
) -> ImageSet:
    """Read a NIfTI volume or a folder of them (recursively) as 2-D slices.

    Parameters
    ----------
    root : str or Path
        A ``.nii`` / ``.nii.gz`` file, or a folder searched recursively.
    axis : {'axial', 'coronal', 'sagittal'}
        The direction the volumes are cut along (see the module docstring).
    window : str or (width, level), optional
        See :mod:`medcne.datasets.window`; default ``"auto"`` (per volume).
    size : (H, W), optional
        Resize every slice; required when volumes give slices of different sizes.
    channels : {'keep', 'rgb', 'gray'}
        See :mod:`medcne.datasets.convert`.
    skip_bad : bool
        Leave out volumes that cannot be read (noted) instead of failing.
    label_csv : str or Path, optional
        Labels per volume or slice (columns ``volume``, optional ``slice``, and the label column).
    label_column : str, optional
        The CSV's label column (default ``label``).
    drop_background : bool
        Leave out the slices whose segmentation has no non-zero label.
    """
    nib = require("nibabel", "nifti")
    root = Path(root)
    if axis not in AXES:
        raise MedcneError(f"`axis` must be one of {', '.join(AXES)}; got {axis!r}")
    check_channels(channels)
    size, window = parse_size(size), parse_window(window)
    volumes, segs, notes = _find(root)
    table = single = None
    if label_csv is not None:
        _, table, single = read_label_csv(label_csv, ("volume",), None, label_column)
    elif not segs and root.is_dir() and (beside := _labels_beside(root)):
        notes.append(beside)
    _check_stated(volumes, nib, AXES[axis], size, channels, root, segs if drop_background and table is None else {})
    rows: dict[str, list] = {k: [] for k in ("images", "owners", "ids", "vols", "slices", "values")}
    bad: list[str] = []
    dropped_dims = background_dropped = 0
    for path in volumes:
        rel = relative_id(path, root)
        try:
            volume, dropped = _load(path, nib, "volume")
            seg = _segmentation(segs.get(path), volume.shape, nib) if table is None else None
        except DataError as exc:
            if not skip_bad:
                raise
            bad.append(f"{printable(rel)} ({shortened(str(exc).split(': ', 1)[-1].split('; ')[0], 100)})")  # without the fix
            continue
        dropped_dims += dropped
        cut = _slices(_window_volume(volume, window, path), AXES[axis])
        labels = _volume_labels(rel, len(cut), seg, table, single, AXES[axis])
        for k, (img, label) in enumerate(zip(cut, labels, strict=True)):
            if drop_background and label == BACKGROUND:
                background_dropped += 1
                continue
            # Resized now, so that the volume is not kept alive by views of its slices.
            for name, value in zip(rows, (sized(img[..., None], size), rel, f"{rel}#{k}", rel, k, label), strict=True):
                rows[name].append(value)
        del volume, seg, cut  # not alive while the next volume is read
    _notes(notes, bad, dropped_dims, background_dropped, axis)
    if not rows["images"]:
        why = "check the volumes (and drop_background)"
        if len(bad) == len(volumes):
            why = f"every volume was unreadable, e.g. {bad[0]}"
        raise EmptyDatasetError(f"{root}: no slices left to read; {why}")
    labels = class_names = None
    if table is not None or segs:
        where = Path(label_csv).name if table is not None else "a segmentation volume"
        labels, class_names = encode_with_missing(rows["values"], notes, where)
    if table is not None:
        used = set(rows["vols"]) | set(zip(rows["vols"], rows["slices"], strict=True))
        check_unused({**table, **single}, used, notes, Path(label_csv).name)
    stacked = stack_images(rows["images"], rows["owners"], size=size, channels=channels, source=str(root),
                           notes=notes)
    return ImageSet(stacked, labels, class_names, np.asarray(rows["ids"]), source=str(root), notes=notes,
                    provenance={"volume": np.asarray(rows["vols"]),
                                "slice": np.asarray(rows["slices"], dtype=np.int64)})


def _segmentation(path: Path | None, shape: tuple[int, ...], nib) -> np.ndarray | None:
    if path is None:
        return None
    seg, _ = _load(path, nib, "segmentation")
    if seg.shape != shape:
        raise DataError(f"{path}: the segmentation has shape {seg.shape} but its volume {shape} (in the canonical "
                        "orientation); give a segmentation of the same voxel grid")
    return seg


def _notes(notes: list[str], bad: list[str], dropped_dims: int, background_dropped: int, axis: str) -> None:
    notes.append(f"volumes turned to the canonical (RAS) orientation and cut into {axis} slices")
    if bad:
        notes.append(f"skipped {len(bad)} unreadable volume(s): {listed(bad)}")
    if dropped_dims:
        notes.append(f"{dropped_dims} volume(s) have more than three dimensions: only the first 3-D volume of each was read")
    if background_dropped:
        notes.append(f"left out {background_dropped} slice(s) without a segmentation label")
