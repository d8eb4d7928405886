"""Placing images in the map on a CPU: images per forward pass, 256 against 1,024.

``models.embed`` (the end of ``fit``, ``medcne embed``, qc's features, the
monitor's kNN) runs the network a chunk of images at a time without
gradients; the activations of a chunk are its memory. It ran 1,024 images per
pass on every device; on a CPU it now runs ``embed_chunk`` (256). Each chunk
size in its own process: a ResNet-18 t-SimCNE network (random weights; the
cost does not depend on them) embedding ``2 x 1,024`` random images of
``--size`` px, sampling the peak RssAnon.

    PYTHONPATH=src .venv/bin/python bench/embed_chunk.py --size 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlimit import peak_growth  # noqa: E402

N = 2048


def child(size: int, chunk: int) -> dict:
    import numpy as np
    import torch

    from medcne.models import TSimCNENet, embed, use_small_stem

    net = TSimCNENet(small_stem=use_small_stem(size)).eval()
    images = np.random.default_rng(0).integers(0, 256, (N, size, size, 3), dtype=np.uint8)
    embed(net, images[:8], torch.device("cpu"), chunk=8)  # first-call costs outside the measure
    _, growth, seconds = peak_growth(lambda: embed(net, images, torch.device("cpu"), chunk=chunk))
    return {"growth_gb": growth / 2**30, "ms_per_image": 1000 * seconds / N, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--child", type=int, help="(internal) the chunk to measure")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.size, args.child)))
        return
    import torch

    from medcne.device import machine_name
    from medcne.models import embed_chunk

    print(f"machine: {machine_name()}; load {os.getloadavg()[0]:.1f}; {N} images of {args.size} px, ResNet-18")
    found = {}
    for chunk in (1024, embed_chunk(torch.device("cpu"))):
        out = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--child", str(chunk)],
                             capture_output=True, text=True, check=True).stdout
        r = found[chunk] = json.loads(out.strip().splitlines()[-1])
        print(f"{chunk:5d} images per pass: peak RssAnon growth {r['growth_gb']:.2f} GB, "
              f"{r['ms_per_image']:.2f} ms per image ({r['threads']} threads)")
    new, old = found[embed_chunk(torch.device("cpu"))], found[1024]
    print(f"ratio: memory {new['growth_gb'] / old['growth_gb']:.2f}, time {new['ms_per_image'] / old['ms_per_image']:.2f}")


if __name__ == "__main__":
    main()
