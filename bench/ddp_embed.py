"""The final map of a run of several processes: sharded and gathered, or rank 0 alone?

Starts ``--nproc`` CPU processes over gloo (one thread each, as torchrun sets
them) and times, on the same model and images, in the same run:

* **sharded**: :func:`medcne.train.distributed.embed_sharded`: each rank embeds
  1/W of the images, then every rank receives all of them (what ``fit`` does);
* **rank 0 alone**: rank 0 embeds every image while the others wait, then
  broadcasts the map (the alternative the issue asked to measure).

Best of ``--repeats`` for each; the ratio is rank-0-alone / sharded (above 1:
sharding is faster). On GPUs each rank has its own device, so the sharded
compute is W times smaller; on a CPU the processes share the cores.

    PYTHONPATH=src .venv/bin/python bench/ddp_embed.py --n 2000 --width 16
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import time

import torch

from medcne.device import machine_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, args, results) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from medcne.datasets import load_sample
    from medcne.models import TSimCNENet, embed
    from medcne.train import distributed

    w = distributed.setup("cpu")
    images = load_sample().images[: args.n]
    model = TSimCNENet("resnet18", 3, args.width, True, 2, torch.Generator().manual_seed(0)).eval()
    dev = torch.device("cpu")
    times = {"sharded": [], "rank 0 alone": []}
    for _ in range(args.repeats):
        dist.barrier()
        t0 = time.perf_counter()
        distributed.embed_sharded(model, images, dev, w)
        times["sharded"].append(time.perf_counter() - t0)
        dist.barrier()
        t0 = time.perf_counter()
        box = [embed(model, images, dev) if w.is_main else None]
        dist.broadcast_object_list(box, src=0)
        times["rank 0 alone"].append(time.perf_counter() - t0)
    if w.is_main:
        results.update({k: min(v) for k, v in times.items()})
    distributed.teardown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        results = manager.dict()
        port = _free_port()
        procs = [ctx.Process(target=_worker, args=(r, args.nproc, port, args, results)) for r in range(args.nproc)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        results = dict(results)
    print(f"machine: {machine_name()}, "
          f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}")
    print(f"{args.nproc} gloo processes x 1 thread, {args.n} images 28x28, ResNet18 width {args.width}, "
          f"best of {args.repeats}")
    for name, seconds in results.items():
        print(f"  {name:>13}: {seconds:.2f} s ({args.n / seconds:,.0f} images/s)")
    print(f"  ratio rank-0-alone / sharded: {results['rank 0 alone'] / results['sharded']:.2f}")


if __name__ == "__main__":
    main()
