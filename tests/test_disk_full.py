"""A full disk and a read-only folder: one line, exit 2, no partial files, the old run whole.

The outputs go to a small tmpfs that the test mounts (2 MB; filled with a
filler file up to a few KB), so the commands meet a real ENOSPC (or EROFS)
from the kernel, torch's zip writer included. Mounting needs root: the tests
skip otherwise (CI runs as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from medcne.cli import main
from medcne.runs.folder import is_finished, staging_path
from safetyhelpers import TINY, error_lines, make_data, make_run, snapshot

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


@contextmanager
def tmpfs(folder: Path, options: str = "size=2m"):
    """A tmpfs mounted on ``folder`` for the duration (skips when it cannot be mounted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Write a filler file so that about ``leave`` bytes stay free on ``folder``'s file system."""
    free = shutil.disk_usage(folder).free - leave
    with open(folder / "filler", "wb") as fh:
        try:
            fh.write(b"\0" * max(free, 0))
            fh.flush()
        except OSError:
            pass  # full already


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    data = make_data(root / "data.npz")
    return data, make_run(root / "run", data)


def expect_one_line_exit_2(argv, capsys, words):
    code = main(argv)
    err = capsys.readouterr().err
    if "make viewer-assets" in err:
        pytest.skip("the viewer's JavaScript bundle is not built here")
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert words in lines[0], lines[0]


COMMANDS = {
    # command -> (argv after the command with OUT for the output on the tmpfs, bytes left free)
    "fit": (["{data}", "--out", "{out}/run", *TINY], 200_000),
    "baseline": (["{data}", "--method", "tsne-pixels", "--out", "{out}/base"], 8_000),
    "embed": (["{run}", "{data}", "--out", "{out}/e.csv"], 0),
    "view": (["{run}", "--out", "{out}/viewer"], 20_000),
    "plot": (["{run}", "--out", "{out}/map.png"], 8_000),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_disk_full_is_one_line_and_leaves_nothing(inputs, tmp_path, capsys, command):
    if command == "baseline":
        pytest.importorskip("openTSNE")
    data, run = inputs
    argv, leave = COMMANDS[command]
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave)
        args = [a.format(data=data, run=run, out=disk) for a in argv]
        expect_one_line_exit_2([command, *args], capsys, "no space left")
        assert sorted(os.listdir(disk)) == ["filler"]  # no partial file, no temporary file


def test_disk_full_during_overwrite_keeps_the_old_run(inputs, tmp_path, capsys):
    data, _ = inputs
    with tmpfs(tmp_path / "disk") as disk:
        old = make_run(disk / "run", data)
        before = snapshot(old)
        fill(disk, 200_000)
        expect_one_line_exit_2(["fit", str(data), "--out", str(old), "--overwrite", *TINY], capsys, "no space left")
        assert snapshot(old) == before and is_finished(old) and not staging_path(old).exists()
        assert sorted(os.listdir(disk)) == ["filler", "run"]


@pytest.mark.parametrize("command", ["fit", "baseline", "embed", "view", "plot", "compare"])
def test_read_only_output_folder_is_one_line(inputs, tmp_path, capsys, command):
    data, run = inputs
    argv = {
        "fit": ["fit", str(data), "--out", "{out}/run", *TINY],
        "baseline": ["baseline", str(data), "--method", "tsne-pixels", "--out", "{out}/base"],
        "embed": ["embed", str(run), str(data), "--out", "{out}/e.csv"],
        "view": ["view", str(run), "--out", "{out}/viewer"],
        "plot": ["plot", str(run), "--out", "{out}/map.png"],
        "compare": ["compare", str(run), "--out", "{out}/report"],
    }[command]
    if command == "baseline":
        pytest.importorskip("openTSNE")
    with tmpfs(tmp_path / "ro", "size=1m,ro") as folder:
        expect_one_line_exit_2([a.format(out=folder) for a in argv], capsys, "read-only")
        assert os.listdir(folder) == []


def test_read_only_run_folder_is_not_touched_by_overwrite(inputs, tmp_path, capsys):
    data, _ = inputs
    with tmpfs(tmp_path / "disk") as disk:
        old = make_run(disk / "run", data)
        before = snapshot(old)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        expect_one_line_exit_2(["fit", str(data), "--out", str(old), "--overwrite", *TINY], capsys, "read-only")
        assert snapshot(old) == before
