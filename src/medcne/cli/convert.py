"""`medcne convert DATA --out STORE`: copy any readable dataset into an on-disk image store.

The images are read and written block by block (never all in memory at once
when the reader is lazy, as PCam's and a store's are); labels, ids and
provenance columns come along. ``--append`` adds the data as a new part of an
existing store (its ids get the part's name in front, so that ids stay unique);
a part of the same name already there is skipped, so a rerun after an
interruption resumes; a store whose parts are damaged is refused before
anything is written. The default name of a part read from DICOM files is a
stable code of the file or folder name unless --keep-phi (folders are often
named after a patient ID).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import MedcneError
from .common import add_data_options, load_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="copy a dataset into an on-disk image store (for data larger than memory)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="any dataset `medcne info` reads")
    p.add_argument("--out", required=True, help="the store folder to create (or to add to, with --append)")
    p.add_argument("--append", action="store_true", help="add the data to an existing store as a new part")
    p.add_argument("--part", help="name of the new part (default: the dataset's file or folder name; "
                                  "for DICOM data a code of it, unless --keep-phi)")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..datasets.store import check_store_folder, is_store, read_manifest
    from ..runs.outputs import dataset_inputs, refuse_inputs

    out = Path(args.out)
    refuse_inputs(out, dataset_inputs(args.data))  # the rule of every writer: a CSV list's folder is an input too
    if is_store(out):
        read_manifest(out)  # a damaged store says so now, with or without --append
    if is_store(out) and not args.append:
        raise MedcneError(f"--out {out} is already a store; pass --append to add to it or choose another folder")
    if args.append and out.exists() and not is_store(out):
        raise MedcneError(f"--out {out} is not a medcne store, so --append cannot add to it; choose a store folder")
    if args.append and is_store(out):
        _check_intact(out)
    check_store_folder(out, f"--out {out}")
    if is_store(Path(args.data)):  # a copy would give a damaged part fresh checksums: every pixel is checked first
        from .info import verify

        verify(Path(args.data))
    data = load_from_args(args.data, args)
    name = args.part or _default_part(args)
    created = not out.exists()
    try:
        return _write(out, data, name)
    except BaseException:
        if created and out.is_dir():
            shutil.rmtree(out)  # made by this command, and no part was committed to it
        raise


def _check_intact(out: Path) -> None:
    """Refuse, before the data are read, to append to a store whose parts are damaged (missing,
    truncated or changed): the check the store's reader and writer make."""
    from ..datasets.store import check_parts, read_manifest

    check_parts(out, read_manifest(out))


def _check_new_ids(out: Path, name: str, ids: np.ndarray, parts: list[dict]) -> None:
    """Refuse a part whose ids (its name in front) are ids of the store's ``parts`` already: the first part
    keeps its own ids, so a folder of class folders and an appended folder named like one of them can
    collide. The ids only: the writer has checked the parts."""
    from ..datasets.store_read import read_metas

    taken = {i for meta in read_metas(out, parts) for i in meta["ids"].tolist()}
    clash = next((i for i in ids.tolist() if i in taken), None)
    if clash is not None:
        raise MedcneError(f"--part {name}: the new part's id {clash!r} is an id of {out} already (ids must be "
                          "unique: label CSVs, the viewer and curation match images by id); give the part "
                          "another name with --part")


def _default_part(args) -> str:
    """The data's file or folder name; for DICOM data without --keep-phi, its stable code (as in the ids)."""
    from ..datasets.load import detect_format
    from ..datasets.scanfiles import short_hash

    name = Path(args.data).name
    fmt = detect_format(Path(args.data)) if args.format == "auto" else args.format
    return short_hash(name, "x-") if fmt == "dicom" and not args.keep_phi else name


def _write(out: Path, data, name: str) -> int:
    from ..datasets.store_write import StoreWriter

    with StoreWriter(out, data.image_shape) as writer:
        if writer.has_part(name):
            if writer.part_size(name) != len(data):  # not a rerun of the command that added it
                raise MedcneError(f"{out}: its part {name!r} holds {writer.part_size(name):,} images, these data "
                                  f"{len(data):,}: they are other data; give them another --part name")
            print(f"{out}: already holds part {name!r} ({writer.part_size(name):,} images); nothing to add")
            return 0
        labels = None if data.labels is None else [data.class_names[i] for i in data.labels]
        blocks = (images for _, images in data.iter_chunks())
        # Ids are unique within one source (often its row numbers): a part added later gets its name in front.
        ids = data.ids if len(writer) == 0 else np.char.add(f"{name}/", data.ids.astype(str))
        if len(writer):
            _check_new_ids(out, name, ids, writer.manifest["parts"])
        n = writer.add_part(name, blocks, labels=labels, ids=ids, provenance=data.provenance,
                           class_names=data.class_names)
        total, parts = len(writer), len(writer.manifest["parts"])
    print(f"wrote {n:,} images as part {name!r} to {out} (now {total:,} images in {parts} part(s))")
    return 0
