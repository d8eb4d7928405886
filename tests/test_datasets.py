"""Every reader on tiny files made in a temporary folder, plus the real BloodMNIST copy."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import random_images
from medcne.datasets import (
    SAMPLE_PATH,
    ImageSet,
    LazyImages,
    from_array,
    from_torch_dataset,
    load_dataset,
    load_sample,
    stratified_indices,
)


def write_medmnist(path, size=8, channels=3, n=(6, 2, 3), n_classes=3):
    arrays = {}
    for k, (split, count) in enumerate(zip(("train", "val", "test"), n, strict=True)):
        arrays[f"{split}_images"] = random_images(count, size, channels, seed=k)
        arrays[f"{split}_labels"] = (np.arange(count) % n_classes).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_medmnist_npz_joins_splits_in_order(tmp_path):
    path = tmp_path / "bloodmnist.npz"
    arrays = write_medmnist(path)
    data = load_dataset(path)
    assert len(data) == 11
    assert data.image_shape == (8, 8, 3)
    np.testing.assert_array_equal(data.images[6:8], arrays["val_images"])
    assert data.labels.dtype == np.int64 and data.labels.ndim == 1
    assert list(data.ids[:2]) == ["train/0", "train/1"] and data.ids[6] == "val/0"
    # MedMNIST file names give the official class names.
    assert data.class_names[0] == "basophil"


def test_medmnist_npz_one_split_and_gray_any_size(tmp_path):
    path = tmp_path / "pneumoniamnist_64.npz"
    write_medmnist(path, size=64, channels=1, n_classes=2)
    data = load_dataset(path, split="test")
    assert len(data) == 3 and data.image_shape == (64, 64, 1)
    assert list(data.ids) == ["test/0", "test/1", "test/2"]
    assert data.class_names == ["normal", "pneumonia"]


def test_plain_npz_with_split_and_class_names(tmp_path):
    path = tmp_path / "plain.npz"
    images = random_images(6)
    np.savez(path, images=images, labels=np.array([0, 1, 0, 1, 0, 1]),
             class_names=np.array(["a", "b"]), split=np.array([0, 0, 1, 2, 2, 2], np.int8))
    data = load_dataset(path)
    assert data.class_counts() == {"a": 3, "b": 3}
    test = load_dataset(path, split="test")
    np.testing.assert_array_equal(test.images, images[3:])
    assert list(test.ids) == ["3", "4", "5"]


def test_folder_reader_classes_ids_and_formats(class_folder):
    data = load_dataset(class_folder)
    assert data.class_names == ["blast", "mono"]
    assert data.class_counts() == {"blast": 3, "mono": 2}
    assert "blast/sub/c.tif" in set(data.ids)
    # PNG/BMP/TIFF are lossless: pixels survive exactly.
    png = np.asarray(Image.open(class_folder / "blast/a.png"))
    np.testing.assert_array_equal(data.images[list(data.ids).index("blast/a.png")], png)


def test_flat_folder_is_unlabeled(tmp_path):
    for i, img in enumerate(random_images(3)):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    data = load_dataset(tmp_path)
    assert data.labels is None and len(data) == 3


def test_folder_resize_on_load(tmp_path):
    (tmp_path / "x").mkdir()
    Image.fromarray(random_images(1, 40)[0]).save(tmp_path / "x/big.png")
    Image.fromarray(random_images(1, 30)[0]).save(tmp_path / "x/small.png")
    data = load_dataset(tmp_path, size=28)
    assert data.image_shape == (28, 28, 3)


def test_csv_reader_relative_paths_and_labels(class_folder):
    csv_path = class_folder / "list.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "diagnosis"])
        w.writerow(["blast/a.png", "AML"])
        w.writerow(["mono/d.bmp", "normal"])
        w.writerow(["blast/b.jpg", "AML"])
    data = load_dataset(csv_path, path_column="file", label_column="diagnosis")
    assert data.class_names == ["AML", "normal"]
    assert list(data.labels) == [0, 1, 0]
    assert list(data.ids) == ["blast/a.png", "mono/d.bmp", "blast/b.jpg"]
    unlabeled = load_dataset(csv_path, path_column="file")
    assert unlabeled.labels is None


def test_channel_modes(tmp_path):
    rgba = random_images(2, channels=4)
    kept = from_array(rgba)
    assert kept.image_shape == (8, 8, 3) and any("alpha" in n for n in kept.notes)
    gray = from_array(random_images(2, channels=3), channels="gray")
    assert gray.image_shape == (8, 8, 1)
    rgb = from_array(random_images(2, channels=1), channels="rgb")
    assert rgb.image_shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb.images[..., 0], rgb.images[..., 2])
    # Gray conversion uses PIL's luma weights.
    img = random_images(1)[0]
    expected = np.asarray(Image.fromarray(img).convert("L"))
    assert np.abs(from_array(img[None], channels="gray").images[0, ..., 0].astype(int) - expected).max() <= 1


def test_from_array_layouts_and_floats():
    chw = random_images(4, channels=3).transpose(0, 3, 1, 2)
    assert from_array(chw).image_shape == (8, 8, 3)
    floats = np.linspace(0, 1, 4 * 8 * 8 * 3).reshape(4, 8, 8, 3)
    data = from_array(floats, labels=[[0], [1], [1], [0]])
    assert data.images.dtype == np.uint8 and data.images.max() == 255
    assert list(data.labels) == [0, 1, 1, 0]


def test_from_torch_dataset():
    import torch

    class Toy(torch.utils.data.Dataset):
        classes = ["neg", "pos"]

        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.full((3, 8, 8), i / 10.0), torch.tensor(i % 2)

    data = from_torch_dataset(Toy())
    assert len(data) == 5 and data.image_shape == (8, 8, 3)
    assert data.class_names == ["neg", "pos"] and list(data.labels) == [0, 1, 0, 1, 0]
    assert data.images[3].max() == round(0.3 * 255)


def test_a_torch_dataset_of_one_hot_labels_or_mixed_channels_is_refused_or_converted_as_asked():
    import torch

    from medcne.errors import MedcneError

    class Items(torch.utils.data.Dataset):
        def __init__(self, items):
            self.items = items

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    rgb, gray = random_images(3, size=8), random_images(2, size=8, channels=1)
    one_hot = Items([(Image.fromarray(rgb[0]), torch.nn.functional.one_hot(torch.tensor(2), 8))])
    with pytest.raises(MedcneError, match="the label of item 0 holds 8 values"):  # its first value was taken
        from_torch_dataset(one_hot)
    mixed = Items([(Image.fromarray(a), 0) for a in [*rgb, *gray]])
    for kwargs in ({}, {"size": 8}):  # same size: the channels differ, and `size` cannot help
        with pytest.raises(MedcneError, match="items have 1 and 3 channels; pass `channels` 'rgb' or 'gray'"):
            from_torch_dataset(mixed, **kwargs)
    assert from_torch_dataset(mixed, channels="rgb").image_shape == (8, 8, 3)
    assert from_torch_dataset(mixed, size=4, channels="gray").image_shape == (4, 4, 1)


def test_pcam_h5_is_read_lazily(tmp_path):
    h5py = pytest.importorskip("h5py")
    x = random_images(10, 12)
    with h5py.File(tmp_path / "camelyonpatch_level_2_split_valid_x.h5", "w") as f:
        f["x"] = x
    with h5py.File(tmp_path / "camelyonpatch_level_2_split_valid_y.h5", "w") as f:
        f["y"] = (np.arange(10) % 2).astype(np.uint8).reshape(10, 1, 1, 1)
    data = load_dataset(tmp_path / "camelyonpatch_level_2_split_valid_x.h5")
    assert isinstance(data.images, LazyImages) and data.is_lazy
    assert len(data) == 10 and data.class_counts() == {"normal": 5, "tumor": 5}
    np.testing.assert_array_equal(data.images[[7, 2, 7]], x[[7, 2, 7]])
    sub = data.subset(4, seed=1)
    assert sub.is_lazy and len(sub) == 4
    np.testing.assert_array_equal(sub.to_numpy(), x[sub.ids.astype(int)])
    resized = load_dataset(tmp_path, size=6)  # a folder of *_x.h5 files reads as PCam
    assert resized.images[0].shape == (6, 6, 3)


def test_stratified_subset_keeps_proportions_and_is_seeded():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    idx = stratified_indices(labels, 1000, 100, seed=3)
    assert len(idx) == 100 and len(set(idx)) == 100
    assert np.bincount(labels[idx]).tolist() == [50, 30, 20]
    np.testing.assert_array_equal(idx, stratified_indices(labels, 1000, 100, seed=3))
    assert not np.array_equal(idx, stratified_indices(labels, 1000, 100, seed=4))


def test_subset_option_of_load_dataset(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=random_images(40), labels=np.arange(40) % 4)
    data = load_dataset(path, subset=8, seed=0)
    assert len(data) == 8 and data.class_counts() == {"0": 2, "1": 2, "2": 2, "3": 2}


def test_take_keeps_everything_aligned():
    data = ImageSet(random_images(5), np.array([0, 1, 2, 0, 1]), ["a", "b", "c"])
    part = data.take([4, 0])
    np.testing.assert_array_equal(part.images, data.images[[4, 0]])
    assert list(part.labels) == [1, 0] and list(part.ids) == ["4", "0"]


def test_bundled_sample():
    data = load_sample()
    assert SAMPLE_PATH.stat().st_size < 5_000_000
    assert len(data) == 2000 and data.image_shape == (28, 28, 3)
    assert len(data.class_names) == 8 and sum(data.class_counts().values()) == 2000
    assert min(data.class_counts().values()) >= 100  # stratified: every class present


# Per-class counts from ../shared/data/README.md.
BLOOD_COUNTS = [1218, 3117, 1551, 2895, 1214, 1420, 3329, 2348]


def test_real_bloodmnist_counts(bloodmnist_path):
    data = load_dataset(bloodmnist_path)
    assert len(data) == 17092 and data.image_shape == (28, 28, 3)
    assert list(data.class_counts().values()) == BLOOD_COUNTS
    assert data.class_names[0] == "basophil" and data.class_names[7] == "platelet"
    assert len(load_dataset(bloodmnist_path, split="test")) == 3421


def test_provenance_columns_follow_take_and_are_checked():
    import numpy as np
    import pytest

    from medcne.datasets import ImageSet
    from medcne.errors import MedcneError

    images = np.zeros((4, 2, 2, 1), np.uint8)
    data = ImageSet(images, provenance={"slide": ["a", "a", "b", "b"], "x": [0, 8, 0, 8]})
    part = data.take([3, 0])
    assert list(part.provenance["slide"]) == ["b", "a"] and list(part.provenance["x"]) == [8, 0]
    assert ImageSet(images).provenance == {}
    with pytest.raises(MedcneError, match="provenance column 'x'"):
        ImageSet(images, provenance={"x": [0, 1]})


def test_a_pcam_folder_reads_all_its_files_and_split_picks_one(tmp_path):
    # The paper used all of PCam (train + valid + test = 327,680 images), not the training file alone.
    h5py = pytest.importorskip("h5py")
    sizes = {"train": 6, "valid": 3, "test": 2}
    pixels = {}
    for k, (word, n) in enumerate(sizes.items()):
        pixels[word] = random_images(n, 12, seed=k)
        with h5py.File(tmp_path / f"camelyonpatch_level_2_split_{word}_x.h5", "w") as f:
            f["x"] = pixels[word]
        with h5py.File(tmp_path / f"camelyonpatch_level_2_split_{word}_y.h5", "w") as f:
            f["y"] = np.full((n, 1, 1, 1), k % 2, dtype=np.uint8)
    data = load_dataset(tmp_path)
    assert len(data) == 11 and data.is_lazy and data.class_counts() == {"normal": 8, "tumor": 3}
    order = ["test", "train", "valid"]  # the files in name order
    np.testing.assert_array_equal(data.to_numpy(), np.concatenate([pixels[w] for w in order]))
    assert list(data.ids[:3]) == ["test/0", "test/1", "train/0"]
    np.testing.assert_array_equal(data.images[[10, 0, 3]], np.stack([pixels["valid"][2], pixels["test"][0],
                                                                     pixels["train"][1]]))
    for split, word in (("train", "train"), ("val", "valid"), ("test", "test")):
        one = load_dataset(tmp_path, split=split)
        assert len(one) == sizes[word]
        np.testing.assert_array_equal(one.to_numpy(), pixels[word])
    assert len(load_dataset(tmp_path, subset=4)) == 4
    (tmp_path / "camelyonpatch_level_2_split_valid_x.h5").unlink()
    from medcne.errors import MedcneError

    with pytest.raises(MedcneError, match="`split` val needs exactly one"):
        load_dataset(tmp_path, split="val")


@pytest.mark.parametrize("option", [{"path_column": "file"}, {"allow_outside": True}])
def test_options_of_a_csv_list_are_refused_for_other_data(option):
    from medcne.datasets import SAMPLE_PATH
    from medcne.errors import UnknownFormatError

    name = next(iter(option))
    with pytest.raises(UnknownFormatError, match=f"`{name}` applies to a CSV of image paths only; .* is read as npz"):
        load_dataset(SAMPLE_PATH, **option)


def test_take_of_a_boolean_mask_takes_the_images_it_marks_and_never_an_image_twice():
    from medcne.datasets import load_sample
    from medcne.errors import MedcneError

    d = load_sample()
    mask = d.labels == 0
    kept = d.take(mask)
    assert len(kept) == mask.sum() and (kept.labels == 0).all()
    np.testing.assert_array_equal(kept.ids, d.ids[mask])
    np.testing.assert_array_equal(d.images[mask], kept.images)
    with pytest.raises(MedcneError, match="a boolean mask of shape \\(3,\\) for 2000 images"):
        d.take(np.array([True, False, True]))
    with pytest.raises(MedcneError, match="a position is given twice"):
        d.take([5, 5])


def test_an_imageset_refuses_an_id_given_to_two_images():
    from medcne.datasets import from_array
    from medcne.errors import MedcneError

    images = np.zeros((3, 8, 8, 1), np.uint8)
    with pytest.raises(MedcneError, match="the id 'a' is given to 2 images; ids must be unique"):
        from_array(images, ids=["a", "b", "a"])
