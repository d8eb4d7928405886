"""Processes for the distributed tests: real gloo process groups on the CPU, with a deadline.

:func:`run_ranks` starts ``world`` processes (spawned, so each imports torch
afresh like a torchrun worker), each joining the group through
:func:`medcne.train.distributed.setup` from the environment variables torchrun
would set, then running the named jobs of this module and saving what they
return to ``out/rank{r}.pt`` for the test to compare. A process that does not
end within the deadline is killed and the test fails instead of hanging.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import shutil
import socket
import traceback
from functools import partial
from pathlib import Path

import numpy as np
import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int) -> dict:
    """The environment torchrun gives worker ``rank`` (one machine)."""
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def run_ranks(jobs: list[str], out: Path, world: int = 2, deadline: float = 120.0) -> list[dict]:
    """Run the ``jobs`` (names of functions below) in ``world`` processes; their results, by rank."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(r, world, port, jobs, str(out))) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(deadline)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    errors = [(out / f"rank{r}.err").read_text() for r in range(world) if (out / f"rank{r}.err").exists()]
    assert not alive and not errors, errors or f"ranks still running after {deadline} s"
    assert [p.exitcode for p in procs] == [0] * world
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _entry(rank: int, world: int, port: int, jobs: list[str], out: str) -> None:
    os.environ.update(torchrun_env(rank, world, port))
    torch.set_num_threads(1)
    from medcne.train import distributed

    try:
        distributed.setup("cpu", timeout_s=60)
        results = {job: globals()[job](rank, world, Path(out)) for job in jobs}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    except BaseException:
        (Path(out) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        distributed.teardown()


# -- jobs ---------------------------------------------------------------------------------
GLOBAL_BATCH = 8
SYNCBN_BATCH = 16


def rank_rows(rank: int, world: int, global_batch: int = GLOBAL_BATCH) -> torch.Tensor:
    """Rows of a (2G, ...) batch (first views, then second views) that are rank ``rank``'s."""
    b = global_batch // world
    mine = torch.arange(rank * b, (rank + 1) * b)
    return torch.cat([mine, mine + global_batch])


def tiny_net(out_dim: int = 8, seed: int = 0, width: int = 2):
    from medcne.models import TSimCNENet

    return TSimCNENet("resnet18", 3, width, True, out_dim, torch.Generator().manual_seed(seed))


def gather(rank: int, world: int, out: Path) -> dict:
    """Loss and gradients of one process on the global batch, and of this rank's share gathered."""
    from medcne.losses import cauchy_infonce, cosine_infonce
    from medcne.train import Stage
    from medcne.train.distributed import gather_views, replicate
    from medcne.train.loop import contrastive_step

    model = tiny_net().eval()  # BatchNorm from running statistics: the gather and gradients alone
    views = torch.rand(2 * GLOBAL_BATCH, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    results = {}
    for name, loss_fn in (("cauchy", cauchy_infonce), ("cosine", cosine_infonce)):
        one = copy.deepcopy(model)
        loss_one = contrastive_step(one, views, loss_fn)
        loss_one.backward()
        mine = copy.deepcopy(model)
        replica = replicate(mine, Stage("s", 1, 0.1))  # kept: its hooks average the gradients
        gathered = gather_views(replica(views[rank_rows(rank, world)]))
        loss = loss_fn(gathered)
        loss.backward()
        results[name] = {
            "loss_one": loss_one.item(), "loss": loss.item(),
            "z_one": one(views).detach(), "z_gathered": gathered.detach(),
            "grads_one": {k: p.grad.clone() for k, p in one.named_parameters()},
            "grads": {k: p.grad.clone() for k, p in mine.named_parameters()},
        }
    return results


class SlicedViews:
    """Test-only augmentation: the uniforms of the whole global batch from one stream, this
    rank's rows of them. With the same stream on every rank, rank r's views are exactly the
    views one process makes of the same images (the real runs give each rank its own stream)."""

    def __init__(self, augmenter, rank: int, world: int, global_batch: int = GLOBAL_BATCH):
        self.aug, self.rows = augmenter, rank_rows(rank, world, global_batch)
        self.global_batch = global_batch

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from medcne.augment.sampling import draw_uniforms

        u = draw_uniforms(self.aug.config, 2 * self.global_batch, generator, x.device)[self.rows]
        return self.aug.views_from_uniforms(x, u, *self.aug.constants(x))


def syncbn_training(rank: int, world: int, sync_bn: bool = True, device: str = "cpu",
                    precision: str = "fp32") -> dict:
    """Weights after three stages (12 steps) of ``world`` processes on a global batch of 16.

    A setting where training is not chaotic: one process on 1 or 2 threads (which
    only reorders float sums) ends within ~1e-5 of itself. With stage 2's N(0, 1)
    head, or 8 px images, such reorderings grow to tens of percent in a few steps,
    and no comparison to float tolerance could hold.
    """
    from medcne.augment import Augmenter
    from medcne.datasets import from_array
    from medcne.losses import cauchy_infonce
    from medcne.train import Generators, ImageStore, train, tsimcne_stages
    from medcne.train.distributed import convert_sync_batchnorm, gather_views, replicate

    dev = torch.device(device)
    images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    store = ImageStore(from_array(images), dev)
    gens = Generators.from_rng(np.random.default_rng(0), dev)  # the same stream everywhere
    model = tiny_net(16, seed=2, width=4)
    model.amp_dtype = torch.bfloat16 if precision == "bf16" else None  # the backbone's autocast, as fit sets it
    stages = tsimcne_stages((1, 1, 1), lr=0.01, dim=2, warmup=(0, 0, 0), stage3_lr_factor=0.5,
                            head_init="uniform")
    extra = {}
    if world > 1:
        if sync_bn:
            model = convert_sync_batchnorm(model, dev.type)
        extra = dict(gather=gather_views, shard=(rank, world),
                     replicate=partial(replicate, broadcast_buffers=not sync_bn))
    augment = SlicedViews(Augmenter("rot90", engine="torch"), rank, world, SYNCBN_BATCH)
    pos = train(model, store, stages, batch_size=SYNCBN_BATCH, augment=augment, loss_fn=cauchy_infonce,
                generators=gens, progress=False, **extra)
    return {"state": {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()},
            "loss": [r["loss"] for r in pos.history], "amp_dtype": str(model.amp_dtype),
            "bn": sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})}


