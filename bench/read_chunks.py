"""Memory of commands that read a dataset chunk by chunk: chunks of 64 MB against 4,096 images.

``medcne info``, ``medcne convert``, the border colour of rotations, the
in-memory training store (``ImageSet.iter_chunks``) and the viewer's sprite
sheets read a dataset a chunk at a time. The chunk was 4,096 images whatever
their size (805 MB of 256 x 256 x 3 images; a sheet's worth of 64 px
thumbnails for the viewer); it is now ``READ_CHUNK_MB`` (64 MB) of images.
This script writes a store of BloodMNIST images resized to ``--size`` in a
temporary folder, then runs ``medcne info`` on it, ``medcne convert`` of it
(to a second store) and the viewer's sheets of it in child processes, each
with today's chunk and with 4,096 images (the baseline, by setting
``READ_CHUNK_MB`` in the child), sampling the peak RssAnon of each.

    PYTHONPATH=src .venv/bin/python bench/read_chunks.py --n 4500 --size 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlimit import measure  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bloodmnist28.npz"
RUN = "import sys, medcne.defaults as d; d.READ_CHUNK_MB = {mb}; from medcne.cli import main; sys.exit(main(sys.argv[1:]))"
SPRITES = ("import sys, medcne.defaults as d; d.READ_CHUNK_MB = {mb}; from pathlib import Path; "
           "from medcne.datasets import load_dataset; from medcne.viewer.sprites import write_sprites; "
           "write_sprites(load_dataset(sys.argv[1]).images, Path(sys.argv[2]), 64)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, default=4500, help="images (a seeded subset)")
    ap.add_argument("--size", type=int, default=256, help="side the images are resized to")
    args = ap.parse_args()
    from medcne.defaults import READ_CHUNK_MB, chunk_rows
    from medcne.device import machine_name

    per_image = args.size * args.size * 3
    old_mb = -(-4096 * per_image // 2**20)  # chunk_rows gives 4,096 images at this size
    assert chunk_rows(per_image) < 4096 and 4096 <= (old_mb << 20) // per_image < 4097
    with tempfile.TemporaryDirectory(prefix="medcne-read-chunks-") as tmp:
        store = Path(tmp) / "store"
        subprocess.run([sys.executable, "-m", "medcne", "convert", args.data, "--size", str(args.size),
                        "--subset", str(args.n), "--out", str(store)], check=True, capture_output=True)
        print(f"machine: {machine_name()}; load {os.getloadavg()[0]:.1f}; a store of {args.n:,} images of "
              f"{args.size} px ({args.n * per_image / 2**30:.2f} GB)")
        found = {}
        for command in ("info", "convert", "sprites"):
            for label, mb in (("4,096 images", old_mb), (f"{READ_CHUNK_MB} MB", READ_CHUNK_MB)):
                copy = Path(tmp) / "copy"
                shutil.rmtree(copy, ignore_errors=True)
                if command == "sprites":  # the viewer's sheets of 64 px thumbnails (4,096 a sheet)
                    argv = [sys.executable, "-c", SPRITES.format(mb=mb), str(store), str(copy)]
                else:
                    argv = [sys.executable, "-c", RUN.format(mb=mb), command, str(store)]
                    argv += ["--out", str(copy)] if command == "convert" else []
                r = found[command, mb] = measure(argv)
                assert r["exit"] == 0, r["tail"]
                name = "viewer sprites" if command == "sprites" else f"medcne {command}"
                print(f"{name:15s} chunks of {label:13s}: peak RssAnon {r['peak_anon_gb']:.2f} GB, "
                      f"{r['wall_s']:.1f} s")
            new, old = found[command, READ_CHUNK_MB], found[command, old_mb]
            print(f"  ratio: memory {new['peak_anon_gb'] / old['peak_anon_gb']:.2f}, time {new['wall_s'] / old['wall_s']:.2f}")


if __name__ == "__main__":
    main()
