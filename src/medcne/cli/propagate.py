"""`medcne propagate RUN --labels annotations.csv`: labels for every image from a few annotated ones."""

from __future__ import annotations

from ..defaults import DEVICES, KNN_K
from ..params import for_cli


def add_parser(sub) -> None:
    p = sub.add_parser(
        "propagate", help="label every image of a run from a few annotated ones (writes a CSV with confidence)",
        description="Spread the labels of annotated images (the viewer's export, or a CSV id,label) to all "
                    "images of the run along its nearest-neighbour graph; writes id,label,confidence,annotated, "
                    "which `medcne evaluate RUN --labels FILE` reads.",
    )
    p.add_argument("run", help="a run folder (from `medcne fit` or `medcne baseline`)")
    p.add_argument("--labels", required=True, metavar="CSV",
                   help="annotations: columns id,label, or the viewer's export (id,...,new_label)")
    p.add_argument("--out", help="output CSV (default: RUN/propagated.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--method", default="spreading", choices=["spreading", "knn"],
                   help="spreading: along the kNN graph of all images (default); knn: vote of the nearest annotated")
    p.add_argument("--space", default="auto", choices=["auto", "features", "map", "pixels"],
                   help="auto: features when the run has a model, pixels for pixel baselines, else the map")
    p.add_argument("--k", type=int, default=KNN_K, help=f"neighbours (default {KNN_K})")
    p.add_argument("--data", help="the run's dataset, if it moved since the run was made")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to compute features and neighbours (auto: a GPU when there is one)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..runs import read_run
    from ..runs.curate import propagate_run

    r = read_run(args.run)
    path, s = propagate_run(r, args.labels, args.out, space=args.space, method=args.method, k=args.k,
                            data_path=args.data, device=args.device, overwrite=args.overwrite)
    others = s["images"] - s["annotated"]
    line = (f"{path}: {s['images']:,} images labelled from {s['annotated']} annotated ({s['classes']} classes, "
            f"{s['space']} space, {s['neighbours']} neighbours); over the {others:,} not annotated: mean "
            f"confidence {s['mean_confidence']:.2f}")
    if "agreement" in s:
        line += f", {s['agreement']:.1f}% agree with the run's labels (of the {s['agreement_of']:,} it labels)"
    print(line)
    for note in s["notes"]:  # the viewer's suggestions and unknown ids left out, in evaluate's words
        print(f"note: {for_cli(note)}")
    return 0
