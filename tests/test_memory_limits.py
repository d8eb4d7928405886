"""The memory medcne checks against: the smallest of the machine's, every cgroup's above the process
(v2 nested scopes, v1) and the process's own limits."""

from __future__ import annotations

import subprocess
import sys

from medcne.datasets import memory

GIB = 1 << 30


def tree(root, files: dict) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_limit_of_a_nested_cgroup_v2_scope_counts(tmp_path):
    # systemd-run --scope -p MemoryMax=400M: the limit sits at the process's own cgroup, not the root.
    tree(tmp_path, {"memory.max": "max\n", "user.slice/run-1.scope/memory.max": str(400 << 20),
                    "user.slice/run-1.scope/memory.current": str(100 << 20), "user.slice/memory.max": str(8 * GIB),
                    "user.slice/memory.current": str(GIB)})
    (tmp_path / "self").write_text("0::/user.slice/run-1.scope\n")
    assert memory._cgroup_available(tmp_path, tmp_path / "self") == 300 << 20


def test_the_tightest_ancestor_wins_and_a_root_container_limit_still_counts(tmp_path):
    tree(tmp_path, {"memory.max": str(2 * GIB), "memory.current": str(GIB // 2), "job/memory.max": "max"})
    (tmp_path / "self").write_text("0::/job\n")
    assert memory._cgroup_available(tmp_path, tmp_path / "self") == 3 * GIB // 2


def test_cgroup_v1_limits_count_and_its_no_limit_number_is_none(tmp_path):
    tree(tmp_path, {"memory/slurm/job7/memory.limit_in_bytes": str(GIB),
                    "memory/slurm/job7/memory.usage_in_bytes": str(GIB // 4),
                    "memory/memory.limit_in_bytes": "9223372036854771712", "memory/memory.usage_in_bytes": "5"})
    (tmp_path / "self").write_text("12:cpu,cpuacct:/slurm/job7\n4:memory:/slurm/job7\n1:name=systemd:/\n")
    assert memory._cgroup_available(tmp_path, tmp_path / "self") == 3 * GIB // 4
    (tmp_path / "self").write_text("4:memory:/\n")
    assert memory._cgroup_available(tmp_path, tmp_path / "self") is None


def test_a_process_limit_counts_what_the_process_already_holds():
    # ulimit -v: what is left for new memory is the limit less the address space already mapped.
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.RLIM_INFINITY)); "
            "from medcne.datasets import memory; print(memory._rlimit_available(), memory.available_bytes())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    left, available = int(out[0]), int(out[1])
    assert 0 < left < 6 << 30 and available <= left
