"""`medcne augment-preview`: the grid of originals and views."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medcne.augment import Augmenter
from medcne.cli import main
from medcne.cli.augment_preview import draw_preview, make_views, pick_images
from medcne.datasets import SAMPLE_PATH, load_sample


def test_preview_writes_a_png_grid(tmp_path, capsys):
    out = tmp_path / "sub" / "views.png"
    rc = main(["augment-preview", str(SAMPLE_PATH), "--preset", "rotate", "--out", str(out),
               "--n-images", "3", "--n-views", "4", "--seed", "1"])
    assert rc == 0
    assert "3 images x 4 views, preset rotate" in capsys.readouterr().out
    img = Image.open(out)
    assert img.format == "PNG" and img.width > img.height > 100
    assert not list(out.parent.glob(".*.tmp*"))  # the atomic write left nothing behind


def test_preview_draws_originals_then_views():
    data = load_sample()
    rows = pick_images(data.labels, len(data), 3, seed=0)
    originals = data.images[rows]
    views = make_views(originals, Augmenter("rot90", crop=False, jitter=False, grayscale=False), 5, seed=0)
    assert views.shape == (5, 3, 28, 28, 3)
    fig = draw_preview(originals, views, ["a", "b", "c"], "title")
    axes = fig.axes
    assert len(axes) == 3 * 6
    assert [ax.get_title() for ax in axes[:6]] == ["original"] + [f"view {j}" for j in range(1, 6)]
    assert [axes[6 * i].get_ylabel() for i in range(3)] == ["a", "b", "c"]
    shown = axes[6].get_images()[0].get_array()
    np.testing.assert_allclose(shown, originals[1] / 255.0)
    # rot90 without crop or colour: each view holds the original's pixels, moved.
    view = axes[7].get_images()[0].get_array()
    np.testing.assert_allclose(np.sort(view.ravel()), np.sort(originals[1].ravel() / 255.0), atol=1e-7)


def test_pick_images_cycles_through_classes():
    labels = np.array([0, 0, 0, 1, 1, 2])
    picked = pick_images(labels, 6, 5, seed=0)
    assert sorted(labels[picked][:3]) == [0, 1, 2] and len(set(picked)) == 5
    assert len(pick_images(None, 10, 20, seed=0)) == 10


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--preset", "rotation"], "--preset must be one of 'simclr', 'rot90', 'rotate', 'none'; got 'rotation'"),
        (["--n-views", "0"], "--n-views must be at least 1"),
        (["--fill", "grey"], "--fill must be 'border', 'black'"),
        (["--preset", "rotate", "--fill", "0.5,2,0.5"], "--fill must be 1 or 3 numbers in [0, 1], one per channel"),
        (["--fill", "0.1,0.2"], "--fill must be 'border', 'black' or 1 or 3 comma-separated numbers"),
        (["--channels", "gray", "--fill", "0.5,0.5,0.5"], "--fill has 3 values but the images have 1 channel"),
    ],
)
def test_preview_errors_are_one_line_and_exit_2(tmp_path, capsys, extra, message):
    rc = main(["augment-preview", str(SAMPLE_PATH), "--out", str(tmp_path / "v.png"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v.png").exists()


def test_preview_on_bloodmnist(bloodmnist_path, tmp_path):
    out = tmp_path / "blood.png"
    assert main(["augment-preview", str(bloodmnist_path), "--preset", "rot90", "--out", str(out),
                 "--n-images", "2", "--n-views", "2"]) == 0
    assert Image.open(out).width > 100


def test_a_preview_too_large_to_look_at_is_one_line_before_anything_is_read(tmp_path, capsys):
    out = tmp_path / "views.png"
    assert main(["augment-preview", str(tmp_path / "missing.npz"), "--out", str(out),
                 "--n-images", "6", "--n-views", "100000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make 600,006 panels" in err[0] and "at most 1,000" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("name, ok", [("v.jpg", False), ("v.txt", False), ("v", False), ("v.svg", True),
                                      ("v.pdf", True)])
def test_the_preview_is_written_in_the_format_its_name_says(tmp_path, capsys, name, ok):
    # PNG data was written under any name (views.jpg, views.txt).
    out = tmp_path / name
    code = main(["augment-preview", str(SAMPLE_PATH), "--out", str(out), "--n-images", "2", "--n-views", "1"])
    if not ok:
        assert code == 2 and "the views are drawn as .png, .pdf or .svg" in capsys.readouterr().err
        assert not out.exists()
        return
    assert code == 0
    assert out.read_bytes()[:5] == {".pdf": b"%PDF-", ".svg": b"<?xml"}[out.suffix]
