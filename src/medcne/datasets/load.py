"""`load_dataset`: one entry point that picks the reader for a path."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError, DataNotFoundError, MedcneError, UnknownFormatError, check_seed
from . import scanfiles
from .arrays import MEDMNIST_SPLITS, read_npz
from .convert import check_channels, parse_size, resize_images
from .csvfile import read_csv
from .files import is_image_file, read_folder
from .imageset import ImageSet
from .labels import labels_map as _map_labels
from .labels import merge_rare as _merge_rare
from .pcam import PCAM_SPLITS, read_pcam, read_pcam_folder, split_word
from .store import is_store
from .store_read import read_store, store_parts

FORMATS = ("auto", "npz", "folder", "csv", "pcam", "store", "dicom", "nifti")


def detect_format(path: Path) -> str:
    """Guess the reader from the path: extension, or folder contents."""
    if is_store(path):
        return "store"
    if path.is_dir():
        xs = sorted(path.glob("*_x.h5"))
        if xs and not any(is_image_file(p) for p in path.rglob("*")):
            return "pcam"
        return scanfiles.scan_format(path) or "folder"
    if scanfiles.is_nifti_name(path):
        return "nifti"
    if path.suffix.lower() in scanfiles.DICOM_SUFFIXES or scanfiles.has_dicom_marker(path):
        return "dicom"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".h5", ".hdf5"):
        return "pcam"
    raise UnknownFormatError(
        f"{path}: unknown dataset format {suffix or '(no extension)'!r}; give a .npz file, a folder "
        "with one sub-folder per class, a .csv of image paths, a PCam *_x.h5 file, DICOM files or NIfTI volumes"
    )


def check_data_path(path) -> Path:
    """``path`` as a Path, or one line when nothing is there."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file or folder; check the path")
    return path


# The options of the DICOM and NIfTI readers: refused for other data.
SCAN_OPTIONS = ("window", "axis", "keep_phi", "label_csv", "label_key", "drop_background")
# The formats whose data say which split each image is in (the other readers would read every image).
SPLIT_FORMATS = ("npz", "pcam")
FORMAT_WORDS = {"folder": "a folder of images", "csv": "a CSV of image paths", "dicom": "DICOM files",
                "nifti": "NIfTI volumes", "store": "a store written by medcne convert (it holds the split it "
                "was converted from)"}


def check_read_options(path, format: str = "auto", channels: str = "keep", seed: int = 0, size=None,
                       split: str | None = None, path_column: str = "path", allow_outside: bool = False,
                       store_parts=None, **scan_options) -> str | None:
    """The checks :func:`load_dataset` makes before it reads a pixel (also for a sweep, before its cells
    run); returns the format ``path`` is read as. With ``path`` None (data not there yet, or a folder of
    scans not worth walking) the format is not looked for, nor the scan options checked against it."""
    if format not in FORMATS:
        raise UnknownFormatError(f"`format` must be one of {', '.join(FORMATS)}; got {format!r}")
    check_channels(channels)
    check_seed(seed)
    parse_size(size)
    if split is not None and split not in MEDMNIST_SPLITS:
        raise MedcneError(f"`split` must be one of {', '.join(map(repr, MEDMNIST_SPLITS))} or unset (all); "
                          f"got {split!r}")
    if path is None:
        return None
    given = [k for k in SCAN_OPTIONS if scan_options.get(k) not in (None, False)]
    fmt = detect_format(path) if format == "auto" else format
    if given and fmt not in ("dicom", "nifti"):
        raise UnknownFormatError(f"`{given[0]}` applies to DICOM and NIfTI data only; {path} is read as {fmt}")
    csv_only = [k for k, v in (("path_column", path_column != "path"), ("allow_outside", allow_outside)) if v]
    if csv_only and fmt != "csv":
        raise UnknownFormatError(f"`{csv_only[0]}` applies to a CSV of image paths only; {path} is read as {fmt}")
    if store_parts is not None and fmt != "store":
        raise UnknownFormatError(f"`store_parts` applies to a store only; {path} is read as {fmt}")
    check_split_option(path, fmt, split)
    return fmt


