"""`medcne embed RUN DATA --out FILE`: place new images into the map of a run.

The images go through the run's trained network without augmentation
(deterministic). The size, channels, window and axis default to those the
run read its own images with. ``FILE`` ends in ``.csv`` (x, y, label, id) or ``.npz``.
"""

from __future__ import annotations

from pathlib import Path

from ..defaults import DEVICES
from ..errors import MedcneError
from ..params import for_cli
from ..runs.outputs import claim_files, dataset_inputs
from .common import add_data_options, data_spec


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="place new images into the map of a trained run",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder written by `medcne fit`")
    p.add_argument("data", help="the images to place (any format `medcne info` reads)")
    p.add_argument("--out", required=True, help="output .csv or .npz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to run the network (auto: a GPU when there is one)")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    run_dir, out = Path(args.run), Path(args.out)
    if out.suffix not in (".csv", ".npz"):
        raise MedcneError(f"--out must end in .csv or .npz; got {out.name!r}")
    with claim_files(out, args.overwrite, inputs=dataset_inputs(args.data), runs=[run_dir]):
        n = _embed(run_dir, out, args)
    print(f"placed {n} images into the map of {run_dir}: {out}")
    return 0


def _embed(run_dir: Path, out: Path, args) -> int:
    from ..datasets import load_dataset
    from ..runs import load_run_model, read_run, save_embedding_file

    trained = read_run(run_dir).params.get("data") or {}  # a finished run with a finite map
    est = load_run_model(run_dir, device=args.device)
    spec = training_pixels(data_spec(args), trained, args.data)
    data = load_dataset(args.data, **spec)
    for note in data.notes:  # skipped files, dropped alpha...: what `info` says of these data
        print(f"note: {for_cli(note)}")
    Z = est.transform(data)
    save_embedding_file(out, Z, data.ids, data.labels, data.class_names, data.provenance)
    return len(data)


# Reader options that decide the pixels the network sees: the new images get the run's unless given.
# (The window and the axis apply only to scans: a run of CT slices may place a folder of PNG images.)
PIXEL_OPTIONS = {"size": None, "channels": "keep", "window": None, "axis": None}
SCAN_ONLY = {"window": ("dicom", "nifti"), "axis": ("nifti",)}


def training_pixels(spec: dict, trained: dict, data_path) -> dict:
    """``spec`` with the run's size, channels, window and axis where the command line gave none; a note
    when a given window or axis differs from the run's (the images are then placed as the network never
    saw them), and a refusal for another size (the network takes only images of its own size)."""
    from ..datasets.convert import parse_size
    from ..datasets.load import detect_format

    fmt = detect_format(Path(data_path)) if spec.get("format", "auto") == "auto" else spec["format"]
    spec = dict(spec)
    for name, default in PIXEL_OPTIONS.items():
        recorded = trained.get(name)
        if recorded is None or fmt not in SCAN_ONLY.get(name, (fmt,)):
            continue
        given = spec.get(name, default)
        if given == default:
            spec[name] = recorded
        elif name == "size" and parse_size(given) != parse_size(recorded):  # the network takes only its own
            raise MedcneError(f"--{name} {given} differs from the run's {recorded}: the network places only "
                              f"images of the size it was trained on; leave --{name} out to read them as the run did")
        elif name in ("window", "axis") and str(given) != str(recorded):  # other channels: equal pixels or refused
            print(f"note: --{name} {given} differs from the run's {recorded}; the images are placed as the "
                  "network never saw them during training")
    return spec
