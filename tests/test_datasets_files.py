"""Image files and folders read as given: 16-bit files scaled by bit depth, unreadable and
medcne-written folders reported, CSV paths kept inside the CSV's folder, TSV read with tabs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import random_images
from inputhelpers import check_one_line_error, info_answer, png_bytes, snapshot
from medcne import errors
from medcne.datasets import load_dataset


def gradient16(h=64, w=64) -> np.ndarray:
    """uint16 values spread over the whole 0..65535 range."""
    return (np.arange(h * w, dtype=np.float64).reshape(h, w) * 65535 / (h * w - 1)).round().astype(np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", ["keep", "rgb", "gray"])
def test_16_bit_files_are_scaled_by_bit_depth_not_clipped(tmp_path, suffix, channels):
    values = gradient16()
    (tmp_path / "c").mkdir()
    Image.fromarray(values).save(tmp_path / "c" / f"a{suffix}")
    assert Image.open(tmp_path / "c" / f"a{suffix}").mode == "I;16"  # PIL wrote a real 16-bit file
    data = load_dataset(tmp_path, channels=channels)
    img = data.images[0]
    assert img.shape == (64, 64, 3 if channels == "rgb" else 1)
    expected = np.round(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(img[..., 0], expected)
    assert (img == 255).mean() < 0.01  # PIL's own conversion saturated 99.6% of them
    assert any("1 16-bit image file(s) scaled to 8 bits" in n and "65535 -> 255" in n for n in data.notes)


def test_dark_16_bit_data_is_noted(tmp_path):
    (tmp_path / "c").mkdir()
    Image.fromarray((gradient16() // 16).astype(np.uint16)).save(tmp_path / "c" / "a.png")  # 12-bit data
    data = load_dataset(tmp_path)
    assert data.images.max() == 16
    assert any("largest value is 4095" in n and "look dark" in n for n in data.notes)


def test_48_bit_rgb_png_keeps_its_high_byte(tmp_path):
    pixels = np.zeros((4, 4, 3), np.uint16)
    pixels[0, 0] = (65535, 32768, 257)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.png").write_bytes(png_bytes(4, 4, pixels, bit_depth=16))
    assert load_dataset(tmp_path).images[0, 0, 0].tolist() == [255, 128, 1]


def test_float_tiff_in_unit_range_is_scaled_and_outside_it_is_a_bad_file(tmp_path):
    (tmp_path / "c").mkdir()
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "c" / "ok.tif")
    assert load_dataset(tmp_path).images.max() == 128
    Image.fromarray(np.full((4, 4), 7.0, np.float32)).save(tmp_path / "c" / "bad.tif")
    with pytest.raises(errors.BadImageError, match=r"bad\.tif \(32-bit float pixels outside \[0, 1\]"):
        load_dataset(tmp_path)
    assert len(load_dataset(tmp_path, skip_bad=True)) == 1


def make_classes(root, names=("a", "b"), n=2):
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(random_images(n, seed=k)):
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def test_unreadable_class_folder_is_an_error_or_skipped_and_counted(tmp_path, monkeypatch, capfd):
    root = make_classes(tmp_path / "d", ("a", "b", "c"))
    real = os.scandir

    def scandir(path):  # root may read anything; a permission error is simulated for class b
        if os.fspath(path).endswith(f"{os.sep}b"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(errors.DataError, match=r"1 folder\(s\) cannot be read: b \(Permission denied\).*`skip_bad`"):
        load_dataset(root)
    line = check_one_line_error(*info_answer(capfd, str(root)))
    assert "b (Permission denied)" in line
    data = load_dataset(root, skip_bad=True)
    assert data.class_names == ["a", "c"] and len(data) == 4
    assert "skipped 1 unreadable folder(s): b (Permission denied)" in data.notes


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_unreadable_class_folder_for_real(tmp_path):
    root = make_classes(tmp_path / "d")
    (root / "b").chmod(0)
    try:
        with pytest.raises(errors.DataError, match="cannot be read: b"):
            load_dataset(root)
    finally:
        (root / "b").chmod(0o755)


def test_medcne_run_and_viewer_folders_are_not_read_as_classes(tmp_path, capfd):
    root = make_classes(tmp_path / "d")
    run = root / "run"
    run.mkdir()
    (run / "params.json").write_text(json.dumps({"method": "tsimcne", "data": {}}))
    Image.fromarray(random_images(1)[0]).save(run / "map.png")
    viewer = root / "b" / "view"  # nested inside a class: its sprites would become images of b
    viewer.mkdir()
    (viewer / ".medcne-viewer").write_text("")
    Image.fromarray(random_images(1)[0]).save(viewer / "sheet0.png")
    unfinished = root / "old"  # a run killed before params.json: its own files still tell
    unfinished.mkdir()
    for name in ("checkpoint.pt", "history.csv"):
        (unfinished / name).write_text("x")
    Image.fromarray(random_images(1)[0]).save(unfinished / "map.png")
    data = load_dataset(root)
    assert data.class_names == ["a", "b"] and len(data) == 4
    assert "skipped 3 folder(s) written by medcne: b/view (viewer), old (run), run (run)" in data.notes
    with pytest.raises(errors.DataError, match="is a run folder written by medcne"):
        load_dataset(run)
    rc, out, err = info_answer(capfd, str(root))
    assert rc == 0 and "written by medcne" in out


def test_a_params_json_without_method_is_an_ordinary_folder(tmp_path):
    root = make_classes(tmp_path / "d")
    (root / "a" / "params.json").write_text(json.dumps({"lr": 1}))
    assert load_dataset(root).class_counts() == {"a": 2, "b": 2}


def test_hidden_files_root_images_and_empty_folders_are_noted(tmp_path):
    root = make_classes(tmp_path / "d")
    (root / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble junk
    (root / ".thumbs").mkdir()
    Image.fromarray(random_images(1)[0]).save(root / "stray.png")
    (root / "empty").mkdir()
    data = load_dataset(root)
    assert len(data) == 4
    assert "ignored 2 hidden file(s) or folder(s) (names starting with '.')" in data.notes
    assert any("1 image file(s) directly in the folder ignored" in n for n in data.notes)
    assert "sub-folder(s) without images ignored: empty" in data.notes


def test_symlink_loop_is_walked_once(tmp_path):
    root = make_classes(tmp_path / "d")
    (root / "a" / "loop").symlink_to(root / "a")
    (root / "c").symlink_to(root / "b")  # a class folder that leads to another: its images are b's, read once
    data = load_dataset(root)
    assert data.class_counts() == {"a": 2, "b": 2}
    assert "skipped 2 folder(s) that lead to a folder read already (symbolic links): a/loop, c" in data.notes
    assert not any("without images" in n for n in data.notes)  # c holds images: they were read as b's


def test_images_below_a_class_folder_are_said_to_join_that_class(tmp_path):
    root = make_classes(tmp_path / "d")
    (root / "b" / "fibroadenoma").mkdir()
    Image.fromarray(random_images(1)[0]).save(root / "b" / "fibroadenoma" / "x.png")
    data = load_dataset(root)
    assert data.class_counts() == {"a": 2, "b": 3}
    assert "images in folders below a class folder are read as that class: b (1 image(s))" in data.notes
    assert not any("below a class folder" in n for n in load_dataset(make_classes(tmp_path / "flat")).notes)


def write_csv(folder, text, name="list.csv"):
    path = folder / name
    path.write_text(text)
    return path


def test_tsv_is_read_with_tabs(tmp_path):
    make_classes(tmp_path)
    path = write_csv(tmp_path, "path\tdiagnosis, type\na/0.png\tAML, M2\nb/1.png\tnormal\n", "list.tsv")
    data = load_dataset(path, label_column="diagnosis, type")
    assert data.class_names == ["AML, M2", "normal"] and list(data.ids) == ["a/0.png", "b/1.png"]


def test_csv_quoting_blank_lines_and_label_whitespace(tmp_path):
    make_classes(tmp_path)
    path = write_csv(tmp_path, 'path,label\n"a/0.png","AML, ""M2"""\n\nb/1.png, normal \nb/0.png,normal\n')
    data = load_dataset(path)
    assert data.class_names == ['AML, "M2"', "normal"] and list(data.labels) == [0, 1, 1]


