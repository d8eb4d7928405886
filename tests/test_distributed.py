"""Several processes (torchrun, DDP): global negatives, shards, synced BatchNorm, rank 0 writes, resume, a lost rank.

The multi-process tests start real gloo process groups of 2 CPU processes
(:mod:`ddphelpers`), each with a deadline so that a hang fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ddphelpers import (
    free_port,
    labelled_images,
    resume_params,
    run_ranks,
    syncbn_training,
    torchrun_env,
)
from medcne.cli import build_parser, main
from medcne.datasets import SAMPLE_PATH
from medcne.defaults import BUDGET_CPU
from medcne.train import Generators, distributed
from medcne.train.loop import shard, steps_per_epoch

pytestmark = pytest.mark.usefixtures("one_torch_thread")
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SRC = Path(__file__).resolve().parents[1] / "src"


# -- in one process --------------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_each_global_batch_once_in_the_same_order(world):
    n, global_batch = 50, 12
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    seen = []
    for step in range(steps_per_epoch(n, global_batch)):
        parts = [order[shard(step, global_batch // world, r, world)] for r in range(world)]
        assert all(len(p) == global_batch // world for p in parts)
        # the global batch, in rank order, is the one process's batch of that step
        assert torch.equal(torch.cat(parts), order[step * global_batch : (step + 1) * global_batch])
        seen += torch.cat(parts).tolist()
    assert len(seen) == len(set(seen)) == (n // global_batch) * global_batch  # no duplicate, none lost


def test_rank_streams_share_weights_and_order_but_not_views():
    gens = [Generators.from_rng(np.random.default_rng(7), torch.device("cpu"), r, 3) for r in range(3)]
    one = Generators.from_rng(np.random.default_rng(7), torch.device("cpu"))
    draws = {name: [torch.rand(4, generator=getattr(g, name)) for g in gens] for name in ("init", "batch", "augment")}
    assert all(torch.equal(draws["init"][0], d) for d in draws["init"])
    assert all(torch.equal(draws["batch"][0], d) for d in draws["batch"])
    assert not torch.equal(draws["augment"][0], draws["augment"][1])
    assert not torch.equal(draws["augment"][1], draws["augment"][2])
    assert torch.equal(draws["augment"][0], torch.rand(4, generator=one.augment))  # rank 0: one process's stream
    again = Generators.from_rng(np.random.default_rng(7), torch.device("cpu"), 2, 3)
    assert torch.equal(torch.rand(4, generator=again.augment), draws["augment"][2])  # from the seed alone


def test_a_resume_continues_each_ranks_stream_or_derives_one():
    saved = [Generators.from_rng(np.random.default_rng(1), torch.device("cpu"), r, 2) for r in range(2)]
    state = saved[0].state_dict()
    state["augment_ranks"] = [g.augment.get_state() for g in saved]
    expected = [torch.rand(3, generator=g.augment) for g in saved]
    for world in (2, 3):
        fresh = [Generators.from_rng(np.random.default_rng(99), torch.device("cpu"), r, world) for r in range(world)]
        for g in fresh:
            g.load_state_dict(state)
        got = [torch.rand(3, generator=g.augment) for g in fresh]
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        if world == 3:  # a rank the checkpoint did not have: a new stream, the same on every attempt
            assert not torch.equal(got[2], got[0]) and not torch.equal(got[2], got[1])
            again = Generators.from_rng(np.random.default_rng(5), torch.device("cpu"), 2, 3)
            again.load_state_dict(state)
            assert torch.equal(torch.rand(3, generator=again.augment), got[2])


def test_synced_batchnorm_is_plain_batchnorm_without_a_process_group():
    from ddphelpers import tiny_net

    plain = tiny_net()
    synced = distributed.convert_sync_batchnorm(tiny_net(), "cpu")
    kinds = {type(m).__name__ for m in synced.modules()}
    assert "GlobalBatchNorm" in kinds and "BatchNorm2d" not in kinds
    assert synced.state_dict().keys() == plain.state_dict().keys()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(synced(x), plain(x))  # training mode, no group: the same statistics
    back = distributed.revert_sync_batchnorm(synced)
    assert {type(m).__name__ for m in back.modules()} >= {"BatchNorm2d"} and "GlobalBatchNorm" not in {
        type(m).__name__ for m in back.modules()}
    torch.testing.assert_close(back.state_dict(), plain.state_dict())
    # CUDA gets the same class, not nn.SyncBatchNorm (whose forward makes the host wait)
    cuda = distributed.convert_sync_batchnorm(tiny_net(), "cuda")
    assert {type(m) for m in cuda.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {
        distributed.GlobalBatchNorm}
    old = torch.nn.SyncBatchNorm.convert_sync_batchnorm(tiny_net())  # a model converted the old way
    assert type(distributed.convert_sync_batchnorm(old).backbone.stem[1]) is distributed.GlobalBatchNorm


def test_nproc_passes_every_other_option_to_the_processes():
    parser = build_parser()
    argv = ["fit", "data.npz", "--out", "run", "--nproc", "2", "--epochs", "3,1,2", "--batch-size", "64",
            "--lr", "0.2", "--device", "cpu", "--quick", "--no-sync-bn", "--seed", "3", "--subset", "100",
            "--stage3-lr-factor", "0.01", "--knn-every", "2"]
    args = parser.parse_args(["--debug", *argv])
    from medcne.cli.fit import worker_argv

    again = parser.parse_args(worker_argv(args))
    assert again.nproc is None and "--nproc" not in worker_argv(args)
    assert {**vars(again), "nproc": 2, "func": None} == {**vars(args), "func": None}


def test_nproc_refuses_what_cannot_run_before_starting_processes(tmp_path, capsys):
    out = tmp_path / "run"
    # 2 processes: the most a 2-core machine without GPU takes (medcne.limits refuses more)
    assert main(["fit", str(SAMPLE_PATH), "--out", str(out), "--nproc", "2", "--batch-size", "63",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--batch-size 63 must divide evenly among the 2 processes" in err
    assert main(["fit", str(SAMPLE_PATH), "--out", str(out), "--nproc", "0", "--device", "cpu"]) == 2
    assert "--nproc must be a positive" in capsys.readouterr().err
    assert not out.exists()


def test_a_failed_collective_becomes_one_line_and_nothing_else_does():
    two = distributed.World(0, 2)
    lost = RuntimeError("[../gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:4771. "
                       "This is typically caused by a remote worker crashing.\nmore")
    with pytest.raises(distributed.ProcessLostError, match=r"^rank 0: another process of this 2-process run") as e:
        distributed.raise_if_lost(lost, "run/checkpoint.pt", two)
    assert "\n" not in str(e.value) and "Connection closed by peer" in str(e.value) and "--resume" in str(e.value)
    distributed.raise_if_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), None, two)  # not lost
    distributed.raise_if_lost(lost, None, distributed.World())  # one process: nothing to translate


def test_one_process_runs_nothing_distributed():
    from medcne.estimator import TSimCNE

    est = TSimCNE(**resume_params()).fit(labelled_images(n=32))
    assert not est.world_.active and est.rank_batch_size_ == est.batch_size_ == 16
    r = est.record()["resolved"]
    assert (r["world_size"], r["rank_batch_size"], r["sync_bn"]) == (1, 16, False)
    assert "BatchNorm2d" in {type(m).__name__ for m in est.model_.modules()}


# -- two gloo processes ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    return out, run_ranks(["gather", "syncbn", "resume", "audit", "syncbn_compiles", "refusals"], out, world=2,
                          deadline=200)


@pytest.mark.slow
def test_checks_that_fail_on_every_process_are_said_by_process_0_only(two_ranks):
    # The real fit_run and resume_run: every process reads the data and checks the parameters; a
    # failure there was printed by each process (as MedcneError everywhere), now by process 0 only.
    rank0, rank1 = (r["refusals"] for r in two_ranks[1])
    for case, words in (("zero_epochs", "epochs are 0 in every stage"), ("nothing_to_resume", "nothing to resume")):
        assert rank0[case][0] == "MedcneError" and words in rank0[case][1], (case, rank0[case])
        assert rank1[case] == ("ReportedError", rank0[case][1]), case  # quiet: the CLI prints nothing for it
    # A failure of process 1 alone is still said, by process 0, naming the process.
    assert rank0["rank_1_only"] == ("MedcneError", "process 1 of 2: an image here cannot be read")
    assert rank1["rank_1_only"] == ("ReportedError", "an image here cannot be read")
    assert rank0["none"] is None and rank1["none"] is None


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["cauchy", "cosine"])
def test_global_negatives_give_the_loss_and_gradients_of_one_process(two_ranks, loss):
    for rank in two_ranks[1]:
        r = rank["gather"][loss]
        assert r["loss"] == pytest.approx(r["loss_one"], rel=1e-6)
        torch.testing.assert_close(r["z_gathered"], r["z_one"], rtol=1e-5, atol=1e-6)  # the partner layout
        scale = max(g.abs().max() for g in r["grads_one"].values())
        for name, g in r["grads_one"].items():
            torch.testing.assert_close(r["grads"][name], g, rtol=1e-4, atol=1e-5 * float(scale), msg=name)


@pytest.mark.slow
def test_synced_batchnorm_two_ranks_train_like_one_process_on_the_global_batch(two_ranks):
    one = syncbn_training(0, 1)  # one process, global batch 16, plain BatchNorm
    for rank in two_ranks[1]:
        synced, unsynced = rank["syncbn"]["synced"], rank["syncbn"]["unsynced"]
        assert synced["loss"] == pytest.approx(one["loss"], rel=1e-5)
        for name, value in one["state"].items():
            np.testing.assert_allclose(synced["state"][name].numpy(), value.numpy(), rtol=1e-4, atol=2e-5,
                                       err_msg=name)
        # Without syncing, each rank normalises its own 8 images: far from one process.
        far = [n for n, v in one["state"].items()
               if v.is_floating_point() and not np.allclose(unsynced["state"][n].numpy(), v.numpy(), 1e-4, 2e-5)]
        assert len(far) > 50


@pytest.mark.slow
def test_no_host_sync_in_a_step_of_two_processes_beyond_the_collectives(two_ranks):
    # The audit of medcne.train.syncaudit on the public fit in two processes (gather, DDP, synced
    # BatchNorm), with and without a budget: the one read per epoch of the summed loss, nothing else.
    for rank in two_ranks[1]:
        for budget, r in rank["audit"].items():
            assert (r["world"], r["sync_bn"]) == (2, True)
            assert set(r["stages"]) == {"pretrain", "head", "finetune"}, budget
            assert r["judged"] >= 3 and r["step_syncs"] == [], (budget, r["step_syncs"])
            assert all(end == ["_local_scalar_dense"] for end in r["ends"]) and not any(r["setups"]), r


@pytest.mark.slow
def test_synced_batchnorm_compiles_as_one_graph_and_gives_the_eager_result(two_ranks):
    for rank in two_ranks[1]:
        r = rank["syncbn_compiles"]
        assert r["graph_count"] == 1 and r["graph_break_count"] == 0, r["break_reasons"]
        assert r["max_difference"] < 1e-5 and r["grad_difference"] < 1e-5, r


@pytest.mark.slow
def test_two_ranks_resume_exactly_and_record_the_world(two_ranks):
    ranks = [r["resume"] for r in two_ranks[1]]
    for r in ranks:
        np.testing.assert_allclose(r["resumed"], r["full"], atol=1e-5)
        assert [h["loss"] for h in r["history_resumed"]] == pytest.approx([h["loss"] for h in r["history_full"]],
                                                                          abs=1e-5)
        assert r["bn_class"] == "BatchNorm2d"  # the fitted model is an ordinary one again
    np.testing.assert_array_equal(ranks[0]["full"], ranks[1]["full"])  # every rank has the whole map
    resolved = ranks[0]["record"]["resolved"]
    assert (resolved["batch_size"], resolved["rank_batch_size"], resolved["world_size"]) == (16, 8, 2)
    assert resolved["sync_bn"] is True and resolved["lr"] == pytest.approx(0.03 * 16 / 256)


@pytest.mark.slow
def test_a_two_rank_checkpoint_continues_on_one_process(two_ranks, capsys):
    from medcne.estimator import TSimCNE

    ckpt = two_ranks[0] / "checkpoint-epoch1.pt"
    saved = torch.load(ckpt, weights_only=True)
    assert len(saved["rng"]["augment_ranks"]) == 2 and saved["epoch"] == 1
    est = TSimCNE(**{**resume_params(), "verbose": True}).fit(labelled_images(), resume_from=ckpt)
    assert "resuming a run of 2 process(es) on 1" in capsys.readouterr().out
    assert [(h["stage"], h["epoch"]) for h in est.history_] == [(1, 1), (1, 2), (2, 1), (3, 1)]
    assert est.history_[:1] == saved["history"] and np.isfinite(est.embedding_).all()
    assert est.rank_batch_size_ == est.batch_size_ == 16 and est.lr_ == pytest.approx(0.03 * 16 / 256)


# -- the command line ---------------------------------------------------------------------------
def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **extra}


TINY_FIT = ["--subset", "64", "--size", "16", "--width", "2", "--batch-size", "16", "--device", "cpu",
            "--warmup", "0,0,0"]


@pytest.mark.slow
def test_fit_nproc_2_trains_in_two_processes_and_only_rank_0_writes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "medcne", "fit", str(SAMPLE_PATH), "--out", str(out), "--nproc", "2",
           "--epochs", "1,1,1", *TINY_FIT]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("training on 64 images") == 1 and done.stdout.count("kNN accuracy") == 1
    assert done.stdout.count("expected training time") == 1
    names = {p.name for p in out.iterdir()}
    assert names == {".medcne-run", "params.json", "history.csv", "model.pt", "checkpoint.pt", "embedding.npz",
                     "embedding.csv", "metrics.json", "map.png"}
    resolved = json.loads((out / "params.json").read_text())["resolved"]
    assert (resolved["world_size"], resolved["batch_size"], resolved["rank_batch_size"]) == (2, 16, 8)
    assert resolved["lr"] == pytest.approx(BUDGET_CPU["lr"])  # the CPU settings' (no --lr given)
    assert len((out / "history.csv").read_text().splitlines()) == 4


@pytest.mark.slow
def test_a_budget_with_two_processes_follows_rank_0s_schedule(tmp_path):
    # Each process measures its own speed; a different choice of epochs on one rank would leave
    # the other waiting in a collective (bounded here by the timeout) or train other stages.
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "medcne", "fit", str(SAMPLE_PATH), "--out", str(out), "--nproc", "2",
           "--budget", "25s", "--epochs", "4,1,2", *TINY_FIT]
    done = subprocess.run(cmd, env=_env(MEDCNE_COLLECTIVE_TIMEOUT="30"), capture_output=True, text=True,
                          timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()  # rank 0's lines only: the first choice, and the schedule run if it changed
    assert sum(line.startswith("time budget 25 s: epochs pretrain") for line in lines) == 1
    assert sum(line.startswith("at the speed measured in training") for line in lines) <= 1
    stages = json.loads((out / "params.json").read_text())["resolved"]["stages"]
    rows = (out / "history.csv").read_text().splitlines()[1:]
    ran = [sum(1 for r in rows if r.startswith(f"{i + 1},")) for i in range(3)]
    assert ran == [s["epochs"] for s in stages] and ran[0] >= 4


@pytest.mark.slow
def test_torchrun_2_stops_every_process_with_rank_0s_one_line(tmp_path):
    # Through torchrun itself (`medcne fit --nproc` refuses this --out before starting any process).
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "medcne",
           "fit", str(SAMPLE_PATH), "--out", str(out), "--epochs", "1,0,1", *TINY_FIT]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("medcne fit")]  # not torchrun's report
    assert len(lines) == 1 and lines[0].startswith(f"medcne fit: error: --out {out}"), lines  # not rank 1's
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_a_killed_rank_ends_the_other_within_bounded_time_with_one_line(tmp_path):
    out, port = tmp_path / "run", free_port()
    cmd = [sys.executable, "-m", "medcne", "fit", str(SAMPLE_PATH), "--out", str(out), "--epochs", "400,0,1",
           "--checkpoint-minutes", "0", *TINY_FIT]
    procs = [subprocess.Popen(cmd, env=_env(**torchrun_env(r, 2, port), MEDCNE_COLLECTIVE_TIMEOUT="20"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        deadline = time.monotonic() + 90
        while not (out / "history.csv").exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, procs[0].stderr.read()[-2000:]
            time.sleep(0.2)
        assert (out / "history.csv").exists(), "no epoch finished"
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=40)
        waited = time.monotonic() - killed
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == 2 and waited < 30
    last = err.strip().splitlines()[-1].split("\r")[-1]  # after the progress bar's last refresh
    assert last.startswith("medcne fit: error: rank 0: another process of this 2-process run died"), err[-2000:]
    assert "Traceback" not in err
    from medcne.train.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt")["epoch"] >= 1  # the last checkpoint stays loadable


def worst_relative_difference(state: dict, reference: dict) -> float:
    return max(float((state[k] - v).abs().max() / v.abs().max().clamp_min(1e-3))
               for k, v in reference.items() if v.is_floating_point())


@cuda_only
def test_cuda_synced_batchnorm_two_processes_on_one_gpu(tmp_path):
    # bf16 backbone and cuDNN: no float32 tolerance; synced must be far closer to one process than unsynced.
    ranks = run_ranks(["syncbn_cuda"], tmp_path, world=2, deadline=240)
    one = syncbn_training(0, 1, device="cuda", precision="bf16")
    assert one["amp_dtype"] == "torch.bfloat16"
    for rank in ranks:
        synced, unsynced = rank["syncbn_cuda"]["synced"], rank["syncbn_cuda"]["unsynced"]
        assert synced["amp_dtype"] == unsynced["amp_dtype"] == "torch.bfloat16"
        assert synced["loss"] == pytest.approx(one["loss"], rel=1e-2)
        near = worst_relative_difference(synced["state"], one["state"])
        far = worst_relative_difference(unsynced["state"], one["state"])
        assert near < far / 10, (near, far)


@cuda_only
def test_cuda_torchrun_with_one_process_is_the_one_process_path(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "medcne",
           "fit", str(SAMPLE_PATH), "--out", str(out), "--subset", "256", "--epochs", "1,1,1", "--width", "8",
           "--batch-size", "64", "--device", "cuda"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = json.loads((out / "params.json").read_text())["resolved"]
    assert resolved["world_size"] == 1 and resolved["sync_bn"] is False


@pytest.mark.parametrize("rank", [0, 1])
def test_only_rank_0_of_a_run_goes_through_the_interpreters_finalisation(rank):
    # Gloo's threads can abort a process in the interpreter's finalisation after a run that succeeded
    # (SIGABRT, seen once in CI on rank 1). The ranks that hold no output end without it; rank 0 writes
    # the run and ends as any command does. An exit handler shows which way the process ended.
    code = ("import atexit, runpy, sys; atexit.register(lambda: print('finalised')); "
            f"sys.argv = ['medcne', 'info', {str(SAMPLE_PATH)!r}]; runpy.run_module('medcne', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], env=_env(WORLD_SIZE="2", RANK=str(rank)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "images" in done.stdout  # the command ran and its output was flushed
    assert ("finalised" in done.stdout) == (rank == 0), done.stdout[-500:]


def _workers(parent: subprocess.Popen, n: int = 2, timeout: float = 60) -> list:
    """The processes that `medcne fit --nproc n` (``parent``) started, once they are there."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert parent.poll() is None, "the command ended"
        found = [p for p in psutil.Process(parent.pid).children() if "medcne" in " ".join(_cmdline(p))]
        if len(found) == n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{n} processes did not start")


