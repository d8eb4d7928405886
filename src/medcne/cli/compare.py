"""`medcne compare RUN1 RUN2 ... --out REPORT`: the paper's comparison table and figure."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare runs: REPORT.md / .csv table and REPORT.png panels")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (t-SimCNE runs and baselines)")
    p.add_argument("--out", required=True, metavar="REPORT",
                   help="path without extension: writes REPORT.md, REPORT.csv and REPORT.png")
    p.add_argument("--overwrite", action="store_true",
                   help="replace REPORT.md/.csv/.png when medcne wrote them (never other files)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..runs.compare import compare

    paths = compare(args.runs, args.out, overwrite=args.overwrite)
    print(paths["md"].read_text(encoding="utf-8"), end="")
    print(f"wrote {paths['md']}, {paths['csv']}, {paths['png']}")
    return 0
