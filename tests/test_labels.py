"""Label recipes on synthetic labels: a CSV map (DermaMNIST binary) and merging rare classes (Leukemia -> 7)."""

from __future__ import annotations

import numpy as np
import pytest

from medcne.cli import main
from medcne.datasets import from_array, load_dataset
from medcne.datasets.labels import MERGED, labels_map, map_labels, merge_rare, read_labels_map
from medcne.errors import MedcneError
from medcne.io import save_npz

DERMA = ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
         "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"]
# AML-Cytomorphology_LMU (Matek et al. 2019): images per class.
LEUKEMIA = {"BAS": 79, "EBO": 78, "EOS": 424, "KSC": 15, "LYA": 11, "LYT": 3937, "MMZ": 15, "MOB": 26,
            "MON": 1789, "MYB": 42, "MYO": 3268, "NGB": 109, "NGS": 8484, "PMB": 18, "PMO": 70}


def labeled(counts: list[int], names: list[str], seed: int = 0):
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = np.random.default_rng(seed).permutation(labels)
    images = np.zeros((len(labels), 2, 2, 3), dtype=np.uint8)
    return from_array(images, labels, class_names=names)


def write_map(tmp_path, text: str):
    path = tmp_path / "map.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_dermamnist_binary_by_a_csv_with_a_wildcard(tmp_path):
    counts = [327, 514, 1099, 115, 1113, 6705, 142]  # DermaMNIST's 10,015 images
    data = labeled(counts, DERMA)
    path = write_map(tmp_path, "old,new\nmelanocytic nevi,melanocytic nevi\n*,other\n")
    out = labels_map(data, path)
    assert out.class_counts() == {"other": 10015 - 6705, "melanocytic nevi": 6705}
    # Each image keeps its identity: nevi stay nevi, everything else is 'other'.
    nevi = np.asarray(data.labels) == DERMA.index("melanocytic nevi")
    assert np.array_equal(np.asarray(out.class_names)[out.labels] == "melanocytic nevi", nevi)
    assert np.array_equal(out.ids, data.ids) and "2" in out.notes[-1] and "7 classes" in out.notes[-1]


def test_a_map_without_wildcard_keeps_unnamed_classes_and_can_join_classes():
    labels, names = map_labels(np.array([0, 1, 2, 3, 2]), ["a", "b", "c", "d"], {"a": "x", "c": "x", "d": "y"})
    assert names == ["x", "b", "y"] and labels.tolist() == [0, 1, 0, 2, 0]


def test_leukemia_9_rarest_classes_merged_gives_7_classes():
    data = labeled(list(LEUKEMIA.values()), list(LEUKEMIA))
    out = merge_rare(data, 100)
    counts = out.class_counts()
    assert len(counts) == 7 and list(counts)[-1] == MERGED
    assert counts[MERGED] == sum(c for c in LEUKEMIA.values() if c < 100) == 354
    assert {k: v for k, v in counts.items() if k != MERGED} == {k: v for k, v in LEUKEMIA.items() if v >= 100}
    rare = np.isin(np.asarray(data.class_names)[data.labels], [k for k, v in LEUKEMIA.items() if v < 100])
    assert np.array_equal(out.labels == 6, rare)
    assert "9 classes" in out.notes[-1]


def test_merge_rare_with_no_rare_class_changes_nothing():
    data = labeled([5, 6], ["a", "b"])
    assert merge_rare(data, 5) is data
    assert merge_rare(data, 6).class_counts() == {"b": 6, MERGED: 5}


def test_load_dataset_applies_the_recipes_before_the_subset(tmp_path):
    data = labeled([40, 30, 12, 4], ["a", "b", "c", "d"])
    path = tmp_path / "d.npz"
    save_npz(path, images=data.images, labels=data.labels, class_names=np.array(data.class_names))
    mapped = load_dataset(path, labels_map=write_map(tmp_path, "b,a\n"), merge_rare=10, subset=43, seed=0)
    # Counted on all 86 images: c (12) stays, only d (4) is merged; in the subset c has 6 images.
    assert mapped.class_counts() == {"a": 35, "c": 6, MERGED: 2}


def test_cli_options_reach_the_reader(tmp_path, capsys):
    data = labeled([40, 30, 6, 4], ["a", "b", "c", "d"])
    path = tmp_path / "d.npz"
    save_npz(path, images=data.images, labels=data.labels, class_names=np.array(data.class_names))
    assert main(["info", str(path), "--labels-map", str(write_map(tmp_path, "a,b\n")), "--merge-rare", "7"]) == 0
    out = capsys.readouterr().out
    assert "classes:  2" in out and MERGED in out


@pytest.mark.parametrize("text, message", [
    ("a\n", "row 1 must be two"),
    ("a,b\na,c\n", "mapped twice"),
    ("old,new\n", "no rows"),
    ("zz,b\n", "'zz' is not a class"),
])
def test_bad_maps_name_the_problem(tmp_path, text, message):
    data = labeled([3, 3], ["a", "b"])
    with pytest.raises(MedcneError, match=message):
        labels_map(data, write_map(tmp_path, text))


def test_bad_inputs_name_the_option(tmp_path):
    with pytest.raises(MedcneError, match="no such file"):
        read_labels_map(tmp_path / "missing.csv")
    unlabeled = from_array(np.zeros((4, 2, 2, 3), dtype=np.uint8))
    with pytest.raises(MedcneError, match="merge_rare: .* has no labels"):
        merge_rare(unlabeled, 3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(MedcneError, match="`merge_rare` must be a positive integer"):
            merge_rare(labeled([3, 3], ["a", "b"]), bad)


def test_cli_bad_map_is_one_line_exit_2(tmp_path, capsys):
    data = labeled([3, 3], ["a", "b"])
    path = tmp_path / "d.npz"
    save_npz(path, images=data.images, labels=data.labels, class_names=np.array(data.class_names))
    assert main(["info", str(path), "--labels-map", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--labels-map" in err[0]