def _cmdline(process) -> list[str]:
    """A process's command line; none for one that has just ended (a zombie, or gone): torch's
    launcher starts short-lived helpers beside its workers."""
    import psutil

    try:
        return process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _wait_for(path: Path, parent: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        assert parent.poll() is None, "the command ended"
        time.sleep(0.1)
    assert path.exists(), f"no {path.name} written"


def _assert_gone_soon(workers: list, timeout: float = 15) -> None:
    import psutil

    try:
        _, alive = psutil.wait_procs(workers, timeout=timeout)
        assert not alive, f"still running {timeout} s after their launcher was killed: {[p.pid for p in alive]}"
    finally:
        for p in workers:
            if p.is_running():
                p.kill()


@pytest.mark.slow
def test_killing_the_launcher_stops_its_processes_and_leaves_a_resumable_run(tmp_path):
    # SIGKILL of `medcne fit --nproc 2` (the OOM killer, a scheduler): its processes (its own children,
    # each in a session of its own, so no group signal reaches them) must not train on and write the
    # run; they stop as if interrupted, and the run resumes.
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "medcne", "fit", str(SAMPLE_PATH), "--out", str(out), "--epochs", "30,0,1",
           "--checkpoint-minutes", "0", "--nproc", "2", *TINY_FIT]
    parent = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    workers = _workers(parent)
    _wait_for(out / "checkpoint.pt", parent)
    parent.kill()
    parent.wait()
    _assert_gone_soon(workers)
    params = json.loads((out / "params.json").read_text())
    assert params["finished"] is False and not (out / "embedding.npz").exists()
    done = subprocess.run([sys.executable, "-m", "medcne", "fit", "--resume", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "params.json").read_text())["finished"] is True


