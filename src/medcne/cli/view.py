"""`medcne view RUN`: build the interactive map page of a run folder."""

from __future__ import annotations

import webbrowser


def add_parser(sub) -> None:
    p = sub.add_parser(
        "view", help="build an offline web page to explore and annotate a run's map",
        description="Build index.html (WebGL map, hover images, box/lasso selection, "
                    "annotation kept in the browser, label suggestion, CSV export, the run's "
                    "qc.csv if any) that opens from the file system, no server needed.",
    )
    p.add_argument("run", help="a run folder (from `medcne fit` or `medcne baseline`)")
    p.add_argument("--out", help="output folder (default: RUN/viewer); must be missing, empty, "
                                 "or a viewer built before (with --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the output folder when it holds a viewer built before "
                        "(a folder not made by `medcne view` is never replaced)")
    p.add_argument("--data", help="the run's dataset, if it moved since the run was made")
    p.add_argument("--thumb", type=int, help="thumbnail side in pixels (default: image side, at most 64); a page "
                   "holds 400 million thumbnail pixels at most (a sample of the images beyond that), so smaller "
                   "thumbnails cover more images")
    p.add_argument("--open", action="store_true", help="open the page in the web browser")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..viewer import build_viewer

    index = build_viewer(args.run, args.out, data_path=args.data, thumb=args.thumb,
                         overwrite=args.overwrite)
    print(index)
    if args.open:
        webbrowser.open(index.resolve().as_uri())
    return 0