def test_csv_paths_outside_its_folder_are_never_opened(tmp_path, monkeypatch, capfd):
    inside = tmp_path / "data"
    make_classes(inside)
    Image.fromarray(random_images(1)[0]).save(tmp_path / "secret.png")
    path = write_csv(inside, "path\na/0.png\n../secret.png\n/etc/passwd\n")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    with pytest.raises(errors.DataError, match=r"2 image path\(s\) lead outside .*line 3: '\.\./secret\.png'"):
        load_dataset(path)
    before = snapshot(tmp_path)
    line = check_one_line_error(*info_answer(capfd, str(path)))
    assert "--allow-outside" in line and snapshot(tmp_path) == before
    assert opened == []
    write_csv(inside, "path\na/0.png\n../secret.png\n")
    data = load_dataset(path, allow_outside=True)
    assert list(data.ids) == ["a/0.png", "../secret.png"]
    from medcne.cli import main

    assert main(["info", str(path), "--allow-outside"]) == 0  # the command-line opt-in
    assert "images:   2" in capfd.readouterr().out


def test_csv_symlink_leading_outside_is_refused(tmp_path):
    inside = tmp_path / "data"
    make_classes(inside)
    Image.fromarray(random_images(1)[0]).save(tmp_path / "secret.png")
    (inside / "link.png").symlink_to(tmp_path / "secret.png")
    path = write_csv(inside, "path\na/0.png\nlink.png\n")
    with pytest.raises(errors.DataError, match="outside"):
        load_dataset(path)
    assert len(load_dataset(path, allow_outside=True)) == 2