@pytest.mark.slow
def test_a_launcher_killed_before_its_processes_watch_it_still_stops_them(tmp_path):
    # Killed while its processes are still starting (importing torch): they must not wait on to join a
    # group whose launcher is gone (minutes, at torch's rendezvous timeout), nor write anything.
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "medcne", "fit", str(SAMPLE_PATH), "--out", str(out), "--epochs", "400,0,1",
           "--nproc", "2", *TINY_FIT]
    parent = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    workers = _workers(parent)
    parent.kill()
    parent.wait()
    _assert_gone_soon(workers)
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hung up")])
def test_sigterm_or_sighup_of_the_launcher_is_said_once(tmp_path, signum, status, word):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "medcne", "fit", str(SAMPLE_PATH), "--out", str(out), "--epochs", "400,0,1",
           "--checkpoint-minutes", "0", "--nproc", "2", *TINY_FIT]
    parent = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    workers = _workers(parent)
    try:
        _wait_for(out / "checkpoint.pt", parent)
        parent.send_signal(signum)  # SIGHUP: the terminal of the launcher closed
        stdout, stderr = parent.communicate(timeout=60)
    finally:
        _assert_gone_soon(workers)
    assert parent.returncode == status
    assert stderr.split("\r")[-1].strip().splitlines() == [f"medcne fit: {word}"], stderr[-2000:]  # not torch's
    assert stdout.count(f"interrupted; continue with `medcne fit --resume {out}`") == 1, stdout[-2000:]


