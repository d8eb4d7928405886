"""A thumbnail grid whose canvas cannot fit in memory is refused before any image is read, naming the
largest grid that fits; an out-of-memory line names only options the command has."""

from __future__ import annotations

from argparse import Namespace

import numpy as np
import pytest

import medcne.datasets.memory as memory
import medcne.plot.thumbnails as thumbnails
from evalhelpers import make_run
from medcne.cli import main
from medcne.cli.failures import describe
from medcne.errors import MedcneError
from medcne.plot import new_figure, plot_thumbnails
from safetyhelpers import error_lines, snapshot

MB = 2**20


@pytest.fixture
def little_memory(monkeypatch):
    """10 MiB available: 8 MiB may be used, a canvas of 362 px a side."""
    for module in (memory, thumbnails):
        monkeypatch.setattr(module, "available_bytes", lambda: 10 * MB, raising=False)


class Unreadable:
    """Images of 8x8x3 that fail when read."""

    shape = (50, 8, 8, 3)

    def __len__(self):
        return 50

    def __getitem__(self, index):
        raise AssertionError("an image was read")


def test_a_grid_too_large_for_memory_is_refused_before_reading_images(little_memory):
    Z = np.random.default_rng(0).random((50, 2))
    with pytest.raises(MedcneError, match=r"`grid` 100: a thumbnail canvas of 800 x 800 px .* use `grid` 45 or less"):
        plot_thumbnails(Z, Unreadable(), grid=100, ax=new_figure(4, 4).add_subplot())


def test_a_grid_that_fits_is_drawn(little_memory):
    Z = np.random.default_rng(0).random((50, 2))
    images = np.zeros((50, 8, 8, 3), np.uint8)
    plot_thumbnails(Z, images, grid=45, ax=new_figure(4, 4).add_subplot())


def test_cli_names_grid_and_writes_nothing(tmp_path, capsys, little_memory):
    run = make_run(tmp_path / "run", n=40)  # 28 px images
    before = snapshot(tmp_path)
    code = main(["plot", str(run), "--kind", "thumbnails", "--grid", "40", "--out", str(tmp_path / "g.png")])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, lines
    assert "--grid 40" in lines[0] and "--grid 12 or less" in lines[0] and "`" not in lines[0], lines
    assert snapshot(tmp_path) == before  # no figure, no lock file


def test_out_of_memory_names_only_the_commands_own_options():
    message, _ = describe(MemoryError())  # the command unknown: no option of another command
    assert "--" not in message.replace("--help", "")
    plot = Namespace(runs=["r"], kind="thumbnails", grid=3000, out="g.png")
    message, status = describe(MemoryError(), args=plot)
    assert status == 2 and "--grid" in message and "--batch-size" not in message and "--subset" not in message
    message, _ = describe(MemoryError(), args=Namespace(subset=None, size=None, batch_size=8, width=16))
    assert "--subset, --size, --batch-size or --width" in message


def test_the_cli_names_the_failing_commands_own_options_after_running_out_of_memory(monkeypatch, capsys, tmp_path):
    """`medcne plot` that runs out of memory is told to lower --grid, not --batch-size (which it has not)."""
    import medcne.cli.plot as plot_cli
    from medcne.cli import main

    def oom(args):
        raise MemoryError()

    monkeypatch.setattr(plot_cli, "_draw", oom)
    (tmp_path / "run").mkdir()
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "out of memory (memory); ask for less: lower --grid" in err and "--batch-size" not in err


def test_torch_running_out_of_cpu_memory_is_out_of_memory_not_a_bug(monkeypatch, capsys, tmp_path):
    """torch's CPU allocator raises a RuntimeError (a process memory limit, as HPC schedulers set):
    the line says out of memory and names the command's options (evaluate: --np-queries), exit 2."""
    import torch

    from medcne.cli import main

    def oom(*args, **kwargs):
        torch.empty(10**15, dtype=torch.uint8)  # more than any machine: the allocator's own error

    monkeypatch.setattr("medcne.runs.read_run", oom)
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "out of memory (memory); ask for less:" in err and "--np-queries" in err and "bug" not in err, err
