"""`medcne fit DATA --out RUN`: train t-SimCNE and write a run folder.

The run folder (DESIGN.md section 2): ``params.json``, ``history.csv`` (updated
after every epoch while training), ``checkpoint.pt`` (end of each stage and
every ``--checkpoint-minutes``), ``model.pt``, ``embedding.npz``,
``embedding.csv``, ``metrics.json`` (when labeled) and ``map.png``.

An existing non-empty ``--out`` is refused unless ``--overwrite`` is given (then
the run files in it are replaced and nothing else is touched); ``--resume RUN``
continues an interrupted run in place from its ``checkpoint.pt``.

``--quick`` fills every training option not given explicitly with settings that
finish the bundled 2,000-image sample in a few minutes on a 2-core CPU (narrow
backbone, short schedule); on a GPU it keeps the paper's backbone.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import MedcneError
from .common import add_data_options, data_spec

RUN_FILES = (
    "params.json", "history.csv", "model.pt", "checkpoint.pt", "embedding.npz", "embedding.csv",
    "metrics.json", "map.png",
)
PAPER = dict(epochs="1000,50,450", batch_size=1024, lr="auto", stage3_lr_factor=1e-3, warmup="10,0,10",
             width=64, backbone="resnet18")
# Found by bench/quality.py (see bench/RESULTS.md, section Training).
# Configuration A there: 72.5% kNN / 0.18 silhouette on 4,000 BloodMNIST images (t-SNE of
# pixels: 63.7% / 0.024) in about 13 CPU-minutes; the 2,000-image demo takes about 3 minutes.
QUICK_CPU = dict(epochs="12,1,6", batch_size=128, lr="0.06", stage3_lr_factor=0.1, warmup="2,0,1", width=16)
QUICK_GPU = dict(epochs="100,5,50", batch_size=256, lr="auto", stage3_lr_factor=0.1, warmup="10,0,5", width=64)
TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "stage3_lr_factor", "warmup", "width", "backbone")


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="train t-SimCNE on a dataset and write a run folder with its 2D map",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="the dataset (see `medcne info`); not needed with --resume")
    p.add_argument("--out", help="run folder to write")
    p.add_argument("--resume", metavar="RUN", help="continue the interrupted run in folder RUN")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of an existing --out")
    g = p.add_argument_group("training (defaults: the paper's; --quick: fast CPU settings)")
    g.add_argument("--quick", action="store_true", help="fast settings for a demo (minutes on a 2-core CPU)")
    g.add_argument("--preset", default="simclr", choices=["simclr", "rot90", "rotate"],
                   help="augmentations; 'rotate' suits microscopy and pathology")
    g.add_argument("--epochs", help="epochs of the three stages (paper: 1000,50,450)")
    g.add_argument("--batch-size", type=int, help="images per batch (paper: 1024)")
    g.add_argument("--lr", help="peak learning rate (default auto: 0.03 * batch / 256)")
    g.add_argument("--stage3-lr-factor", type=float, help="stage-3 learning rate / lr (paper: 0.001)")
    g.add_argument("--warmup", help="warm-up epochs per stage (paper: 10,0,10)")
    g.add_argument("--backbone", choices=["resnet18", "resnet34", "resnet50"])
    g.add_argument("--width", type=int, help="backbone base channels (paper: 64; 16 for CPU)")
    g.add_argument("--dim", type=int, default=2, help="map dimension (2; 3 for a 3D map)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--compile", action="store_true", help="torch.compile the model (GPU, long runs)")
    g.add_argument("--knn-every", type=int, default=0, help="kNN accuracy in history.csv every K epochs")
    g.add_argument("--checkpoint-minutes", type=float, default=10.0)
    add_data_options(p)
    p.set_defaults(func=run)


def training_params(args) -> dict:
    """Estimator parameters: explicit options, else --quick settings, else the paper's."""
    from ..train.data import resolve_device

    device = resolve_device(args.device)
    quick = (QUICK_GPU if device.type == "cuda" else QUICK_CPU) if args.quick else {}
    chosen = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    merged = {**PAPER, **quick, **chosen}
    lr = merged["lr"]
    if lr != "auto":
        try:
            lr = float(lr)
        except ValueError:
            raise MedcneError(f"--lr must be a positive number or 'auto'; got {lr!r}") from None
    return dict(
        dim=args.dim, epochs=merged["epochs"], batch_size=int(merged["batch_size"]), lr=lr,
        stage3_lr_factor=float(merged["stage3_lr_factor"]), warmup=merged["warmup"],
        preset=args.preset, backbone=merged["backbone"], width=int(merged["width"]), device=args.device,
        compile=args.compile, knn_every=args.knn_every, checkpoint_minutes=args.checkpoint_minutes,
        random_state=args.seed,
    )


def prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MedcneError(f"--out {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise MedcneError(
                f"--out {out} exists and is not empty; pass --overwrite to replace its run files, "
                f"--resume {out} to continue it, or choose another folder"
            )
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def write_history(path: Path, rows: list[dict]) -> None:
    from ..runfolder import write_text

    keys = ["stage", "epoch", "loss", "lr", "views_per_s", "knn"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(path, buf.getvalue())


def run(args) -> int:
    from ..datasets import load_dataset
    from ..estimator import TSimCNE
    from ..runfolder import write_json

    if args.resume:
        out = Path(args.resume)
        params_file = out / "params.json"
        if not params_file.exists() or not (out / "checkpoint.pt").exists():
            raise MedcneError(f"--resume {out}: not an interrupted run (needs params.json and checkpoint.pt)")
        saved = json.loads(params_file.read_text())
        spec = dict(saved["data"])
        path = spec.pop("path")
        est = TSimCNE(**saved["estimator"])
        data = load_dataset(path, **spec)
        resume_from = out / "checkpoint.pt"
    else:
        if args.data is None or args.out is None:
            raise MedcneError("give a dataset and --out RUN (or --resume RUN to continue a run)")
        out = Path(args.out)
        spec = data_spec(args)
        data = load_dataset(args.data, **spec)
        est = TSimCNE(**training_params(args))
        est.validate(data)  # bad parameters fail here, before anything is written
        prepare_out(out, args.overwrite)
        params = {
            "method": "tsimcne",
            "data": {**spec, "path": str(Path(args.data).resolve())},
            "estimator": {k: v for k, v in est.get_params().items() if k != "checkpoint"},
            "resolved": est.resolved_params(),
            "quick": bool(args.quick),
        }
        write_json(out / "params.json", params)
        resume_from = None
    est.set_params(checkpoint=str(out / "checkpoint.pt"), verbose=True)
    print(f"training on {len(data)} images {data.image_shape} -> {out}", flush=True)
    try:
        est.fit(data, resume_from=resume_from,
                callback=lambda end: write_history(out / "history.csv", end.position.history))
    except KeyboardInterrupt:
        print(f"interrupted; continue with `medcne fit --resume {out}`")
        raise
    finish_run(out, est, data)
    return 0


def finish_run(out: Path, est, data) -> None:
    """Write model, embedding, metrics and map of a fitted estimator; print the summary."""
    from ..plot import save_map
    from ..runfolder import write_embedding, write_json

    write_history(out / "history.csv", est.history_)
    est.save(out / "model.pt")
    Z = est.embedding_
    write_embedding(out, Z, data.ids, data.labels, data.class_names)
    if data.labels is not None:
        from ..metrics import knn_accuracy, silhouette

        metrics = {"knn_accuracy": knn_accuracy(Z, data.labels), "silhouette": silhouette(Z, data.labels),
                   "n": len(data)}
        write_json(out / "metrics.json", metrics)
        print(f"kNN accuracy {metrics['knn_accuracy']:.1f}%  silhouette {metrics['silhouette']:.3f}")
    map_path = save_map(out / "map.png", Z[:, :2], data.labels, data.class_names,
                        title=f"t-SimCNE ({est.preset}) of {Path(str(data.source)).name}")
    print(f"map: {map_path}")
