"""The processes of a run: who this one is, joining and leaving their group, agreeing, and noticing
when another process or the launcher is gone.

torchrun (or ``medcne fit --nproc``) starts the processes and describes the
group in the environment; :func:`setup` joins it (NCCL on GPUs, gloo on CPUs)
and starts a watch on the launcher. Only rank 0 prints and writes
(:func:`on_main`); checks that every process makes on the same inputs fail
together and are said once (:func:`together`); a collective that fails because
another process died ends the run with one line (:func:`raise_if_lost`). With
one process none of this does anything. The tensors that cross between the
processes in training are :mod:`.distributed`'s.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import MedcneError

TIMEOUT_ENV = "MEDCNE_COLLECTIVE_TIMEOUT"
# Longest wait in a collective: above the longest thing one rank does alone between two
# collectives (rank 0 scoring kNN or writing a checkpoint), below "the run hangs for hours".
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process: the distributed path runs."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0


def launched() -> bool:
    """Started by torchrun (or ``--nproc``) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    """The world of the process group this process belongs to (one process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def collective_timeout(seconds: float | None = None) -> float:
    """Seconds a collective may wait: ``seconds``, else $MEDCNE_COLLECTIVE_TIMEOUT, else 600."""
    if seconds is None:
        raw = os.environ.get(TIMEOUT_ENV)
        if raw is None:
            return DEFAULT_TIMEOUT_S
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
    if not seconds > 0:
        raise MedcneError(f"{TIMEOUT_ENV} must be a positive number of seconds; got {seconds!r}")
    return float(seconds)


def setup(device="auto", timeout_s: float | None = None) -> World:
    """Join the process group that torchrun describes in the environment.

    One process per device: on CUDA, process ``LOCAL_RANK`` of a machine uses
    GPU ``LOCAL_RANK`` and NCCL; on a CPU, gloo. Without torchrun (or with one
    process) nothing happens and the world is one process. ``timeout_s``: the
    longest a collective waits for the other processes (:func:`collective_timeout`).
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return world()
    watch_launcher()
    from ..device import resolve_device

    local = int(os.environ.get("LOCAL_RANK", "0"))
    kind = resolve_device(device).type
    options = {}
    if kind == "cuda":
        count = torch.cuda.device_count()
        if local >= count:
            raise MedcneError(
                f"process {local} of this machine has no GPU of its own (the machine has {count}); "
                f"start at most {count} processes per machine (`nproc`, or torchrun's --nproc-per-node)"
            )
        torch.cuda.set_device(local)
        options["device_id"] = torch.device("cuda", local)
    timeout = timedelta(seconds=collective_timeout(timeout_s))
    try:
        dist.init_process_group("nccl" if kind == "cuda" else "gloo", timeout=timeout, **options)
    except (RuntimeError, ValueError) as exc:  # the Dist*Error of a failed rendezvous are RuntimeErrors
        raise MedcneError(
            f"cannot join the other processes of this run ({_first_line(exc)}); check that every node "
            "was started with the same --rdzv-endpoint (or MASTER_ADDR/MASTER_PORT) and can reach it"
        ) from None
    return world()


LAUNCHER_ENV = "MEDCNE_LAUNCHER_PID"  # set by ``medcne fit --nproc`` for the processes it starts
LAUNCHER_POLL_S = 0.5  # how often a process looks whether its launcher is alive
LAUNCHER_GRACE_S = 10.0  # then how long it may take to stop as if interrupted


