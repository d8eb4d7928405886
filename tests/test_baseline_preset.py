"""`baseline --method tsne-simclr --preset rotate`: SimCLR trained with the preset and ablation switches given."""

from __future__ import annotations

import json

import pytest

import medcne.augment
import medcne.estimator
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH

TINY = ["--subset", "40", "--size", "16", "--epochs", "1", "--width", "4", "--batch-size", "20", "--device", "cpu",
        "--jobs", "1"]


@pytest.fixture
def augmenters(monkeypatch):
    """The (preset, switches) of every augmenter training builds."""
    seen = []
    real = medcne.augment.augmenter_for

    def spy(images, preset, compile=False, **switches):
        seen.append((preset, switches))
        return real(images, preset, compile=compile, **switches)

    monkeypatch.setattr(medcne.estimator, "augmenter_for", spy)  # where fit looks it up
    return seen


@pytest.mark.slow
def test_simclr_trains_with_the_preset_and_switches(tmp_path, augmenters, one_torch_thread, capsys):
    out = tmp_path / "run"
    assert main(["baseline", str(SAMPLE_PATH), "--method", "tsne-simclr", "--out", str(out), "--preset", "rotate",
                 "--no-crop", *TINY]) == 0
    assert augmenters == [("rotate", {"crop": False, "jitter": True, "grayscale": True})]
    features = json.loads((out / "params.json").read_text())["features"]
    assert features["preset"] == "rotate" and features["crop"] is False and features["jitter"] is True


@pytest.mark.slow
def test_simclr_default_preset_is_recorded(tmp_path, augmenters, one_torch_thread, capsys):
    out = tmp_path / "run"
    assert main(["baseline", str(SAMPLE_PATH), "--method", "tsne-simclr", "--out", str(out), *TINY]) == 0
    assert augmenters == [("simclr", {"crop": True, "jitter": True, "grayscale": True})]
    assert json.loads((out / "params.json").read_text())["features"]["preset"] == "simclr"


@pytest.mark.parametrize("flag", [["--preset", "rotate"], ["--no-jitter"]])
def test_augmentation_options_on_other_methods_are_an_error(tmp_path, flag, capsys):
    out = tmp_path / "run"
    assert main(["baseline", str(SAMPLE_PATH), "--method", "tsne-pixels", "--out", str(out), *flag]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tsne-simclr only" in err[0] and not out.exists()
