"""`medcne embed RUN DATA --out FILE`: place new images into the map of a run.

The images go through the run's trained network without augmentation
(deterministic). The size and channel options default to those the run was
trained with. ``FILE`` ends in ``.csv`` (x, y, label, id) or ``.npz``.
"""

from __future__ import annotations

from pathlib import Path

from ..defaults import DEVICES
from ..errors import MedcneError
from .common import add_data_options, data_spec


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="place new images into the map of a trained run",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder written by `medcne fit`")
    p.add_argument("data", help="the images to place (any format `medcne info` reads)")
    p.add_argument("--out", required=True, help="output .csv or .npz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--device", default="auto", choices=DEVICES)
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..datasets import load_dataset
    from ..estimator import TSimCNE
    from ..runs import save_embedding_file
    from ..runs.folder import MODEL, PARAMS, read_json

    run_dir, out = Path(args.run), Path(args.out)
    if out.suffix not in (".csv", ".npz"):
        raise MedcneError(f"--out must end in .csv or .npz; got {out.name!r}")
    if out.exists() and not args.overwrite:
        raise MedcneError(f"--out {out} exists; pass --overwrite to replace it or choose another name")
    model = run_dir / MODEL
    if not model.exists():
        raise MedcneError(f"{run_dir}: no {MODEL}; give a finished run folder of `medcne fit`")
    spec = data_spec(args)
    trained = read_json(run_dir / PARAMS).get("data", {})
    # Images must match the training images; default to the run's resize/channels.
    if spec["size"] is None:
        spec["size"] = trained.get("size")
    if spec["channels"] == "keep":
        spec["channels"] = trained.get("channels", "keep")
    est = TSimCNE.load(model, device=args.device)
    data = load_dataset(args.data, **spec)
    Z = est.transform(data)
    save_embedding_file(out, Z, data.ids, data.labels, data.class_names)
    print(f"placed {len(data)} images into the map of {run_dir}: {out}")
    return 0