def test_a_launcher_already_gone_interrupts_the_process_at_once(monkeypatch):
    # The process got to watching after its launcher had died: its parent is then another process.
    monkeypatch.setenv(distributed.LAUNCHER_ENV, str(os.getppid() + 1_000_000))
    with pytest.raises(KeyboardInterrupt):
        distributed.watch_launcher(poll_s=0.01, grace_s=86400)  # no exit while the tests run
        for _ in range(3000):  # at once on a quiet machine; up to 30 s where the thread waits its turn
            time.sleep(0.01)


@pytest.mark.parametrize("signum, status, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hung up")])
@pytest.mark.parametrize("rank", [0, 1])
def test_an_interrupted_run_of_several_processes_is_said_by_rank_0_only(rank, signum, status, word, capsys,
                                                                       monkeypatch, tmp_path):
    from medcne.cli import Terminated

    def terminated(*args, **kwargs):
        raise Terminated(signum)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setattr(distributed, "setup", terminated)
    assert main(["fit", str(SAMPLE_PATH), "--out", str(tmp_path / "run"), "--epochs", "1,0,1", *TINY_FIT]) == status
    assert capsys.readouterr().err.strip().splitlines() == ([f"medcne fit: {word}"] if rank == 0 else [])


def test_sigterm_of_the_launcher_ends_it_quietly_with_its_status(capfd, monkeypatch, tmp_path):
    # torchrun's agent logs a warning on a signal through loggers that set their own level; the
    # processes it passes the signal on to say what happened.
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.agent.server import api
    from torch.distributed.elastic.multiprocessing.api import SignalException

    seen = []

    def signalled(*args, **kwargs):
        seen.append(os.environ.get(distributed.LAUNCHER_ENV))
        api.logger.warning("Received 15 death signal, shutting down workers")
        raise SignalException("Process got signal: 15", sigval=signal.SIGTERM)

    monkeypatch.setattr(torchrun, "run", signalled)
    assert main(["fit", str(SAMPLE_PATH), "--out", str(tmp_path / "run"), "--nproc", "2", "--epochs", "1,0,1",
                 *TINY_FIT]) == 143
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert seen == [str(os.getpid())] and distributed.LAUNCHER_ENV not in os.environ


@pytest.mark.parametrize("case", ["missing data", "taken out", "resume changes", "resume lr"])
def test_a_bad_command_is_said_once_before_any_process_starts(case, tmp_path, capsys, monkeypatch):
    import torch.distributed.run as torchrun

    started = []
    monkeypatch.setattr(torchrun, "run", lambda *a, **k: started.append(1))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    argv, said = {
        "missing data": ([str(tmp_path / "nodata"), "--out", str(tmp_path / "run")],
                         f"{tmp_path / 'nodata'}: no such file or folder; check the path"),
        "taken out": ([str(SAMPLE_PATH), "--out", str(taken)], f"--out {taken} holds files medcne did not write"),
        "resume changes": (["--resume", str(taken), "--width", "4"], f"--resume continues {taken}"),
        "resume lr": (["--resume", str(taken), "--lr", "auto"], "--lr of a resume must be a positive number"),
    }[case]
    extra = [] if case.startswith("resume") else ["--epochs", "1,0,1", *TINY_FIT]
    assert main(["fit", *argv, "--nproc", "2", *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medcne fit: error: {said}"), lines
    assert not started and not (tmp_path / "run").exists() and [p.name for p in taken.iterdir()] == ["notes.txt"]
