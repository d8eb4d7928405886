"""Options shared by the commands that read a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..datasets import load_dataset


def add_data_options(p: argparse.ArgumentParser) -> None:
    """The reader options of :func:`medcne.datasets.load_dataset`."""
    g = p.add_argument_group("data")
    g.add_argument("--format", default="auto", choices=["auto", "npz", "folder", "csv", "pcam"])
    g.add_argument("--split", choices=["train", "val", "test"], help="one split only (default: all joined)")
    g.add_argument("--size", help="resize on load, e.g. 28 or 96x96")
    g.add_argument("--channels", default="keep", choices=["keep", "rgb", "gray"],
                   help="keep: 1 or 3 channels as stored (RGBA loses alpha); rgb; gray")
    g.add_argument("--subset", type=int, help="a random stratified subset of N images")
    g.add_argument("--seed", type=int, default=0, help="seed for --subset (and training)")
    g.add_argument("--skip-bad", action="store_true", help="leave out unreadable image files")
    g.add_argument("--path-column", default="path", help="CSV column with image paths")
    g.add_argument("--label-column", help="CSV column with labels (default: 'label' if present)")
    g.add_argument("--labels-map", metavar="FILE.csv", help="rename/join classes: CSV rows old,new (old '*': all others)")
    g.add_argument("--merge-rare", type=int, metavar="N", help="merge classes of fewer than N images into one")


def data_spec(args: argparse.Namespace) -> dict:
    """The load_dataset keyword arguments given on the command line."""
    return dict(
        format=args.format, split=args.split, size=args.size, channels=args.channels,
        subset=args.subset, seed=args.seed, skip_bad=args.skip_bad,
        path_column=args.path_column, label_column=args.label_column,
        # Absolute, so that params.json can read the run's data again from anywhere.
        labels_map=str(Path(args.labels_map).resolve()) if args.labels_map else None, merge_rare=args.merge_rare,
    )


def load_from_args(path, args: argparse.Namespace):
    return load_dataset(path, **data_spec(args))
