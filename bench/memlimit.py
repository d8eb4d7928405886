"""Run a command under a real memory limit (a cgroup) and sample its memory.

``systemd-run --scope -p MemoryMax=`` needs systemd as init; without it a
cgroup can still be made by hand where the memory controller is writable
(cgroup v1 ``memory`` hierarchy or cgroup v2 with ``memory`` enabled), as
root. The limit counts the process's anonymous memory and the page cache it
touches (a memory-mapped store's pages included): the kernel reclaims cache
under the limit and kills the process when anonymous memory alone passes it.

Used by bench/large.py and tests/test_store_memory.py; :func:`peak_growth` (one call's
peak in this process) by bench/preservation_memory.py and bench/pixel_pca.py.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


def _v2_root() -> Path | None:
    for root in (V2, V2 / "unified"):
        controllers = root / "cgroup.subtree_control"
        if controllers.exists() and "memory" in controllers.read_text().split():
            return root
    return None


def cgroup_available() -> str | None:
    """None when a memory cgroup can be made here, else why not (one line)."""
    if os.geteuid() != 0:
        return "making a memory cgroup needs root"
    if (V1 / "memory.limit_in_bytes").exists() and os.access(V1, os.W_OK):
        return None
    if _v2_root() is not None:
        return None
    return "no writable memory cgroup controller (cgroup v1 memory or v2 with memory enabled)"


@contextmanager
def memory_cgroup(limit_bytes: int):
    """A fresh cgroup limited to ``limit_bytes``; yields (procs file, stats reader), removed afterwards."""
    name = f"medcne-bench-{uuid.uuid4().hex[:8]}"
    if (V1 / "memory.limit_in_bytes").exists():
        path = V1 / name
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(int(limit_bytes)))
        stats = {"peak": "memory.max_usage_in_bytes", "fails": "memory.failcnt"}
    else:
        path = _v2_root() / name
        path.mkdir()
        (path / "memory.max").write_text(str(int(limit_bytes)))
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")
        stats = {"peak": "memory.peak"}

    def read() -> dict:
        out = {}
        for key, file in stats.items():
            f = path / file
            if f.exists():
                out[key] = int(f.read_text().split()[0])
        return out

    try:
        yield path / "cgroup.procs", read
    finally:
        for _ in range(50):  # the cgroup can be removed once its processes are gone
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def _status(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


def peak_growth(fn, every: float = 0.02):
    """``fn()``'s result, the peak growth of this process's RssAnon while it ran (bytes,
    sampled every ``every`` s) and its wall seconds. Run it in a fresh process: memory a
    process freed earlier can be reused without growing RssAnon."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _status(os.getpid()).get("RssAnon", 0))
            time.sleep(every)

    base = _status(os.getpid()).get("RssAnon", 0)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return result, max(peak[0] - base, 0), seconds


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (via /proc/*/task/*/children)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def measure(argv: list[str], *, env: dict | None = None, limit_bytes: int | None = None,
            stop_after: float | None = None, every: float = 0.05) -> dict:
    """Run ``argv``; peak RssAnon / VmRSS summed over its process tree, wall seconds, exit code, output tail.

    ``limit_bytes`` runs it in a memory cgroup of that size; ``stop_after``
    stops it (SIGTERM, then SIGKILL) after that many seconds. (Not SIGINT: a
    process started in the background of a shell ignores it.)
    """
    peak = {"RssAnon": 0, "VmRSS": 0, "RssFile": 0}

    def run(procs: Path | None) -> subprocess.Popen:
        def enter() -> None:
            if procs is not None:
                procs.write_text(str(os.getpid()))
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=enter)

    def go(procs: Path | None, read=lambda: {}) -> dict:
        t0 = time.monotonic()
        proc = run(procs)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        stopped = False
        while proc.poll() is None:
            total: dict[str, int] = {}
            for p in _tree(proc.pid):
                for k, v in _status(p).items():
                    total[k] = total.get(k, 0) + v
            for k in peak:
                peak[k] = max(peak[k], total.get(k, 0))
            if stop_after is not None and not stopped and time.monotonic() - t0 > stop_after:
                proc.terminate()
                stopped = True
            if stopped and time.monotonic() - t0 > stop_after + 60:
                proc.kill()
            time.sleep(every)
        reader.join(5)
        return {"exit": proc.returncode, "wall_s": round(time.monotonic() - t0, 1), "stopped": stopped,
                "peak_anon_gb": round(peak["RssAnon"] / 2**30, 3), "peak_rss_gb": round(peak["VmRSS"] / 2**30, 3),
                "peak_file_gb": round(peak["RssFile"] / 2**30, 3), "tail": "".join(lines)[-3000:],
                **{f"cgroup_{k}": v for k, v in read().items()}}

    if limit_bytes is None:
        return go(None)
    with memory_cgroup(limit_bytes) as (procs, read):
        result = go(procs, read)
    result["limit_gb"] = round(limit_bytes / 2**30, 3)
    return result