def test_csv_row_pointing_at_a_folder_or_fifo_is_a_bad_file_not_a_hang(tmp_path):
    make_classes(tmp_path)
    os.mkfifo(tmp_path / "pipe.png")
    path = write_csv(tmp_path, "path\na/0.png\nb\npipe.png\nmissing.png\n")
    with pytest.raises(errors.BadImageError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "b (not a regular file)" in message and "pipe.png (not a regular file)" in message
    assert "missing.png (missing)" in message


def test_line_breaks_in_names_cannot_split_the_error_line(tmp_path, capfd):
    make_classes(tmp_path)
    path = write_csv(tmp_path, 'path\na/0.png\n"a/\nevil.png"\n')
    with pytest.raises(errors.BadImageError, match=r"a/\\nevil\.png \(missing\)"):
        load_dataset(path)
    check_one_line_error(*info_answer(capfd, str(path)))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tiff"])
def test_photos_are_turned_as_their_exif_orientation_says(tmp_path, suffix):
    # A phone's dermoscopy photo: stored as taken (wide), tagged "turn 90 degrees" (6), shown tall by every viewer.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the stored image's left
    (tmp_path / "a").mkdir()
    for name, orientation in (("as_taken", 1), ("turned", 6), ("upside_down", 3)):
        exif = Image.Exif()
        exif[274] = orientation
        Image.fromarray(stored).save(tmp_path / "a" / f"{name}{suffix}", exif=exif, quality=100)
    data = load_dataset(tmp_path, size=(40, 40))
    # Pillow turns a TIFF itself as it decodes it (and drops the tag): turned all the same, not counted.
    turned = [n for n in data.notes if "image file(s) turned as their EXIF orientation tag says" in n]
    assert [n.split()[0] for n in turned] == ([] if suffix == ".tiff" else ["2"])
    by_id = dict(zip(data.ids, data.images, strict=True))
    for name, band in (("as_taken", np.s_[:, :10]), ("turned", np.s_[:10, :]), ("upside_down", np.s_[:, 30:])):
        image = by_id[f"a/{name}{suffix}"].astype(int)  # 6: the left edge turned to the top
        assert image[band].mean() > 200 and image.mean() < 128, name


def test_a_run_made_before_photos_were_turned_reads_them_as_stored(tmp_path):
    import json

    from medcne.runs import fit_run, read_run

    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(12):
        exif = Image.Exif()
        exif[274] = 6 if k % 2 else 1
        Image.fromarray(rng.integers(0, 256, (16, 24, 3), np.uint8)).save(
            tmp_path / "d" / "ab"[k % 2] / f"{k}.jpg", exif=exif, quality=95)
    params = dict(epochs=(1, 0, 1), warmup=(0, 0, 0), width=2, batch_size=8, device="cpu", verbose=False)
    run = fit_run(tmp_path / "d", tmp_path / "run", params, data_spec={"size": 16, "upright": False})
    record = json.loads((run.path / "params.json").read_text())
    assert record["data"]["upright"] is False
    del record["data"]["upright"]  # as a run of an older medcne records it
    (run.path / "params.json").write_text(json.dumps(record))
    assert len(read_run(run.path).load_images()) == 12  # read as stored, as that run read them
    new = fit_run(tmp_path / "d", tmp_path / "new", params, data_spec={"size": 16})
    assert json.loads((new.path / "params.json").read_text())["data"]["upright"] is True
    assert len(read_run(new.path).load_images()) == 12


def test_a_csv_that_lists_a_file_twice_is_refused_naming_it(tmp_path):
    from medcne import errors

    make_classes(tmp_path)
    (tmp_path / "list.csv").write_text("path,label\na/0.png,a\nb/0.png,b\na/0.png,a\n")
    with pytest.raises(errors.DataError, match="the path 'a/0.png' is given to 2 images: a file listed twice; "
                                               "remove the repeated rows"):
        load_dataset(tmp_path / "list.csv")
