"""What a reader noticed and handled (files skipped with --skip-bad, an alpha channel dropped) is said
by every command that reads the data, not only by `info`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medcne.cli import main
from medcne.runs import make_baseline
from safetyhelpers import TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cells"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    (root / "a" / "broken.png").write_bytes(b"not a png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(root / "b" / "alpha.png")
    return root


def notes(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("note: ")]


def test_fit_embed_and_baseline_say_what_the_reader_skipped_and_dropped(folder, tmp_path, capsys):
    assert main(["fit", str(folder), "--out", str(tmp_path / "run"), *TINY, "--skip-bad"]) == 0
    said = notes(capsys.readouterr().out)
    assert any("skipped 1 unreadable image file(s)" in n for n in said), said
    assert any("alpha" in n for n in said), said
    assert main(["embed", str(tmp_path / "run"), str(folder), "--skip-bad", "--out", str(tmp_path / "e.csv")]) == 0
    assert any("skipped 1 unreadable image file(s)" in n for n in notes(capsys.readouterr().out))
    make_baseline(folder, "tsne-pixels", tmp_path / "base", data_spec={"skip_bad": True}, tsne_params={"n_iter": 10})
    assert any("skipped 1 unreadable image file(s)" in n for n in notes(capsys.readouterr().out))