def syncbn(rank: int, world: int, out: Path) -> dict:
    return {"synced": syncbn_training(rank, world, True), "unsynced": syncbn_training(rank, world, False)}


def syncbn_cuda(rank: int, world: int, out: Path) -> dict:
    """As :func:`syncbn` on one GPU shared by both processes (gloo moves CUDA tensors through the
    host), with the bf16 backbone of a GPU run: the synced BatchNorm CUDA uses, DDP with
    device_ids and the gather on CUDA tensors."""
    return {"synced": syncbn_training(rank, world, True, "cuda", "bf16"),
            "unsynced": syncbn_training(rank, world, False, "cuda", "bf16")}


def syncbn_compiles(rank: int, world: int, out: Path) -> dict:
    """The synced backbone under torch._dynamo.explain with a real group of ``world``, and its
    compiled forward and backward (aot_eager: the traced graphs, without code generation) against eager."""
    from medcne.train.distributed import convert_sync_batchnorm

    backbone = convert_sync_batchnorm(tiny_net(width=2), "cuda").backbone.train()
    x = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(rank))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(copy.deepcopy(backbone))(x)
    eager, compiled = copy.deepcopy(backbone), copy.deepcopy(backbone)
    fn = torch.compile(compiled, backend="aot_eager", fullgraph=True)
    a, b = eager(x), fn(x)
    a.square().sum().backward()
    b.square().sum().backward()
    grads = [(p.grad - q.grad).abs().max() for p, q in zip(eager.parameters(), compiled.parameters(), strict=True)]
    return {"graph_count": explained.graph_count, "graph_break_count": explained.graph_break_count,
            "break_reasons": [str(r.reason)[:300] for r in explained.break_reasons],
            "max_difference": float((a - b).abs().max()), "grad_difference": float(max(grads))}


