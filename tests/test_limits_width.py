"""The refusal of a --width too large for memory states only what is known before the images are read."""

from __future__ import annotations

import pytest

import medcne.limits as limits
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH
from medcne.errors import MedcneError


def test_a_huge_width_names_the_weights_not_a_batch_or_image_size(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["fit", str(SAMPLE_PATH), "--width", "100000", "--batch-size", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--width 100000 alone" in err[0] and "weights" in err[0], err
    assert "--batch-size 0" not in err[0] and "8 px" not in err[0], err
    assert not out.exists()


def test_the_weights_check_counts_each_process(monkeypatch):
    need = limits.weight_bytes(64)
    monkeypatch.setattr(limits, "available_bytes", lambda: int(1.5 * need))
    limits.check_weights(64)
    with pytest.raises(MedcneError, match="a copy in each of 2 processes"):
        limits.check_weights(64, processes=2)


def test_the_training_check_names_parameters_in_python_and_options_on_the_command_line(monkeypatch, tmp_path,
                                                                                        capsys):
    import numpy as np

    from medcne import TSimCNE

    need = limits.training_bytes(16, 64, 28, "resnet18", 1, 0)
    monkeypatch.setattr(limits, "available_bytes", lambda: need // 2)
    X = np.zeros((64, 28, 28, 3), dtype=np.uint8)
    with pytest.raises(MedcneError) as err:
        TSimCNE(width=16, batch_size=64, device="cpu").validate(X)
    assert "`width` 16, `batch_size` 64" in str(err.value) and "--" not in str(err.value)
    out = tmp_path / "run"
    assert main(["fit", str(SAMPLE_PATH), "--width", "16", "--batch-size", "64", "--size", "28", "--epochs", "1,0,1",
                 "--device", "cpu", "--out", str(out)]) == 2
    line = capsys.readouterr().err.strip()
    assert "--width 16, --batch-size 64" in line and "lower --width or --batch-size" in line and not out.exists()
