"""`medcne evaluate RUN [RUN ...]`: kNN accuracy, silhouette, neighbourhood preservation into metrics.json."""

from __future__ import annotations

from ..metrics.runs import evaluate_run, read_label_csv
from ..runfolder import read_run, write_json

METRIC_KEYS = {
    "knn_accuracy", "knn_accuracy_mean", "knn_accuracy_std", "knn_splits", "silhouette", "n_labeled",
    "neighbour_preservation", "neighbour_preservation_space", "neighbour_preservation_queries", "notes",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score maps: kNN accuracy, silhouette, neighbourhood preservation (writes metrics.json)"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (from `medcne fit` or `medcne baseline`)")
    p.add_argument("--labels", metavar="CSV",
                   help="labels by id (columns id,label or the viewer's export id,...,new_label); "
                        "they replace the run's labels for those ids")
    p.add_argument("--k", type=int, default=15, help="neighbours (default 15, as in the paper)")
    p.add_argument("--splits", type=int, default=5, help="stratified 9:1 splits averaged (default 5)")
    p.add_argument("--np-queries", type=int, default=5000,
                   help="points scored for neighbourhood preservation (default 5000; 0: all)")
    p.add_argument("--no-preservation", action="store_true",
                   help="skip neighbourhood preservation (it re-reads the images)")
    p.add_argument("--data", help="the runs' data, when it moved since they were made")
    p.set_defaults(func=run)


def format_metrics(name: str, m: dict) -> str:
    """One line per run for the terminal."""
    parts = []
    if "knn_accuracy" in m:
        parts.append(f"kNN accuracy {m['knn_accuracy']:.1f}% (mean of {m['knn_splits']} splits "
                     f"{m['knn_accuracy_mean']:.1f} ± {m['knn_accuracy_std']:.1f})")
        parts.append(f"silhouette {m['silhouette']:.3f}")
    if "neighbour_preservation" in m:
        parts.append(f"neighbourhood preservation {m['neighbour_preservation']:.3f} (k={m['k']}, pixels)")
    line = f"{name}: " + ", ".join(parts or ["no metrics"])
    return "\n".join([line, *(f"  note: {n}" for n in m.get("notes", []))])


def run(args) -> int:
    overrides = read_label_csv(args.labels) if args.labels else None
    runs = [read_run(r) for r in args.runs]  # fail on a bad folder before any long work
    for r in runs:
        m = evaluate_run(
            r, overrides, k=args.k, n_splits=args.splits, preservation=not args.no_preservation,
            n_queries=args.np_queries or None, data_path=args.data,
        )
        # Keep what training wrote (e.g. timings); drop old values of the metrics
        # measured here so that a skipped one does not survive from an earlier run.
        kept = {key: v for key, v in r.metrics.items() if key not in METRIC_KEYS}
        write_json(r.path / "metrics.json", {**kept, **m})
        print(format_metrics(str(r.path), m))
    return 0
