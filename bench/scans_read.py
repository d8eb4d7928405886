"""Reading speed and peak memory of the DICOM and NIfTI readers, beside the plain library loop.

Writes a CT-like series (N slices of 512 x 512, int16, from pydicom's CT_small.dcm with new pixels)
and the same values as one NIfTI volume, then, each in a fresh process:

- ``dicom-floor``: ``pydicom.dcmread`` + ``pixel_array`` of every file, nothing kept (the least any reader pays);
- ``dicom``: ``medcne.datasets.load_dataset(folder, window="soft-tissue")``;
- ``nifti-floor``: ``nibabel.load`` + the volume's values as float32;
- ``nifti``: ``load_dataset(volume.nii.gz, window="soft-tissue")`` (axial slices).

Prints slices per second, the ratio to the floor measured in the same run, and the peak RSS of
each process beside the bytes of the result (N x 512 x 512 uint8).

    PYTHONPATH=src python bench/scans_read.py --slices 200
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 512


def write_data(folder: Path, n: int) -> tuple[Path, Path]:
    import nibabel as nib
    import pydicom
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    body = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) < (SIZE * 0.4) ** 2
    volume = np.zeros((SIZE, SIZE, n), np.int16)
    series = folder / "series"
    series.mkdir()
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    for k in range(n):
        raw = np.where(body, 1024 + 40 + rng.normal(0, 30, (SIZE, SIZE)), 24).astype(np.int16)
        volume[:, :, k] = raw - 1024
        ds = template.copy()
        ds.Rows = ds.Columns = SIZE
        ds.InstanceNumber = k + 1
        ds.PixelData = raw.tobytes()
        ds.save_as(series / f"IM{k:05d}.dcm")
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / "volume.nii.gz"))
    return series, folder / "volume.nii.gz"


def measure(kind: str, path: str) -> dict:
    start = time.perf_counter()
    if kind == "dicom-floor":
        import pydicom

        n = 0
        for f in sorted(Path(path).iterdir()):
            n += pydicom.dcmread(f).pixel_array.ndim == 2
    elif kind == "nifti-floor":
        import nibabel as nib

        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        n = data.shape[2]
    else:
        from medcne.datasets import load_dataset

        n = len(load_dataset(path, window="soft-tissue"))
    seconds = time.perf_counter() - start
    return {"kind": kind, "slices": n, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--slices", type=int, default=200)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        series, volume = write_data(Path(tmp), args.slices)
        results = {}
        for kind, path in [("dicom-floor", series), ("dicom", series), ("nifti-floor", volume), ("nifti", volume)]:
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], check=True,
                                 capture_output=True, text=True).stdout
            results[kind] = json.loads(out.strip().splitlines()[-1])
    result_mb = args.slices * SIZE * SIZE / 2**20
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"{args.slices} slices of {SIZE}x{SIZE}; result {result_mb:.0f} MB uint8")
    for kind, r in results.items():
        floor = results[kind.split("-")[0] + "-floor"]
        print(f"{kind:12s} {r['slices'] / r['seconds']:8.1f} slices/s  x{r['seconds'] / floor['seconds']:.2f} of floor  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