class Stop(Exception):
    pass


def resume_params() -> dict:
    return dict(epochs=(2, 1, 1), warmup=(1, 0, 0), stage3_lr_factor=0.1, batch_size=16, width=4,
                device="cpu", random_state=0, verbose=False)


def labelled_images(n: int = 48, size: int = 16):
    from medcne.datasets import from_array

    labels = np.arange(n) % 3
    rng = np.random.default_rng(0)
    images = rng.integers(0, 100, (n, size, size, 3)) + 60 * labels[:, None, None, None]
    return from_array(images.astype(np.uint8), labels)


def resume(rank: int, world: int, out: Path) -> dict:
    """An uninterrupted fit, and one stopped after epoch 1 and resumed from its checkpoint."""
    import torch.distributed as dist

    from medcne.estimator import TSimCNE

    data = labelled_images()
    full = TSimCNE(**resume_params()).fit(data)
    ckpt = out / "checkpoint.pt"

    def stop_after_one(end):
        if end.position.stage == 0 and end.position.epoch == 1:
            raise Stop

    try:
        TSimCNE(**resume_params(), checkpoint=ckpt, checkpoint_minutes=0).fit(data, callback=stop_after_one)
    except Stop:
        pass
    if rank == 0:
        shutil.copy(ckpt, out / "checkpoint-epoch1.pt")
    dist.barrier()  # rank 0 has written the checkpoint before anyone reads it
    resumed = TSimCNE(**resume_params(), checkpoint=ckpt).fit(data, resume_from=ckpt)
    return {"full": full.embedding_, "resumed": resumed.embedding_, "record": full.record(),
            "history_full": full.history_, "history_resumed": resumed.history_,
            "bn_class": type(full.model_.backbone.stem[1]).__name__}




def audit(rank: int, world: int, out: Path) -> dict:
    """The sync audit of the public fit in ``world`` processes (global negatives, DDP, synced
    BatchNorm), all three stages, with and without a time budget."""
    from medcne.estimator import TSimCNE
    from medcne.train.syncaudit import audit_training

    images = np.random.default_rng(0).integers(0, 256, (48, 12, 12, 3), dtype=np.uint8)
    found = {}
    for budget in (None, "20s"):
        with audit_training() as seen:
            est = TSimCNE(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=16, width=2, device="cpu",
                          random_state=0, verbose=False, budget=budget).fit(images)
        found[budget] = {
            "judged": seen.judged(), "step_syncs": [str(s) for _, _, s in seen.step_syncs()],
            "stages": [e.stage for e in seen.epochs],
            "ends": [[s.op for s in e.end] for e in seen.epochs],
            "setups": [[str(s) for s in e.setup] for e in seen.epochs],
            "world": est.world_.size, "sync_bn": est.sync_bn_,
        }
    return found


def refusals(rank: int, world: int, out: Path) -> dict:
    """What each process raises when the checks before training fail: on every process (the real
    ``fit_run`` with no epochs, ``resume_run`` of a folder with nothing to resume), on process 1
    only, and on none."""
    from medcne.datasets import SAMPLE_PATH
    from medcne.errors import DataError, MedcneError
    from medcne.runs import fit_run, resume_run
    from medcne.train import distributed

    def outcome(fn) -> tuple[str, str] | None:
        try:
            fn()
        except MedcneError as exc:
            return type(exc).__name__, str(exc)
        return None

    def only_on(failing: int) -> None:
        with distributed.together():
            if rank == failing:
                raise DataError("an image here cannot be read")

    params = {"epochs": (0, 0, 0), "batch_size": 16, "width": 2, "device": "cpu"}
    return {
        "zero_epochs": outcome(lambda: fit_run(SAMPLE_PATH, out / "zero", params, verbose=False)),
        "nothing_to_resume": outcome(lambda: resume_run(out / "no-run", verbose=False)),
        "rank_1_only": outcome(lambda: only_on(1)),
        "none": outcome(lambda: only_on(-1)),
    }
