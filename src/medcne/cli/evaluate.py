"""`medcne evaluate RUN [RUN ...]`: kNN accuracy, silhouette, neighbourhood preservation into metrics.json."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from ..defaults import KNN_K, KNN_SPLITS, PRESERVATION_QUERIES
from ..errors import MedcneError
from .common import held_run


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score maps: kNN accuracy, silhouette, neighbourhood preservation (writes metrics.json)"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (from `medcne fit` or `medcne baseline`)")
    p.add_argument("--labels", metavar="CSV",
                   help="labels by id (columns id,label or the viewer's export id,...,new_label); "
                        "they replace the run's labels for those ids")
    p.add_argument("--labels-map", metavar="FILE.csv",
                   help="rename/join classes before scoring: CSV rows old,new (old '*': all others)")
    p.add_argument("--merge-rare", type=int, metavar="N",
                   help="merge classes of fewer than N images into one before scoring")
    p.add_argument("--k", type=int, default=KNN_K, help=f"neighbours (default {KNN_K}, as in the paper)")
    p.add_argument("--splits", type=int, default=KNN_SPLITS,
                   help=f"stratified 9:1 splits averaged (default {KNN_SPLITS})")
    p.add_argument("--np-queries", type=int, default=PRESERVATION_QUERIES,
                   help=f"points scored for neighbourhood preservation (default {PRESERVATION_QUERIES}; 0: all)")
    p.add_argument("--no-preservation", action="store_true",
                   help="skip neighbourhood preservation (it re-reads the images)")
    p.add_argument("--data", help="the runs' data, when it moved since they were made")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..datasets.labels import read_labels_map
    from ..params import say
    from ..runs import evaluate_and_write, format_metrics, read_label_csv
    from ..runs.evaluate import suggestions_note

    if args.data is not None and not Path(args.data).exists():
        # Given on purpose: refused before any metrics.json is rewritten with only a note that it was not there.
        raise MedcneError(f"--data {args.data}: no such file or folder; give the dataset the runs were made from")
    suggested: list[str] = []
    overrides = read_label_csv(args.labels, skipped=suggested) if args.labels else None
    if suggested:
        say(f"note: {suggestions_note(suggested)}")
    labels_map = read_labels_map(args.labels_map) if args.labels_map else None  # once, before any run
    with ExitStack() as held:  # each run locked while it is read and scored (see held_run)
        runs = [held.enter_context(held_run(r)) for r in args.runs]  # a bad folder fails before any long work
        for r in runs:
            m = evaluate_and_write(
                r, overrides=overrides, k=args.k, n_splits=args.splits, preservation=not args.no_preservation,
                n_queries=args.np_queries or None, data_path=args.data, labels_map=labels_map,
                merge_rare=args.merge_rare,
            )
            say(format_metrics(str(r.path), m))  # its notes name the command's options
    return 0
