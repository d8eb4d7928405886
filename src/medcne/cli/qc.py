"""`medcne qc RUN [--data DATA]`: likely label errors, near-duplicates and outliers of a run's images into qc.csv."""

from __future__ import annotations

from ..defaults import DEVICES, KNN_K


def add_parser(sub) -> None:
    p = sub.add_parser(
        "qc", help="find likely label errors, near-duplicates and outliers (writes RUN/qc.csv)",
        description="Score every image of a run from its nearest neighbours (the run's backbone features "
                    "for t-SimCNE runs, the pixels or the map for baselines) and its thumbnails and sharpness, "
                    "and write qc.csv in the run folder.",
    )
    p.add_argument("run", help="a run folder (from `medcne fit` or `medcne baseline`)")
    p.add_argument("--data", help="the run's dataset, if it moved since the run was made")
    # Given after RUN without --data in earlier versions: still taken.
    p.add_argument("data_positional", nargs="?", metavar="DATA", help="the same as --data")
    p.add_argument("--space", default="auto", choices=["auto", "features", "map", "pixels"],
                   help="auto: features when the run has a model, pixels for pixel baselines, else the map")
    p.add_argument("--k", type=int, default=KNN_K, help=f"neighbours per image (default {KNN_K})")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to compute features and neighbours (auto: a GPU when there is one)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import MedcneError
    from ..runs.curate import qc_run
    from .common import held_run

    if args.data is not None and args.data_positional is not None:
        raise MedcneError("give the dataset once: either DATA or --data PATH")
    data = args.data if args.data is not None else args.data_positional
    with held_run(args.run) as r:
        path, result, space = qc_run(r, space=args.space, k=args.k, data_path=data, device=args.device)
    s = result.summary()
    labels = f"{s['label_errors']} likely label errors" if r.labels is not None else "no labels to check"
    print(f"{path}: {len(r.ids):,} images, {space} space, k={min(args.k, len(r.ids) - 1)}, "
          f"{s['neighbours']} neighbours")
    print(f"{labels}, {s['duplicate_pairs']} near-duplicate pairs, {s['outliers']} outliers; see qc.csv")
    return 0
