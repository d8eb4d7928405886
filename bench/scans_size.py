"""Memory of reading scans with ``size``: each slice resized as it is read, against all held at full resolution.

The DICOM and NIfTI readers once kept every slice at its full resolution
(as uint8) until the end, then resized them all to ``size``: a folder of
100 CT volumes of 512 x 512 x 300 held 7.9 GB to give 123 MB of 64 px
slices. They now resize each slice as they read it. This script writes a
CT-like series of ``--slices`` files of 512 x 512 and ``--volumes`` copies
of the same values as a NIfTI volume (bench/scans_read.py's data), then reads
each with ``load_dataset(..., size=--size)`` in child processes, sampling the
peak RssAnon: today's readers, and the same with the per-slice resize turned
off in the readers (the baseline: the final stack resizes, as before).

    PYTHONPATH=src .venv/bin/python bench/scans_size.py --slices 200 --volumes 8 --size 32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlimit import peak_growth  # noqa: E402
from scans_read import SIZE, write_data  # noqa: E402


def child(path: str, size: int, held: bool) -> dict:
    import nibabel  # noqa: F401  (imports are not the reader's memory)
    import pydicom  # noqa: F401

    from medcne.datasets import dicom, load_dataset, nifti

    if held:  # the readers keep full-resolution slices; stack_images resizes them at the end
        dicom.sized = nifti.sized = lambda img, size: img
    data, growth, seconds = peak_growth(lambda: load_dataset(path, size=size, window="soft-tissue"))
    return {"slices": len(data), "growth_gb": growth / 2**30, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        path, size, held = args.child
        print(json.dumps(child(path, int(size), held == "held")))
        return
    from medcne.device import machine_name

    with tempfile.TemporaryDirectory(prefix="medcne-scans-size-") as tmp:
        series, volume = write_data(Path(tmp), args.slices)
        volumes = Path(tmp) / "volumes"
        volumes.mkdir()
        for k in range(args.volumes):
            shutil.copy(volume, volumes / f"v{k:02d}.nii.gz")
        print(f"machine: {machine_name()}; load {os.getloadavg()[0]:.1f}; {args.slices} slices of {SIZE} px "
              f"as DICOM files and as each of {args.volumes} NIfTI volumes, read with size {args.size}")
        for name, path, full in (("DICOM", series, args.slices), ("NIfTI", volumes, args.slices * args.volumes)):
            found = {}
            for mode in ("held", "resized"):
                out = subprocess.run([sys.executable, __file__, "--child", str(path), str(args.size), mode],
                                     check=True, capture_output=True, text=True).stdout
                r = found[mode] = json.loads(out.strip().splitlines()[-1])
                print(f"{name} {mode:8s}: {r['slices']:,} slices, peak RssAnon growth {r['growth_gb']:.3f} GB, "
                      f"{r['seconds']:.1f} s (full-resolution slices: {full * SIZE * SIZE / 2**30:.3f} GB)")
            print(f"  ratio resized / held: memory {found['resized']['growth_gb'] / found['held']['growth_gb']:.2f}, "
                  f"time {found['resized']['seconds'] / found['held']['seconds']:.2f}")


if __name__ == "__main__":
    main()
