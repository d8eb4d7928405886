"""Tiny data and run folders for the safety tests, and what the tests compare: file hashes and error lines."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from medcne.cli import main
from medcne.datasets import SAMPLE_PATH, load_dataset

# The settings of a t-SimCNE run that trains in a few seconds on 48 images of 16x16.
TINY = ["--size", "16", "--epochs", "1,1,1", "--warmup", "0,0,0", "--width", "4", "--batch-size", "16",
        "--device", "cpu", "--checkpoint-minutes", "0"]
# A tqdm progress line ("... 3/9 [00:01<...") is not an error line.
PROGRESS = re.compile(r"\d+/\d+ \[|\?step/s|^\s*$")


def make_data(path: Path, n: int = 48) -> Path:
    """``n`` images of the bundled sample at 16x16, as an npz the readers take."""
    data = load_dataset(SAMPLE_PATH, subset=n, seed=0, size=16)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=data.to_numpy(), labels=data.labels, class_names=np.array(data.class_names))
    return path


def make_run(folder: Path, data_path: Path) -> Path:
    """A finished t-SimCNE run of ``data_path`` without training (epochs 0,0,0: the map at init)."""
    from medcne import TSimCNE
    from medcne.runs import write_tsimcne_run

    data = load_dataset(data_path)
    est = TSimCNE(epochs=(0, 0, 0), warmup=(0, 0, 0), batch_size=16, width=4, device="cpu", verbose=False,
                  random_state=0).fit(data)
    folder.mkdir(parents=True, exist_ok=True)
    write_tsimcne_run(folder, est, data, {"path": str(Path(data_path).resolve())})
    return folder


def stop_at_first_epoch(monkeypatch, exc=KeyboardInterrupt):
    """Stop training at the end of its first epoch, after the checkpoint of that epoch was written."""
    import medcne.runs.tsimcne as tsimcne

    def stop(run, rows):
        raise exc() if isinstance(exc, type) else exc

    monkeypatch.setattr(tsimcne, "write_history", stop)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: relative path -> sha256 of its bytes ('dir' for folders)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() and not p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def error_lines(err: str) -> list[str]:
    """The lines of stderr that are not progress-bar output."""
    return [line for line in re.split(r"[\r\n]+", err) if not PROGRESS.search(line)]


def refused(argv, capsys, *words) -> str:
    """Run the CLI; it must exit 2 with one error line holding ``words``."""
    assert main(argv) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]
