"""Running out of memory under a limit (`ulimit -v`/`-d`, a cluster job's request) is one line that
names the limit, whatever form the failure takes."""

import errno
import subprocess
import sys

import pytest

from medcne.cli import failures
from medcne.cli.failures import describe


class Args:
    subset = size = batch_size = width = None


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOMEM, "Cannot allocate memory"),
    ImportError("libtorch_cpu.so: failed to map segment from shared object"),
    OSError("could not load library: failed to map segment from shared object"),
    MemoryError(),
    RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"),
])
def test_every_form_of_running_out_of_memory_is_the_memory_line(exc, monkeypatch):
    monkeypatch.setattr(failures, "memory_limits", lambda: [])
    line, status = describe(exc, where="RUN", args=Args())
    assert status == 2 and line.startswith("out of memory (memory); ask for less: lower --subset")
    assert "RUN" not in line  # not a fault of the output folder


def test_the_memory_line_names_the_limit_the_process_runs_under(monkeypatch):
    monkeypatch.setattr(failures, "memory_limits", lambda: [("-v", 4 << 30)])
    line, status = describe(MemoryError(), args=Args())
    assert status == 2 and "the process runs under ulimit -v 4,194,304 kB" in line and "raise it, or ask for less" in line
    gpu = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")
    assert "ulimit" not in describe(gpu, args=Args())[0]  # a GPU's memory is not the process's limit


def test_memory_limits_reads_the_limits_set():
    code = "from medcne.cli.failures import memory_limits; print(memory_limits())"
    out = subprocess.run(["bash", "-c", f"ulimit -v 8000000; ulimit -d 7000000; exec {sys.executable} -c '{code}'"],
                         capture_output=True, text=True, check=True).stdout
    assert "('-v', 8192000000)" in out and "('-d', 7168000000)" in out


def test_other_os_errors_still_name_their_path():
    line, status = describe(OSError(errno.ENOSPC, "No space left", "out/file"))
    assert status == 2 and line.startswith("out/file: no space left")
