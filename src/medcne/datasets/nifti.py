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

import logging
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError, EmptyDatasetError, MedcneError, printable, require
from .convert import check_channels, parse_size
from .files import listed, shortened
from .imageset import ImageSet
from .nifti_volume import Volume, check_size, load, quiet, windowed
from .scancommon import (
    check_resized,
    check_unused,
    encode_with_missing,
    read_label_csv,
    sized,
    stack_images,
)
from .scanfiles import is_nifti_name, relative_id, walk_files
from .window import FILE, parse_window

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


def _stated_slices(volumes: list[Path], nib, axis: int) -> int:
    """How many slices along ``axis`` (in the canonical orientation) the headers of ``volumes`` state,
    read without their voxels, so that what a `size` needs is checked before the first slice is
    resized. A volume refused on its own (unreadable, unsupported, damaged, or larger than memory:
    :func:`~.nifti_volume.check_size`; left out with `skip_bad`) counts nothing here."""
    count = 0
    for path in volumes:
        with warnings.catch_warnings(), quiet(logging.getLogger("nibabel.global")):
            warnings.simplefilter("ignore")
            try:
                img = nib.load(str(path))
                check_size(img, path, "volume")
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


def _volume_labels(rel: str, n: int, seg: list[int] | None, table, single) -> list[str | None]:
    """The label of each of the ``n`` slices of one volume (None: unlabelled); ``seg``: the dominant
    label of each slice in its segmentation."""
    if table is not None:
        return [single.get((rel, k), table.get(rel)) for k in range(n)]
    if seg is None:
        return [None] * n
    return [BACKGROUND if v == 0 else str(v) for v in seg]


def _window_volume(volume: Volume, window, path: Path) -> np.ndarray:
    if window == FILE:
        raise MedcneError(f"{path}: NIfTI files state no window; give `window` as a preset such as "
                          "soft-tissue, as WIDTH,LEVEL, or auto")
    return windowed(volume, window, path)


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
            volume = load(path, nib, "volume")
            seg = _segmentation(segs.get(path), volume.shape, nib, AXES[axis]) if table is None else None
        except DataError as exc:
            if not skip_bad:
                raise
            bad.append(f"{printable(rel)} ({shortened(str(exc).split(': ', 1)[-1].split('; ')[0], 100)})")  # without the fix
            continue
        dropped_dims += volume.dropped
        cut = _slices(_window_volume(volume, window, path), AXES[axis])
        labels = _volume_labels(rel, len(cut), seg, table, single)
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


def _segmentation(path: Path | None, shape: tuple[int, ...], nib, axis: int) -> list[int] | None:
    """The dominant label of each slice along ``axis`` of the segmentation ``path`` (None: none), its
    values scaled a slab of slices at a time."""
    if path is None:
        return None
    seg = load(path, nib, "segmentation")
    if seg.shape != shape:
        raise DataError(f"{path}: the segmentation has shape {seg.shape} but its volume {shape} (in the canonical "
                        "orientation); give a segmentation of the same voxel grid")
    return [label for index in seg.slabs(axis) for label in dominant_labels(seg.values(index), axis)]


def _notes(notes: list[str], bad: list[str], dropped_dims: int, background_dropped: int, axis: str) -> None:
    notes.append(f"volumes turned to the canonical (RAS) orientation and cut into {axis} slices")
    if bad:
        notes.append(f"skipped {len(bad)} unreadable volume(s): {listed(bad)}")
    if dropped_dims:
        notes.append(f"{dropped_dims} volume(s) have more than three dimensions: only the first 3-D volume of each was read")
    if background_dropped:
        notes.append(f"left out {background_dropped} slice(s) without a segmentation label")