def local_rank_in_env() -> int:
    """This process's rank on its machine as torchrun set it (0 without torchrun), also before
    :func:`setup`: process 0 of each machine speaks for the others on the same terminal."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def watch_launcher(poll_s: float = LAUNCHER_POLL_S, grace_s: float = LAUNCHER_GRACE_S) -> threading.Thread:
    """Stop this process when the one that launched it dies (``medcne fit --nproc`` or torchrun's
    agent killed with SIGKILL, by the OOM killer or a scheduler): its processes would otherwise
    train on, orphaned, and write the run.

    The launcher is the process's parent (torchrun's agent runs inside ``medcne fit --nproc``,
    which names itself in ``$MEDCNE_LAUNCHER_PID``, so that one already gone before this process
    got here is noticed too). The process is interrupted as by Ctrl-C (the run keeps its last
    checkpoint and can be resumed; nothing is finished or moved in); one still blocked after
    ``grace_s`` (in a collective with a process that is gone, or joining a group whose launcher
    is gone) leaves at once, the same checkpoint kept.
    """
    parent = int(os.environ.get(LAUNCHER_ENV) or os.getppid())

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        _thread.interrupt_main()
        time.sleep(grace_s)
        os._exit(130)

    thread = threading.Thread(target=watch, name="medcne-launcher-watch", daemon=True)
    thread.start()
    return thread


def teardown() -> None:
    """Leave the process group (when there is one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- rank 0 writes; everyone agrees ----------------------------------------------------------
class ReportedError(MedcneError):
    """An error that rank 0 raised and reports; the other ranks stop with it, quietly."""


def on_main(fn: Callable[[], object], w: World | None = None) -> None:
    """Run ``fn`` (which writes files) on rank 0 only; a :class:`MedcneError` it raises is raised
    on every rank (as :class:`ReportedError` on the others), so that all processes stop
    together (one process: just ``fn()``)."""
    w = w or world()
    if not w.active:
        fn()
        return
    message = None
    if w.is_main:
        try:
            fn()
        except MedcneError as exc:
            message = str(exc)
    box = [message]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise (MedcneError if w.is_main else ReportedError)(box[0])


def agree(flag: bool, w: World | None = None) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. whether a checkpoint is due: a clock is per process)."""
    w = w or world()
    if not w.active:
        return flag
    box = [bool(flag)]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def gather_objects(obj, w: World | None = None) -> list:
    """``obj`` of every rank, in rank order, on every rank (small, picklable objects)."""
    w = w or world()
    if not w.active:
        return [obj]
    out = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


@contextmanager
def together(w: World | None = None) -> Iterator[None]:
    """Run the body on every rank; when it raises :class:`MedcneError` on any rank, every rank raises:
    rank 0 with the message (naming the process when only another one failed), the others
    :class:`ReportedError`, so that the user reads it once.

    For the checks that every process makes on the same inputs (the data read, the parameters
    validated), which would otherwise be printed by each process. One process: just the body.
    """
    w = w or world()
    if not w.active:
        yield
        return
    mine = None
    try:
        yield
    except MedcneError as exc:
        mine = exc
    failed = [(rank, m) for rank, m in enumerate(gather_objects(mine and str(mine), w)) if m is not None]
    if not failed:
        return
    if not w.is_main:
        raise ReportedError(failed[0][1]) from mine
    if mine is not None:
        raise mine  # rank 0's own error, as it was raised
    rank, text = failed[0]
    raise MedcneError(f"process {rank} of {w.size}: {text}")


# -- a process that died -------------------------------------------------------------------
class ProcessLostError(MedcneError):
    """A collective failed: another process of the run died or stopped answering."""


_LOST_MARKERS = ("connection closed", "connection reset", "timed out", "timeout", "gloo", "nccl",
                 "broken pipe", "socket", "processgroup", "peer")


def raise_if_lost(exc: RuntimeError, checkpoint=None, w: World | None = None) -> None:
    """Raise :class:`ProcessLostError` (one line) when ``exc`` is the failure of a collective.

    A process that is killed closes its connections, and the others' next
    collective fails at once (gloo), or after the collective timeout when a
    process hangs (NCCL's watchdog then ends the waiting process itself).
    Nothing is written after the failure; the last checkpoint, written
    atomically by rank 0, stays. Other errors are left to the caller to re-raise.
    """
    w = w or world()
    if not w.active or isinstance(exc, torch.OutOfMemoryError) or not _is_lost(exc):
        return
    where = f" ({checkpoint})" if checkpoint else ""
    raise ProcessLostError(
        f"rank {w.rank}: another process of this {w.size}-process run died or stopped answering "
        f"({_first_line(exc)}); see that process's own message. The last checkpoint{where} is "
        "kept: continue with `medcne fit --resume RUN`"
    ) from exc


def _is_lost(exc: BaseException) -> bool:
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return any(m in text for m in _LOST_MARKERS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    # gloo prefixes the source file of the error: keep the words.
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    line = line.split(". ")[0].rstrip(".")  # gloo and NCCL add advice after the first sentence
    return f"{type(exc).__name__}: {line[:200]}"
