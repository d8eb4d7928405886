"""How much memory a request needs, checked before anything is allocated.

A ``--size 100000`` (or a header that lies about an array's shape) would
otherwise make numpy try to allocate terabytes, or make a reader decode and
resize for minutes before running out. Readers call :func:`check_memory` with
the bytes they are about to allocate and refuse with the figures instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError

# Leave room for the rest of the process (Python, torch, the model): refuse a
# request above this share of the memory that is available now.
MARGIN = 0.8


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


UNLIMITED_V1 = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def _left(limit_file: Path, used_file: Path) -> int | None:
    """limit - used of one cgroup's memory files, or None when it has no limit (or no files)."""
    try:
        limit = limit_file.read_text().strip()
        if limit == "max" or int(limit) >= UNLIMITED_V1:
            return None
        return max(int(limit) - int(used_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return None


def _cgroup_available(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> int | None:
    """Memory left under the limits of this process's cgroup and of every cgroup above it.

    A container (``memory.max`` at the root of its cgroup v2 tree), a job or
    scope nested deeper (``systemd-run -p MemoryMax=``, a batch scheduler's
    cgroup, found through ``/proc/self/cgroup``), and cgroup v1's
    ``memory.limit_in_bytes``: each can be far below the machine's free memory.
    """
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    found = []
    for line in lines or ["0::/"]:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # cgroup v2
            base, limit, used = root, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):  # cgroup v1
            base, limit, used = root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        folder = base / path.strip("/")
        for level in [folder, *folder.parents]:
            if level == base.parent:
                break
            found.append(_left(level / limit, level / used))
    found = [v for v in found if v is not None]
    return min(found) if found else None


def process_limits() -> list[tuple[str, int, int]]:
    """This process's own limits on memory that are set (``ulimit -v`` / ``-d``, as HPC schedulers set
    them): ('-v' or '-d', the limit, what the process uses of it now), in bytes. /proc is read only
    when a limit is set (the store reader asks at every window it maps)."""
    try:
        import resource
    except ImportError:
        return []
    limits = [(flag, field, resource.getrlimit(getattr(resource, name))[0])
              for flag, name, field in (("-v", "RLIMIT_AS", "VmSize"), ("-d", "RLIMIT_DATA", "VmData"))]
    limits = [(flag, field, soft) for flag, field, soft in limits if soft != resource.RLIM_INFINITY]
    if not limits:
        return []
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return []
    used = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.splitlines()
            if line.startswith(("VmSize:", "VmData:"))}
    return [(flag, int(soft), used.get(field, 0)) for flag, field, soft in limits]


def _rlimit_available() -> int | None:
    """Memory left under this process's own limits (:func:`process_limits`)."""
    left = [max(soft - used, 0) for _, soft, used in process_limits()]
    return min(left) if left else None


def available_bytes() -> int | None:
    """Bytes of memory available now (the smallest of the machine's, the cgroups' and this process's
    limits), or None if unknown."""
    found = [v for v in (_meminfo_available(), _cgroup_available(), _rlimit_available()) if v is not None]
    return min(found) if found else None


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, as `free -h`)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(nbytes: int, where: str, what: str, fix: str) -> None:
    """Raise DataError when ``nbytes`` would not fit in the memory available now.

    Parameters
    ----------
    nbytes : int
        Bytes the caller is about to allocate.
    where : str
        The file (or source) the request is about; starts the message.
    what : str
        What needs the memory, e.g. ``"17,092 images of 100000x100000x3"``.
    fix : str
        What the user can change, e.g. ``"choose a smaller --size"``.
    """
    must_stream(nbytes, where, what, fix, may_stream=False)


def must_stream(nbytes: int, where: str, what: str, fix: str, *, may_stream: bool) -> bool:
    """The one decision about holding ``nbytes`` in memory: False when they fit; True when they
    do not and ``may_stream`` (read them piece by piece instead); else DataError with the figures,
    as :func:`check_memory` (same arguments)."""
    available = available_bytes()
    if available is None or nbytes <= MARGIN * available:
        return False
    if may_stream:
        return True
    raise DataError(
        f"{where}: {what} needs {format_bytes(nbytes)} of memory; about {format_bytes(available)} "
        f"is available, of which medcne takes at most {MARGIN:.0%} ({format_bytes(MARGIN * available)}) to leave "
        f"room for the rest of the process; {fix}"
    )


def training_streams(data, stream="auto") -> bool:
    """Whether training reads ``data``'s images batch by batch from disk (True) or holds them as one
    uint8 tensor (False): the one place memory is judged for training.

    ``stream``: True streams always; False holds them (refused with the figures when they
    do not fit); ``'auto'`` streams a lazily read dataset (a store, PCam) that does not fit
    and holds everything else, refusing an in-memory dataset that would not fit as one tensor.
    """
    if stream is True:
        return True
    n, (h, w, c) = len(data), data.image_shape
    return must_stream(n * c * h * w, str(data.source),
                       f"training on {n:,} images of {h}x{w}x{c} (one uint8 tensor)",
                       "train on a `subset` of the images or a smaller `size`",
                       may_stream=stream == "auto" and data.is_lazy)
