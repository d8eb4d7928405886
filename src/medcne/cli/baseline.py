"""`medcne baseline DATA --method M --out RUN`: a baseline map as a run folder."""

from __future__ import annotations

from ..defaults import BASELINES, DEVICES, PAPER, PRESET, PRESETS, SIMCLR_EPOCHS
from ..errors import MedcneError
from ..params import for_cli
from ..runfiles import BASELINE_FILES
from .common import add_data_options, data_spec


def add_parser(sub) -> None:
    p = sub.add_parser(
        "baseline", help="a baseline map (t-SNE of pixels / ImageNet ResNet / SimCLR features, UMAP) as a run folder"
    )
    p.add_argument("data", help="a dataset, as for `medcne info`")
    p.add_argument("--method", required=True, choices=BASELINES, help="the baseline to compute")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    p.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    p.add_argument("--jobs", type=int, help="t-SNE threads (default: all cores)")
    g = p.add_argument_group("ImageNet ResNet (tsne-resnet18, tsne-resnet152)")
    g.add_argument("--weights", metavar="FILE", help="torchvision ImageNet weights file (default: the torch cache)")
    g.add_argument("--download", action="store_true",
                   help="fetch missing weights from download.pytorch.org into the torch cache")
    g = p.add_argument_group("SimCLR (tsne-simclr)")
    g.add_argument("--epochs", type=int, default=SIMCLR_EPOCHS,
                   help=f"SimCLR training epochs (default {SIMCLR_EPOCHS}, as the paper)")
    g.add_argument("--batch-size", type=int, default=PAPER["batch_size"],
                   help=f"images per SimCLR batch (default {PAPER['batch_size']}, as the paper)")
    g.add_argument("--width", type=int, default=PAPER["width"],
                   help=f"backbone base channels (default {PAPER['width']}, as the paper)")
    g.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to compute features and train SimCLR (auto: a GPU when there is one)")
    g.add_argument("--preset", choices=PRESETS, help=f"SimCLR's augmentations (default {PRESET}; the paper also rotate)")
    g.add_argument("--no-crop", action="store_true", help="ablation: no random resized crop")
    g.add_argument("--no-jitter", action="store_true", help="ablation: no colour jitter")
    g.add_argument("--no-grayscale", action="store_true", help="ablation: no random grayscale")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..runs import format_metrics, make_baseline

    options = dict(seed=args.seed, n_jobs=args.jobs, download=args.download)
    if args.weights:
        options["weights"] = args.weights
    augment = dict(crop=not args.no_crop, jitter=not args.no_jitter, grayscale=not args.no_grayscale)
    if args.method == "tsne-simclr":
        options["simclr"] = dict(epochs=args.epochs, batch_size=args.batch_size, width=args.width,
                                 device=args.device, preset=args.preset or PRESET, **augment)
    elif args.preset or not all(augment.values()):
        raise MedcneError(f"--preset and --no-crop/--no-jitter/--no-grayscale apply to --method tsne-simclr only; "
                          f"drop them for {args.method}")
    result = make_baseline(args.data, args.method, args.out, data_spec(args), force=args.force, **options)
    print(f"wrote {result.path}/ ({', '.join(BASELINE_FILES)})")
    print(for_cli(format_metrics(str(result.path), result.metrics)))  # its notes name the options
    return 0
