"""`medcne embed RUN DATA --out FILE`: place new images into the map of a run.

The images go through the run's trained network without augmentation
(deterministic). The size, channels, window and axis default to those the
run read its own images with. ``FILE`` ends in ``.csv`` (x, y, label, id) or ``.npz``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..defaults import DEVICES
from ..errors import MedcneError, printable
from ..params import for_cli
from ..runs.outputs import claim_files, dataset_inputs
from .common import add_data_options, data_spec, held_run


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
    from ..runs import load_run_model, save_embedding_file

    # A finished run with a finite map, held (shared lock) while its record and model are read together:
    # a replacement of the run meanwhile stops naming this command, so the two are of one run.
    with held_run(run_dir) as run:
        trained, map_classes = run.params.get("data") or {}, run.class_names
        est = load_run_model(run_dir, device=args.device)
    spec = training_pixels(data_spec(args), trained, args.data)
    # The run's labels map, when inherited, renames before --merge-rare joins classes, as in fit.
    merge = spec.get("merge_rare") if trained.get("labels_map") and spec.get("labels_map") is None else None
    data = runs_classes(load_dataset(args.data, **{**spec, "merge_rare": None} if merge else spec), spec, trained)
    if merge:
        from ..datasets.labels import merge_rare

        data = merge_rare(data, merge)
    data = in_map_order(data, map_classes)
    for note in data.notes:  # skipped files, dropped alpha...: what `info` says of these data
        print(f"note: {for_cli(note)}")
    if note := channels_note(spec, trained, data, est):
        print(note)
    Z = est.transform(data)
    if note := shared_ids_note(run, data.ids, Z):
        print(note)
    save_embedding_file(out, Z, data.ids, data.labels, data.class_names, data.provenance, placed_into=run)
    return len(data)


def shared_ids_note(run, ids, Z) -> str | None:
    """A note when placed images bear ids of the map's images yet land elsewhere than those: other images
    under the same ids (an .npz without ``ids`` numbers its rows from 0, as the map's may), which
    ``evaluate --labels`` or ``propagate`` would take for the map's. The map's own images, placed again,
    land on their points and are not noted."""
    import numpy as np

    where = {i: k for k, i in enumerate(run.ids.tolist())}
    pairs = np.array([(k, where[i]) for k, i in enumerate(np.asarray(ids).tolist()) if i in where], np.int64)
    if not len(pairs):
        return None
    spread = float(np.ptp(run.embedding, axis=0).max()) or 1.0
    elsewhere = np.linalg.norm(Z[pairs[:, 0]] - run.embedding[pairs[:, 1]], axis=1) > 1e-3 * spread
    if not elsewhere.any():
        return None
    first = printable(str(ids[pairs[elsewhere][0, 0]]))
    return (f"note: {int(elsewhere.sum()):,} placed images bear the id of another image of the map (e.g. "
            f"{first!r}, placed elsewhere); give them ids of their own (an `ids` array, file names) before "
            "matching them with the map's (`evaluate --labels`, `propagate`)")


def runs_classes(data, spec: dict, trained: dict):
    """``data`` with the run's ``--labels-map`` applied when none was given, so that the placed images
    are labelled in the map's classes (a map that names none of their classes is left unapplied, with a
    note: these images come from other data). The run's ``--merge-rare`` is not repeated (it depends on
    the counts of the run's own images): a note says so."""
    from ..datasets.labels import labels_map, names_none, read_labels_map

    path, notes = trained.get("labels_map"), []
    if path and spec.get("labels_map") is None and data.class_names:
        if not Path(path).is_file():
            notes.append(f"the run's labels map {path} is gone, so these images keep their own class names; "
                         "give --labels-map FILE to rename or join them as the run did")
        else:
            mapping = read_labels_map(path)
            if not names_none(mapping, data.class_names):
                data = labels_map(data, path)
            else:
                notes.append(f"the run's labels map {Path(path).name} names none of these images' classes; "
                             "they keep their own class names")
    if trained.get("merge_rare") and spec.get("merge_rare") is None and data.class_names:
        notes.append(f"the run merged its rarest classes (--merge-rare {trained['merge_rare']}); these images "
                     "keep their own classes: give --labels-map FILE to join the same ones")
    return replace(data, notes=[*data.notes, *notes]) if notes else data


def in_map_order(data, names: list[str] | None):
    """``data`` with its classes numbered as the map's ``names``, so that a placed ``.npz``'s labels mean what
    they mean in the run's embedding.npz; classes the map lacks are numbered after them, with a note."""
    import numpy as np

    from ..datasets.files import listed

    if not data.class_names or not names:
        return data
    extra = [c for c in data.class_names if c not in names]
    merged = [*names, *extra]
    notes = [f"classes the map does not have: {listed([printable(c) for c in extra], ', ')}"] if extra else []
    if merged == list(data.class_names) and not notes:
        return data
    code = np.array([merged.index(c) for c in data.class_names], dtype=np.int64)
    labels = None if data.labels is None else np.where(data.labels >= 0, code[np.maximum(data.labels, 0)], data.labels)
    return replace(data, labels=labels, class_names=merged, notes=[*data.notes, *notes])


def channels_note(spec: dict, trained: dict, data, est) -> str | None:
    """A note when --channels differs from the run's, the images still fit the network (else transform
    refuses them), and the change made them unlike anything the network saw: grey images repeated to three
    channels for a colour network trained without grey views (``grayscale=False``). A network of one
    channel saw only grey images, and one trained with grey views saw grey repeated to three: no note."""
    given, recorded = spec.get("channels", "keep"), trained.get("channels")
    if recorded is None or given == recorded or not len(data) or data.image_shape[-1] != est.image_shape_[2]:
        return None
    if given != "rgb" or getattr(est, "grayscale", True):
        return None
    return (f"note: --channels {given} differs from the run's {recorded}; where it repeated grey images to three "
            "channels, they are placed as the network never saw them (it was trained without grey views)")


# Reader options that decide the pixels the network sees: the new images get the run's unless given.
# (The window and the axis apply only to scans: a run of CT slices may place a folder of PNG images.)
PIXEL_OPTIONS = {"size": None, "channels": "keep", "window": None, "axis": None}
SCAN_ONLY = {"window": ("dicom", "nifti"), "axis": ("nifti",)}


def training_pixels(spec: dict, trained: dict, data_path) -> dict:
    """``spec`` with the run's size, channels, window and axis where the command line gave none; a note
    when a given window or axis differs from the run's (the images are then placed as the network never
    saw them), and a refusal for another size (the network takes only images of its own size)."""
    from ..datasets import as_read_then
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
        elif name in ("window", "axis") and str(given) != str(recorded):  # channels: channels_note, once read
            print(f"note: --{name} {given} differs from the run's {recorded}; the images are placed as the "
                  "network never saw them during training")
    # Photos turned by their EXIF tag as the run's were (a run made before medcne turned them: as stored).
    spec.setdefault("upright", as_read_then(trained)["upright"])
    return spec
