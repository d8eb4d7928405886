"""`medcne augment-preview DATA`: see what an augmentation preset does to your images.

Draws a grid: each row one original image followed by its random views, so a
user can check by eye that crops keep the object, rotations suit the data and
the fill colour of the `rotate` preset blends with the background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..defaults import PRESET, PRESETS
from ..errors import MedcneError
from ..io import atomic_write
from ..runs.outputs import check_file, claim_files, dataset_inputs, refuse_inputs
from .common import add_data_options, load_from_args

MAX_PANELS = 1000  # images x (views + 1) in one figure


def add_parser(sub) -> None:
    p = sub.add_parser(
        "augment-preview", help="draw random augmented views of a few images (check a preset)",
        description="Draw a grid: each row one original image, then N random views of it.",
    )
    p.add_argument("data", help="a .npz, a folder of class folders, a .csv of paths, or a PCam *_x.h5")
    p.add_argument("--preset", default=PRESET, help=f"one of {', '.join(PRESETS)} (default {PRESET})")
    p.add_argument("--out", default="views.png", help="the figure to write: .png, .pdf or .svg (default: views.png)")
    p.add_argument("--overwrite", action="store_true", help="replace --out when medcne wrote it (never another file)")
    p.add_argument("--n-images", type=int, default=6, help="rows: images to show (default 6)")
    p.add_argument("--n-views", type=int, default=8, help="views per image (default 8)")
    p.add_argument("--fill", default="border",
                   help="colour of corners uncovered by rotations: 'border' (the dataset's mean "
                        "border colour, default), 'black', or values in [0, 1] such as 0.9,0.8,0.85")
    p.add_argument("--no-crop", action="store_true", help="no random resized crop")
    p.add_argument("--no-jitter", action="store_true", help="no colour jitter")
    p.add_argument("--no-grayscale", action="store_true", help="no random grayscale")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    for name in ("n_images", "n_views"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise MedcneError(f"{flag} must be at least 1; got {getattr(args, name)}")
    panels = args.n_images * (args.n_views + 1)
    if panels > MAX_PANELS:  # one matplotlib axes each: 240 x 9 panels took 100 s to draw
        raise MedcneError(f"--n-images {args.n_images} x --n-views {args.n_views} make {panels:,} panels with the "
                          f"originals; a preview draws at most {MAX_PANELS:,}: show fewer images or views")
    fill_spec = _parse_fill(args.fill)
    fmt = Path(args.out).suffix.lower()
    if fmt not in (".png", ".pdf", ".svg"):  # PNG data under any name before
        raise MedcneError(f"--out {args.out}: the views are drawn as .png, .pdf or .svg; give a name ending in one")
    check_file(args.out, args.overwrite)  # before reading a possibly large dataset
    refuse_inputs(args.out, dataset_inputs(args.data))
    # Check the preset before reading a possibly large dataset.
    from ..augment import Augmenter, augmenter_for

    switches = dict(crop=not args.no_crop, jitter=not args.no_jitter, grayscale=not args.no_grayscale)
    Augmenter(args.preset, **switches)
    data = load_from_args(args.data, args)
    augmenter = augmenter_for(data.images, args.preset, fill=fill_spec, **switches)
    fill = augmenter.config.fill
    rows = pick_images(data.labels, len(data), args.n_images, args.seed)
    originals = np.asarray(data.images[rows])
    views = make_views(originals, augmenter, args.n_views, args.seed)
    names = None if data.labels is None else [data.class_names[i] for i in data.labels[rows]]
    title = f"{_short(data.source)}: preset {args.preset}" + "".join(
        f", no {part}" for part in ("crop", "jitter", "grayscale") if getattr(args, f"no_{part}")
    )
    if fill is not None:
        title += ", fill (" + ", ".join(f"{v:.2f}" for v in fill) + ")"
    fig = draw_preview(originals, views, names, title)
    with claim_files(args.out, args.overwrite, inputs=dataset_inputs(args.data)):
        atomic_write(args.out, lambda p: fig.savefig(p, format=fmt[1:], dpi=100))
    print(f"wrote {args.out}: {len(rows)} images x {args.n_views} views, preset {args.preset}")
    return 0


def _parse_fill(text: str):
    if text in ("border", "black"):
        return None if text == "black" else "border"
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 3):  # the values themselves are checked by the augmentations' own rule
        raise MedcneError(f"--fill must be 'border', 'black' or 1 or 3 comma-separated numbers in [0, 1] "
                          f"(one per channel); got {text!r}")
    return values


def _short(source: str) -> str:
    return source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def pick_images(labels: np.ndarray | None, n_total: int, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` images: one per class in turn (random within a class) when labeled."""
    rng = np.random.default_rng(seed)
    n = min(n, n_total)
    if labels is None:
        return np.sort(rng.choice(n_total, size=n, replace=False))
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        picked += [int(pool[depth]) for pool in pools if depth < len(pool)][: n - len(picked)]
        depth += 1
    return np.array(picked)


def make_views(images: np.ndarray, augmenter, n_views: int, seed: int) -> np.ndarray:
    """(n_views, N, H, W, C) float views in [0, 1] of N x H x W x C uint8 images."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    g = torch.Generator().manual_seed(seed)
    views = torch.stack([augmenter(x, g) for _ in range(n_views)])
    return views.permute(0, 1, 3, 4, 2).numpy()


def draw_preview(originals: np.ndarray, views: np.ndarray, names, title: str):
    """A figure with one row per image: the original, then its views.

    Parameters
    ----------
    originals : ndarray (N, H, W, C) uint8
    views : ndarray (V, N, H, W, C) float in [0, 1]
    names : list of str or None
        Row labels (class names).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    n_views, n = views.shape[:2]
    cell = 1.1
    fig = Figure(figsize=(cell * (n_views + 1) + 0.4, cell * n + 0.6), layout="constrained")
    axes = fig.subplots(n, n_views + 1, squeeze=False)
    gray = originals.shape[-1] == 1
    for i in range(n):
        images = [originals[i] / 255.0] + [views[v, i] for v in range(n_views)]
        for j, (ax, img) in enumerate(zip(axes[i], images, strict=True)):
            ax.imshow(img[..., 0] if gray else img, cmap="gray" if gray else None,
                      vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"view {j}", fontsize=8)
        if names is not None:
            axes[i, 0].set_ylabel(names[i], fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig
