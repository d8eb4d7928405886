"""Bad input: a specific exception from the API, one line and exit 2 from the CLI, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import random_images
from medcne import errors
from medcne.cli import main
from medcne.datasets import from_array, load_dataset


def cli_error(capsys, *argv) -> str:
    """Run the CLI, check exit 2 with exactly one line on stderr, return that line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("medcne ")
    assert "Traceback" not in err
    return err


def files_in(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_missing_path(tmp_path, capsys):
    with pytest.raises(errors.DataNotFoundError):
        load_dataset(tmp_path / "nope.npz")
    line = cli_error(capsys, "info", str(tmp_path / "nope.npz"))
    assert "nope.npz" in line and "no such file" in line


def test_unknown_format(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(errors.UnknownFormatError):
        load_dataset(tmp_path / "notes.txt")
    assert ".npz" in cli_error(capsys, "info", str(tmp_path / "notes.txt"))


def test_npz_with_unknown_arrays(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", pixels=random_images(2))
    with pytest.raises(errors.UnknownFormatError, match="'images'"):
        load_dataset(tmp_path / "x.npz")


def test_truncated_npz(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, images=random_images(50, 16))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:200])
    with pytest.raises(errors.DataError, match="cut.npz"):
        load_dataset(tmp_path / "cut.npz")


def make_bad_files(root, n_bad: int):
    (root / "a").mkdir(parents=True)
    for i, img in enumerate(random_images(3)):
        Image.fromarray(img).save(root / "a" / f"ok{i}.png")
    good_png = (root / "a" / "ok0.png").read_bytes()
    for i in range(n_bad):
        # Alternate garbage and a truncated PNG: both must be caught.
        data = b"not an image at all" if i % 2 else good_png[: len(good_png) // 2]
        (root / "a" / f"bad{i:02d}.png").write_bytes(data)


def test_unreadable_images_are_listed_up_to_ten(tmp_path, capsys):
    make_bad_files(tmp_path / "d", n_bad=12)
    with pytest.raises(errors.BadImageError) as info:
        load_dataset(tmp_path / "d")
    assert len(info.value.bad_files) == 12
    message = str(info.value)
    assert message.count("bad0") + message.count("bad1") >= 10 and "and 2 more" in message and "`skip_bad`" in message
    before = files_in(tmp_path)
    line = cli_error(capsys, "info", str(tmp_path / "d"))
    assert "12 unreadable" in line
    assert files_in(tmp_path) == before


def test_skip_bad_skips_and_reports(tmp_path, capsys):
    make_bad_files(tmp_path / "d", n_bad=2)
    data = load_dataset(tmp_path / "d", skip_bad=True)
    assert len(data) == 3 and any("skipped 2" in n for n in data.notes)
    assert main(["info", str(tmp_path / "d"), "--skip-bad"]) == 0
    assert "skipped 2 unreadable" in capsys.readouterr().out


def test_mixed_sizes_without_resize(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    Image.fromarray(random_images(1, 8)[0]).save(tmp_path / "c/s.png")
    Image.fromarray(random_images(1, 12)[0]).save(tmp_path / "c/l.png")
    with pytest.raises(errors.MixedSizeError):
        load_dataset(tmp_path)
    assert "--size" in cli_error(capsys, "info", str(tmp_path))
    assert main(["info", str(tmp_path), "--size", "10"]) == 0


def test_label_count_mismatch(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", images=random_images(5), labels=np.arange(4))
    with pytest.raises(errors.LabelMismatchError):
        load_dataset(tmp_path / "d.npz")
    with pytest.raises(errors.LabelMismatchError):
        from_array(random_images(5), labels=np.arange(3))
    assert "4 labels for 5 images" in cli_error(capsys, "info", str(tmp_path / "d.npz"))


@pytest.mark.parametrize("kind", ["npz", "folder", "csv"])
def test_empty_dataset(tmp_path, capsys, kind):
    if kind == "npz":
        path = tmp_path / "e.npz"
        np.savez(path, images=np.zeros((0, 8, 8, 3), np.uint8), labels=np.zeros(0, int))
    elif kind == "folder":
        path = tmp_path / "empty"
        (path / "cls").mkdir(parents=True)
    else:
        path = tmp_path / "e.csv"
        path.write_text("path,label\n")
    with pytest.raises(errors.EmptyDatasetError):
        load_dataset(path)
    cli_error(capsys, "info", str(path))


@pytest.mark.parametrize("bad", [np.nan, 1.5, -0.1])
def test_float_pixels_outside_range_or_nan(tmp_path, capsys, bad):
    images = np.full((3, 8, 8, 3), 0.5)
    images[1, 2, 3, 0] = bad
    with pytest.raises(errors.PixelRangeError):
        from_array(images)
    np.savez(tmp_path / "f.npz", images=images)
    line = cli_error(capsys, "info", str(tmp_path / "f.npz"))
    assert "[0, 1]" in line or "NaN" in line


def test_csv_without_named_column(tmp_path, capsys):
    Image.fromarray(random_images(1)[0]).save(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("file,label\na.png,x\n")
    with pytest.raises(errors.MissingColumnError, match="'path'"):
        load_dataset(tmp_path / "l.csv")
    with pytest.raises(errors.MissingColumnError, match="'dx'"):
        load_dataset(tmp_path / "l.csv", path_column="file", label_column="dx")
    assert "--path-column" in cli_error(capsys, "info", str(tmp_path / "l.csv"))
    assert main(["info", str(tmp_path / "l.csv"), "--path-column", "file"]) == 0


def test_bad_parameters(tmp_path):
    np.savez(tmp_path / "d.npz", images=random_images(4), labels=np.arange(4) % 2)
    with pytest.raises(errors.MedcneError, match="subset"):
        load_dataset(tmp_path / "d.npz", subset=10)
    with pytest.raises(errors.MedcneError, match="channels"):
        load_dataset(tmp_path / "d.npz", channels="cmyk")
    with pytest.raises(errors.MedcneError, match="split"):
        load_dataset(tmp_path / "d.npz", split="validation")
    with pytest.raises(errors.MedcneError, match="size"):
        load_dataset(tmp_path / "d.npz", size="big")


def test_debug_flag_shows_traceback(tmp_path):
    with pytest.raises(errors.DataNotFoundError):
        main(["--debug", "info", str(tmp_path / "nope.npz")])
