"""`medcne info DATA`: what a user checks first about a dataset."""

from __future__ import annotations

from ..datasets.summary import describe
from .common import add_data_options, load_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="summarise a dataset: size, classes, problems")
    p.add_argument("data", help="a .npz, a folder of class folders, a .csv of paths, a PCam *_x.h5, "
                   "a folder of DICOM files or of NIfTI volumes")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    print(describe(load_from_args(args.data, args)))
    return 0
