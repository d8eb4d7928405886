"""`medcne tile SLIDES... --out TILES`: whole-slide images cut into tiles of tissue, into an on-disk store."""

from __future__ import annotations

import sys
from pathlib import Path

from ..datasets.slides_labels import read_slide_labels
from ..datasets.slides_plan import UNLABELLED_CHOICES, TileOptions
from ..datasets.slides_tiling import Progress, tile_slides
from ..errors import MedcneError
from ..params import for_cli
from ..runs.outputs import refuse_inputs
from ..train.progress import on_terminal, width_options


def add_parser(sub) -> None:
    p = sub.add_parser("tile", help="cut whole-slide images into tiles of tissue (needs medcne[slides])",
                       description="Cut whole-slide images (.svs, .ndpi, .mrxs, .scn, pyramidal .tiff, ...) into "
                                   "tiles of tissue at one resolution, written into an on-disk store that "
                                   "`medcne info/fit` read like any dataset. A rerun resumes.")
    p.add_argument("slides", nargs="+", help="slide files, or folders searched for them")
    p.add_argument("--out", required=True, help="the store folder to create (or to add slides to)")
    p.add_argument("--tile-size", type=int, default=96, help="tile side in pixels (default 96, as PCam)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=float, help="microns per pixel of the tiles (default 1.0, about 10x)")
    res.add_argument("--magnification", type=float, help="objective power of the tiles, e.g. 20 (instead of --mpp)")
    p.add_argument("--min-tissue", type=float, default=0.5, help="share of tissue a tile needs, 0-1 (default 0.5)")
    lab = p.add_mutually_exclusive_group()
    lab.add_argument("--labels", metavar="FILE.csv", help="slide-level classes: a CSV with columns slide,label")
    lab.add_argument("--annotations", metavar="FOLDER",
                     help="QuPath GeoJSON exports, <slide id>.geojson: a tile takes the class of the region "
                          "containing its centre")
    p.add_argument("--unlabelled", choices=UNLABELLED_CHOICES, default="keep",
                   help="tiles outside all regions (or of slides without a label): keep unlabelled or drop")
    p.add_argument("--workers", type=int, default=1, help="slides tiled at once, in parallel processes (default 1)")
    p.add_argument("--skip-bad", action="store_true", help="note unreadable slides and go on")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


class Bars(Progress):
    """Two tqdm bars on the terminal: slides, and tiles (its total grows as slides are planned) with time left."""

    slides = tile_bar = None

    def begin(self, n_slides: int) -> None:
        from tqdm.auto import tqdm

        width = width_options()
        self.slides = tqdm(total=n_slides, desc="slides", unit="slide", position=0, **width)
        self.tile_bar = tqdm(total=0, desc="tiles", unit="tile", position=1, smoothing=0.1, **width)

    def planned(self, n_tiles: int) -> None:
        self.tile_bar.total += n_tiles
        self.tile_bar.refresh()

    def tiles(self, n: int) -> None:
        self.tile_bar.update(n)

    def slide_done(self) -> None:
        self.slides.update(1)

    def close(self) -> None:
        # The top bar first: each is left on its own line, and what is printed next starts on the line below.
        for bar in (self.slides, self.tile_bar):
            if bar is not None:
                bar.close()


def _options(args) -> TileOptions:
    annotations = None
    if args.annotations:
        annotations = Path(args.annotations)
        if not annotations.is_dir():
            raise MedcneError(f"--annotations {annotations}: not a folder; give the folder of <slide id>.geojson files")
    return TileOptions(
        tile_size=args.tile_size,
        mpp=args.mpp if args.mpp is not None or args.magnification is not None else 1.0,
        magnification=args.magnification,
        min_tissue=args.min_tissue,
        slide_labels=read_slide_labels(args.labels) if args.labels else None,
        annotations=annotations,
        unlabelled=args.unlabelled,
    )


def run(args) -> int:
    out = Path(args.out)
    refuse_inputs(out, [*args.slides, args.labels, args.annotations])
    options = _options(args)
    bars = Bars() if not args.quiet and on_terminal() else None
    try:
        report = tile_slides(args.slides, out, options, workers=args.workers, skip_bad=args.skip_bad,
                             progress=bars)
    finally:
        if bars is not None:
            bars.close()
    for note in report.notes:
        print(f"note: {for_cli(note)}", file=sys.stderr)
    done = f"{report.tiles} tiles from {len(report.tiled)} slide(s) into {out}"
    extra = [f"{len(report.resumed)} already there" if report.resumed else "",
             f"{len(report.skipped)} without tiles or skipped" if report.skipped else ""]
    print(done + "".join(f"; {e}" for e in extra if e))
    return 0