def check_split_option(path: Path, fmt: str, split: str | None) -> None:
    """``split`` is for data that record splits: an npz (MedMNIST's layout, or a 'split' array: the npz
    reader refuses one without) and PCam (a folder of its files, or the one file of that split)."""
    if split is None:
        return
    if fmt not in SPLIT_FORMATS:
        raise UnknownFormatError(
            f"{path}: `split` applies only to data that record splits (an npz in MedMNIST's layout or with a "
            f"'split' array, PCam's files); this is read as {FORMAT_WORDS.get(fmt, fmt)}, which has no splits: "
            "leave `split` unset"
        )
    if fmt == "pcam" and not path.is_dir() and path.name.endswith("_x.h5"):
        word = split_word(str(path))
        if word != PCAM_SPLITS[split]:
            raise DataError(
                f"{path}: `split` {split!r} picks PCam's '*{PCAM_SPLITS[split]}_x.h5' file, but this file is "
                f"{'the ' + word + ' split' if word in PCAM_SPLITS.values() else 'not named after a split'}; "
                "give the folder of PCam's files, or leave `split` unset"
            )


def load_dataset(
    path,
    *,
    format: str = "auto",
    split: str | None = None,
    size=None,
    channels: str = "keep",
    subset: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    path_column: str = "path",
    label_column: str | None = None,
    allow_outside: bool = False,
    labels_map=None,
    merge_rare: int | None = None,
    window=None,
    axis: str | None = None,
    keep_phi: bool = False,
    label_csv=None,
    label_key: str | None = None,
    drop_background: bool = False,
    store_parts=None,
    upright: bool = True,
) -> ImageSet:
    """Read a dataset from disk into an :class:`ImageSet`.

    Parameters
    ----------
    path : str or Path
        A ``.npz`` (MedMNIST layout or ``images``/``labels``), a folder with one
        sub-folder per class, a ``.csv`` of image paths, a PCam ``*_x.h5``, or
        a store folder written by ``medcne convert`` (:mod:`.store`).
    split : {'train', 'val', 'test'}, optional
        One split only; by default all splits are joined, as the paper does. Only for data that record
        splits: an npz (MedMNIST's layout, or a ``split`` array) and PCam; refused for other formats.
    size : int or (H, W), optional
        Resize every image on load (antialiased bilinear).
    channels : {'keep', 'rgb', 'gray'}
        See :mod:`medcne.datasets.convert`.
    subset : int, optional
        A seeded random subset of this many images, stratified by class.
    skip_bad : bool
        Leave out unreadable image files and folders instead of failing (folders, CSV).
    path_column, label_column : str
        CSV columns of image paths (relative to the CSV) and of labels.
    allow_outside : bool
        Let CSV image paths lead outside the CSV's folder (``..``, absolute paths,
        symbolic links); refused by default.
    labels_map : str, Path or dict, optional
        Rename or join classes: a CSV of ``old,new`` class names (``*``: every
        other class) or a dict; see :mod:`medcne.datasets.labels`.
    merge_rare : int, optional
        Merge the classes with fewer than this many images into one class,
        ``'other (merged)'`` (after ``labels_map``, before ``subset``).
    window, axis, keep_phi, label_csv, label_key, drop_background
        DICOM and NIfTI only: see :func:`medcne.datasets.dicom.read_dicom` and
        :func:`medcne.datasets.nifti.read_nifti` (``axis`` defaults to ``'axial'``).
    upright : bool
        Image files (a folder, a CSV list): turn photos as their EXIF orientation
        tag says, as image viewers show them. A run made before medcne did so is
        read with ``upright=False`` (:func:`as_recorded`).
    store_parts : [int, int], optional
        A store only: read its first that many parts, with its first that many
        class names, as a run read the store before later appends (runs record
        it; see :func:`medcne.datasets.store_read.store_parts`).

    Raises
    ------
    DataError
        (a MedcneError) for anything wrong with the data, with one line naming
        the file and the fix.
    """
    path = check_data_path(path)
    scan_only = dict(window=window, axis=axis, keep_phi=keep_phi, label_csv=label_csv, label_key=label_key,
                     drop_background=drop_background)
    fmt = check_read_options(path, format=format, channels=channels, seed=seed, size=size, split=split,
                             path_column=path_column, allow_outside=allow_outside, store_parts=store_parts,
                             **scan_only)
    size = parse_size(size)
    if fmt == "npz":
        # With a subset, resize only the images kept: the same pixels, a fraction of the memory.
        data = read_npz(path, split=split, size=None if subset else size, channels=channels)
    elif fmt == "folder":
        data = read_folder(path, size=size, channels=channels, skip_bad=skip_bad, upright=upright)
    elif fmt == "csv":
        data = read_csv(
            path, path_column=path_column, label_column=label_column,
            size=size, channels=channels, skip_bad=skip_bad, allow_outside=allow_outside, upright=upright,
        )
    elif fmt in ("dicom", "nifti"):
        data = _read_scans(fmt, path, size=size, channels=channels, skip_bad=skip_bad, label_column=label_column,
                           **scan_only)
    elif fmt == "store":
        data = read_store(path, size=size, channels=channels, parts=store_parts)
    else:
        if path.is_dir():  # all of PCam's files (train, valid, test) unless --split picks one
            data = read_pcam_folder(path, split=split, size=size, channels=channels)
        else:
            data = read_pcam(path, size=size, channels=channels)
    # Recipes count classes on the whole dataset, so they come before the subset.
    if labels_map is not None:
        data = _map_labels(data, labels_map)
    if merge_rare is not None:
        data = _merge_rare(data, merge_rare)
    if subset is not None and subset != len(data):
        data = data.subset(subset, seed=seed)  # raises for subset > N or < 1
    if fmt == "npz" and subset and size is not None:
        images = resize_images(data.images, size, str(path))
        data = ImageSet(images, data.labels, data.class_names, data.ids, source=data.source, notes=data.notes)
    return data


