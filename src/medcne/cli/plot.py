"""`medcne plot RUN --kind map|thumbnails|compare --out FILE`: static figures of run folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MedcneError, MissingColumnError
from ..params import say
from ..runfiles import EMBEDDING_CSV
from ..runs import Run, read_run
from ..runs.outputs import claim_files
from ..runs.table import read_table

KINDS = ("map", "thumbnails", "compare")


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="figures of runs: the map, the thumbnail map, maps side by side")
    p.add_argument("runs", nargs="+", metavar="RUN", help="a run folder (several for --kind compare)")
    p.add_argument("--kind", default="map", choices=KINDS, help="which figure (default map)")
    p.add_argument("--out", required=True, metavar="FILE", help="output .png, .pdf or .svg")
    p.add_argument("--overwrite", action="store_true", help="replace --out when medcne wrote it (never another file)")
    p.add_argument("--color-by", metavar="COLUMN",
                   help="colour points by this per-image column (of --values, else of the run's embedding.csv)")
    p.add_argument("--values", metavar="CSV", help="a CSV with an 'id' column and the --color-by column")
    p.add_argument("--grid", type=int, default=25, help="thumbnail cells along the longer side (default 25)")
    p.add_argument("--data", help="the run's data, when it moved since the run was made (thumbnails)")
    p.add_argument("--placed", metavar="FILE",
                   help="draw the images `medcne embed` placed into this run's map (its .csv or .npz) over it")
    p.add_argument("--title", help="figure title (default: method and folder)")
    p.set_defaults(func=run)


def read_values(run: Run, column: str, csv_path=None) -> np.ndarray:
    """One value per point of ``run`` from a CSV column, matched by id; numbers become floats.

    Points missing from the CSV get NaN (numbers) or "" (categories).
    """
    path = Path(csv_path) if csv_path else run.path / EMBEDDING_CSV
    if not csv_path and not path.is_file():
        # Not read_table's "--values ...: no such file": the user gave no --values; the run lacks its own table.
        raise MedcneError(f"{path} is missing (the run's table that --color-by reads when --values is not given); "
                          f"make the run again, or give --values CSV with an 'id' column and the column {column!r}")
    columns, rows = read_table(path, "values")
    if "id" not in columns or column not in columns:
        raise MissingColumnError(
            f"{path}: --color-by {column!r} needs columns 'id' and {column!r}; found {', '.join(columns) or 'none'}"
        )
    by_id: dict[str, str] = {}
    for row in rows:
        if by_id.setdefault(row["id"], row[column]) != row[column]:
            raise MedcneError(f"{path}: id {row['id']!r} has two values of {column!r} ({by_id[row['id']]!r} and "
                              f"{row[column]!r}); keep one of them")
    raw = [by_id.get(i, "") for i in run.ids]
    if not any(raw):
        if not any(i in by_id for i in run.ids):
            raise MedcneError(f"{path}: no id matches the run's ids; give values for the images of {run.path}")
        # The ids are the run's; the column is empty for all of them (an unlabelled run's 'label').
        fix = (f"give --values CSV with an 'id' column and {column!r} filled in, or colour by another column"
               if not csv_path else f"fill in {column!r} for the run's ids, or colour by another column")
        raise MedcneError(f"{path}: column {column!r} has no values for any of the {len(raw)} points of "
                          f"{run.path} (the cells of their ids are empty); {fix}")
    try:
        values, shown = np.array([float(v) if v != "" else np.nan for v in raw]), "are not drawn"
    except ValueError:
        values, shown = np.array(raw, dtype=str), "are drawn as the class ''"
    # A figure of part of the images says so.
    if missing := sum(v == "" for v in raw):
        say(f"note: {path}: {missing:,} of the {len(raw):,} points have no {column!r} value and {shown}")
    if unknown := len(set(by_id) - set(run.ids)):
        say(f"note: {path}: {unknown:,} ids are not images of {run.path} (ignored)")
    return values


def _map_figure(Z: np.ndarray, r: Run, title: str, values, placed):
    """The map of ``r`` (three panels for a 3-D map, as ``fit`` draws it), coloured by ``values`` when
    given, with the ``placed`` points (and their class names) over it."""
    from ..plot import new_figure, plot_map, plot_placed
    from ..plot.maps import AXIS_PAIRS, categories, plot_map_pairs

    if Z.shape[1] == 3:
        fig = new_figure(16, 6)
        axes = plot_map_pairs(Z, r.labels, r.class_names, fig=fig, title=title, values=values)
        pairs = AXIS_PAIRS
    else:
        fig = new_figure(9, 7)
        axes, pairs = [plot_map(Z[:, :2], r.labels, r.class_names, ax=fig.add_subplot(), title=title, values=values)], [(0, 1)]
    if placed is not None:
        cats = categories(values) if values is not None else None
        names = r.class_names if values is None else cats[1] if cats is not None else None
        for k, (ax, (a, b)) in enumerate(zip(axes, pairs, strict=True)):
            plot_placed(ax, placed[0][:, [a, b]], placed[1], names, legend=k == len(axes) - 1)
    return fig


def placed_points(run: Run, path) -> tuple[np.ndarray, np.ndarray | None]:
    """The points of ``path`` (what `medcne embed` wrote; 2 or 3 coordinates, as the map's) and their
    class names, refused when their number of dimensions is not the run's map's (placed into another map)."""
    from ..embedfile import map_digest, read_placed

    Z, names, record = read_placed(path)
    digest = map_digest(run.embedding)
    if record.get("map_digest", digest) != digest:
        into = record.get("placed_into", "another run")
        made = "was made again since" if Path(into) == run.path.resolve() else f"is not {into}"
        raise MedcneError(f"--placed {path}: its images were placed into the map of {into}, and {run.path} {made}; "
                          f"place them into this map again (`medcne embed {run.path} DATA --out FILE`)")
    dim = np.asarray(run.embedding).shape[1]
    if Z.shape[1] != dim:
        raise MedcneError(f"--placed {path}: its points have {Z.shape[1]} dimensions, the map of {run.path} {dim}; "
                          f"give the file `medcne embed {run.path} DATA --out FILE` wrote")
    return Z, names


def check_values(args) -> None:
    """--values is the table --color-by reads, and both colour the map only: refused, before anything is
    written, where they would be ignored or the table is not there, rather than drawing a figure without
    the colours they were given for."""
    if args.values is not None and not args.color_by:
        raise MedcneError(f"--values {args.values} is read only with --color-by COLUMN (one of its columns); "
                          "add --color-by, or leave out --values")
    if args.color_by and args.kind != "map":
        raise MedcneError(f"--color-by colours --kind map only; got --kind {args.kind}")
    if args.placed is not None and args.kind != "map":
        raise MedcneError(f"--placed draws over --kind map only; got --kind {args.kind}")
    if args.values is not None and not Path(args.values).is_file():
        raise MedcneError(f"--values {args.values}: no such file; give a CSV with an 'id' column and the "
                          f"--color-by column {args.color_by!r}")


def run(args) -> int:
    check_values(args)
    with claim_files(args.out, args.overwrite, inputs=[args.values, args.data, args.placed], runs=args.runs):
        out = _draw(args)
    print(f"wrote {out}")
    return 0


def _draw(args):
    from ..plot import new_figure, plot_thumbnails, save_figure
    from ..runs.compare import collect, compare_figure

    if args.kind == "compare":
        return compare_figure(collect([read_run(r) for r in args.runs]), args.out)
    if len(args.runs) > 1:
        raise MedcneError(f"--kind {args.kind} draws one run; got {len(args.runs)} (use --kind compare)")
    r = read_run(args.runs[0])
    title = args.title or f"{r.method} ({r.name})"
    Z = np.asarray(r.embedding)[:, :3]
    if args.kind == "map":
        values = read_values(r, args.color_by, args.values) if args.color_by else None
        placed = placed_points(r, args.placed) if args.placed is not None else None
        return save_figure(_map_figure(Z, r, title, values, placed), args.out)
    data = r.load_images(args.data)
    fig = new_figure(9, 9)
    plot_thumbnails(Z[:, :2], data.images, r.labels, r.class_names, grid=args.grid, ax=fig.add_subplot(), title=title)
    return save_figure(fig, args.out)
