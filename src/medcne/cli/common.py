"""Options shared by the commands that read a dataset, and the check that ``--out`` is not an input."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..datasets import load_dataset
from ..datasets.arrays import MEDMNIST_SPLITS
from ..datasets.load import SCAN_OPTIONS
from ..errors import MedcneError
from ..runs.folder import RUN_FILES


def add_data_options(p: argparse.ArgumentParser) -> None:
    """The reader options of :func:`medcne.datasets.load_dataset`."""
    g = p.add_argument_group("data")
    g.add_argument("--format", default="auto",
                   choices=["auto", "npz", "folder", "csv", "pcam", "store", "dicom", "nifti"],
                   help="how to read DATA (default auto: from the extension, or a folder)")
    g.add_argument("--split", choices=MEDMNIST_SPLITS, help="one split only (default: all joined)")
    g.add_argument("--size", help="resize on load, e.g. 28 or 96x96")
    g.add_argument("--channels", default="keep", choices=["keep", "rgb", "gray"],
                   help="keep: 1 or 3 channels as stored (RGBA loses alpha); rgb; gray")
    g.add_argument("--subset", type=int, help="a random stratified subset of N images")
    g.add_argument("--seed", type=int, default=0, help="seed of --subset, and of training where the command trains (default 0)")
    g.add_argument("--skip-bad", action="store_true", help="leave out unreadable image files")
    g.add_argument("--path-column", default="path", help="CSV column with image paths (default 'path')")
    g.add_argument("--label-column", help="CSV column with labels (default: 'label' if present)")
    g.add_argument("--allow-outside", action="store_true",
                   help="let a CSV's image paths lead outside its folder (refused by default)")
    g.add_argument("--labels-map", metavar="FILE.csv", help="rename/join classes: CSV rows old,new (old '*': all others)")
    g.add_argument("--merge-rare", type=int, metavar="N", help="merge classes of fewer than N images into one")
    add_scan_options(p)


def add_scan_options(p: argparse.ArgumentParser) -> None:
    """The DICOM and NIfTI options of :func:`medcne.datasets.load_dataset`."""
    g = p.add_argument_group("DICOM and NIfTI")
    g.add_argument("--window", help="intensity window: auto (default), file (DICOM), a preset (lung, mediastinum, "
                   "soft-tissue, abdomen, liver, bone, brain, subdural, stroke) or WIDTH,LEVEL such as 400,40")
    g.add_argument("--axis", choices=["axial", "coronal", "sagittal"], help="NIfTI: cut volumes along (default axial)")
    g.add_argument("--keep-phi", action="store_true",
                   help="DICOM: keep patient identity in ids and the series column (left out by default)")
    g.add_argument("--label-csv", metavar="FILE.csv", help="labels keyed by SOPInstanceUID, SeriesInstanceUID, "
                   "StudyInstanceUID, PatientID or path (DICOM), by volume[,slice] (NIfTI)")
    g.add_argument("--label-key", help="DICOM: the key column of --label-csv when it has several")
    g.add_argument("--drop-background", action="store_true",
                   help="NIfTI: leave out slices whose segmentation has no label (default: class 'background')")


def data_spec(args: argparse.Namespace) -> dict:
    """The load_dataset keyword arguments given on the command line."""
    return dict(
        format=args.format, split=args.split, size=args.size, channels=args.channels,
        subset=args.subset, seed=args.seed, skip_bad=args.skip_bad,
        path_column=args.path_column, label_column=args.label_column, allow_outside=args.allow_outside,
        # Absolute, so that params.json can read the run's data again from anywhere.
        labels_map=str(Path(args.labels_map).resolve()) if args.labels_map else None, merge_rare=args.merge_rare,
        **scan_spec(args),
    )


def scan_spec(args: argparse.Namespace) -> dict:
    """The DICOM and NIfTI keyword arguments given on the command line (none when not given)."""
    spec = {k: getattr(args, k) for k in SCAN_OPTIONS if getattr(args, k) not in (None, False)}
    if "label_csv" in spec:
        spec["label_csv"] = str(Path(spec["label_csv"]).resolve())  # recorded in params.json, read from anywhere
    return spec


def load_from_args(path, args: argparse.Namespace):
    return load_dataset(path, **data_spec(args))


# What each command writes with --out: a run folder (only its run files are
# written), a folder replaced whole, one file, or REPORT.md/.csv/.png.
OUT_KINDS = {"fit": "run", "baseline": "run", "view": "folder", "embed": "file", "plot": "file",
             "augment-preview": "file", "compare": "report", "convert": "folder"}
# Options naming inputs: datasets (whose folder must not receive outputs), run folders, single files.
INPUT_OPTIONS = {"data": "data", "run": "run", "runs": "run", "values": "file", "labels": "file", "weights": "file",
                 "label_csv": "file"}


@contextmanager
def held_run(path) -> Iterator:
    """The run folder ``path``, read, then held for the body (:func:`medcne.runs.folder.writing_into`): a
    command that reads a run and writes into it (``metrics.json``, ``qc.csv``) stops a replacement of the
    run for as long as it works, naming itself, rather than write about the old map into the new run."""
    from ..runs import read_run
    from ..runs.folder import writing_into

    with writing_into(read_run(path)) as run:
        yield run


def written_paths(kind: str, out: Path) -> list[Path]:
    """The paths that a command writing ``out`` of ``kind`` creates or replaces."""
    if kind == "run":
        return [out, *(out / name for name in RUN_FILES)]
    if kind == "report":
        from ..runs.compare import report_paths

        return list(report_paths(out).values())
    return [out]


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(inner: Path, outer: Path) -> bool:
    return outer.resolve() in inner.resolve().parents


def check_out_is_not_an_input(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` that is, would replace, or lies inside one of the command's inputs.

    Inputs are the dataset (file or folder), run folders (the folder and its
    run files) and single files (``--values``, ``--labels``, ``--weights``).
    """
    kind, out = OUT_KINDS.get(args.command), getattr(args, "out", None)
    if kind is None or out is None:
        return
    out = Path(out)
    written = written_paths(kind, out)
    for option, role in INPUT_OPTIONS.items():
        value = getattr(args, option, None)
        for given in ([value] if isinstance(value, str) else value or []):
            path = Path(given)
            if not path.exists():
                continue
            read = [path, *(path / n for n in RUN_FILES if (path / n).exists())] if role == "run" else [path]
            for w in written:
                hit = next((r for r in read if _same(w, r)), None)
                if hit is not None:
                    raise MedcneError(f"--out {out} would replace {hit}, an input of this command; "
                                      "choose another --out")
            if role == "data" and path.is_dir() and _inside(out, path):
                raise MedcneError(f"--out {out} is inside the dataset folder {path}, whose files are read as "
                                  "images; choose an --out outside it")
            if kind == "folder" and _inside(path, out):
                raise MedcneError(f"--out {out} would be replaced whole but holds the input {path}; "
                                  "choose another --out")