def _read_scans(fmt: str, path: Path, **options) -> ImageSet:
    """The DICOM or NIfTI reader, imported only when used (they need pydicom or nibabel)."""
    if fmt == "dicom":
        from .dicom import read_dicom

        for name in ("axis", "drop_background"):
            if options.pop(name) not in (None, False):
                raise UnknownFormatError(f"`{name}` applies to NIfTI volumes, not to the DICOM files of {path}")
        return read_dicom(path, **options)
    from .nifti import read_nifti

    given = [name for name, value in (("keep_phi", options.pop("keep_phi")), ("label_key", options.pop("label_key")))
             if value not in (None, False)]
    if given:
        raise UnknownFormatError(f"`{given[0]}` applies to DICOM files, not to the NIfTI volumes of {path}")
    return read_nifti(path, axis=options.pop("axis") or "axial", **options)


# What a run records of how it read its data beyond the options given (:func:`as_recorded`).
RECORDED_READING = ("store_parts", "upright")


def as_recorded(path, spec: dict) -> dict:
    """``spec`` (options of :func:`load_dataset`) as a run records them, so that its images are read
    again as they were: for a store, the number of parts it holds now (``store_parts``: parts appended
    later are never read as the run's images); ``upright`` (photos turned by their EXIF tag), which a run
    made before medcne turned them lacks (:func:`as_read_then` reads it with ``upright=False``)."""
    spec = {"upright": True, **spec}
    if spec.get("store_parts") is None and is_store(path):
        spec["store_parts"] = list(store_parts(path))
    return spec


def as_read_then(spec: dict) -> dict:
    """The options a run recorded (``spec``), completed as the run read its data: a run that records no
    ``upright`` was made before photos were turned by their EXIF tag, and read them as stored."""
    return {"upright": False, **spec}
