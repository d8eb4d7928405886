"""`medcne embed` reads new images as the run read its own: size, channels, window and axis default to the run's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from medcne.cli import main  # noqa: E402
from safetyhelpers import make_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def volumes(root: Path) -> Path:
    """Two volumes whose axes have different lengths, so that each --axis gives other slices."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        root.mkdir(parents=True, exist_ok=True)
        data = rng.uniform(-1000, 1000, (12, 10, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(root / f"{name}.nii.gz"))
    return root


FIT = ["--epochs", "1,0,1", "--warmup", "0,0,0", "--width", "4", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def scan_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_scans")
    data = volumes(root / "vols")
    run = root / "run"
    assert main(["fit", str(data), "--out", str(run), "--axis", "sagittal", "--window", "lung", "--size", "16",
                 *FIT]) == 0
    return run, data


def read_csv(path: Path) -> dict[str, tuple[str, str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return {r[3]: (r[0], r[1]) for r in rows}


def test_embed_of_a_runs_own_scans_without_options_gives_its_map(scan_run, tmp_path, capsys):
    run, data = scan_run
    out = tmp_path / "placed.csv"
    assert main(["embed", str(run), str(data), "--out", str(out), "--device", "cpu"]) == 0
    placed, trained = read_csv(out), read_csv(run / "embedding.csv")
    assert len(placed) == len(trained) == 24  # 12 sagittal slices per volume, not 8 axial ones
    for i, (x, y) in trained.items():
        assert np.allclose([float(v) for v in placed[i]], [float(x), float(y)], atol=1e-4), i


def test_embed_says_when_a_given_option_differs_from_the_runs(scan_run, tmp_path, capsys):
    run, data = scan_run
    out = tmp_path / "placed.csv"
    assert main(["embed", str(run), str(data), "--out", str(out), "--window", "bone", "--device", "cpu"]) == 0
    assert "--window bone differs from the run's lung" in capsys.readouterr().out
    assert len(read_csv(out)) == 24  # the run's axis still


def test_a_scan_run_places_images_of_another_format(scan_run, tmp_path, capsys):
    """The window and axis of a scan run do not apply to an npz (the size and channels do)."""
    run, _ = scan_run
    other = make_data(tmp_path / "other.npz", n=8)
    out = tmp_path / "placed.csv"
    assert main(["embed", str(run), str(other), "--out", str(out), "--channels", "gray", "--device", "cpu"]) == 0
    assert len(read_csv(out)) == 8
    # Colour images made grey for a network trained on grey scans: grey is all it ever saw, so no note.
    assert "differs from the run" not in capsys.readouterr().out


def test_embed_refuses_another_size_before_reading(scan_run, tmp_path, capsys):
    # It used to note "--size 28 differs ... placed as the network never saw them", then fail on the shape.
    run, data = scan_run
    for option in (["--size", "28"], ["--size", "28x16"]):
        assert main(["embed", str(run), str(data), "--out", str(tmp_path / "x.csv"), *option, "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"{option[0]} {option[1]} differs from the run's" in err and "leave " + option[0] + " out" in err, err
        assert len(err.splitlines()) == 1 and not (tmp_path / "x.csv").exists()


def test_other_channels_than_the_runs_are_one_refusal_without_a_note_before(scan_run, tmp_path, capsys):
    # It noted "--channels rgb differs ... placed as the network never saw them", then refused the shape.
    run, data = scan_run
    assert main(["embed", str(run), str(data), "--out", str(tmp_path / "x.csv"), "--channels", "rgb",
                 "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "differs from the run" not in captured.out and len(captured.err.strip().splitlines()) == 1, captured
    assert "--channels" in captured.err and not (tmp_path / "x.csv").exists()


def test_a_channel_change_is_noted_only_where_the_network_saw_no_such_images():
    from types import SimpleNamespace

    from medcne.cli.embed import channels_note

    data = type("Data", (), {"image_shape": (16, 16, 3), "__len__": lambda self: 4})()
    for grey_views, expect in ((True, None), (False, "placed as the network never saw them")):
        est = SimpleNamespace(image_shape_=(16, 16, 3), grayscale=grey_views)
        note = channels_note({"channels": "rgb"}, {"channels": "keep"}, data, est)
        assert note is None if expect is None else expect in note
    assert channels_note({"channels": "keep"}, {"channels": "keep"}, data, est) is None
