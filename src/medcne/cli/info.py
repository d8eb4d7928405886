"""`medcne info DATA`: what a user checks first about a dataset; with --verify, whether a store is intact."""

from __future__ import annotations

from pathlib import Path

from ..datasets.summary import describe
from ..errors import MedcneError
from .common import add_data_options, load_from_args

# Damaged parts named in full in the one line of --verify; the others are counted.
LISTED_PARTS = 5


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="summarise a dataset: size, classes, problems")
    p.add_argument("data", help="a .npz, a folder of class folders, a .csv of paths, a PCam *_x.h5, "
                   "a folder of DICOM files or of NIfTI volumes, a store of `medcne convert`")
    p.add_argument("--verify", action="store_true",
                   help="a store: first hash every pixel of every part (it reads the whole store) and name the "
                   "damaged parts (exit status 2)")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.verify:
        verify(Path(args.data))
    print(describe(load_from_args(args.data, args)))
    return 0


def verify(path: Path) -> None:
    """Hash every pixel of the store at ``path``; one line naming the damaged parts and what can be done."""
    from ..datasets.load import check_data_path
    from ..datasets.memory import format_bytes
    from ..datasets.store import HEADER_BYTES, is_store, read_manifest
    from ..datasets.store_read import verify_store

    if not is_store(check_data_path(path)):
        raise MedcneError(f"{path}: not a medcne store, so --verify has no checksums to check (only a store of "
                          "`medcne convert DATA --out STORE` has them); leave out --verify")
    parts = [p for p in read_manifest(path)["parts"] if int(p.get("n", 0)) > 0]
    pixels = sum(int(p.get("images_bytes", HEADER_BYTES)) - HEADER_BYTES for p in parts)
    print(f"{path}: hashing every pixel of its {len(parts)} part(s), {format_bytes(pixels)}", flush=True)
    damaged = verify_store(path)
    if damaged:
        listed = "; ".join(f"part {e.part.get('name')!r} ({e.part.get('dir')}): {e.reason}"
                           for e in damaged[:LISTED_PARTS])
        more = f"; and {len(damaged) - LISTED_PARTS} more" if len(damaged) > LISTED_PARTS else ""
        raise MedcneError(
            f"{path}: {len(damaged)} of its {len(parts)} part(s) damaged: {listed}{more}; the other parts are "
            "intact. No command mends a part in place: copy the damaged part folder(s) back from a backup of "
            "the store, else convert the data again into a new store (the first part's data with "
            "`medcne convert DATA --out NEW`, then each other part's with `--append --part NAME`, in this "
            "store's order and names, so that the ids stay the same)")
    print(f"{path}: intact: every pixel of its {len(parts)} part(s) matches the manifest's checksums")
