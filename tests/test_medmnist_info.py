"""The MedMNIST facts table: MD5s per size, URLs, class names."""

from __future__ import annotations

import re

from medcne.datasets.medmnist_info import (
    CLASS_NAMES,
    MD5,
    SIZES,
    ZENODO_BASE,
    class_names_for,
    file_name,
    flag_of,
    official_url,
)

TWO_D = {
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
}


def test_every_2d_dataset_has_an_md5_per_size():
    assert set(MD5) == TWO_D
    assert SIZES == (28, 64, 128, 224)
    for name, by_size in MD5.items():
        assert tuple(by_size) == SIZES, name
        for md5 in by_size.values():
            assert re.fullmatch(r"[0-9a-f]{32}", md5), (name, md5)
    every = [md5 for by_size in MD5.values() for md5 in by_size.values()]
    assert len(set(every)) == len(every)  # a copy-paste slip would repeat one


def test_known_md5():
    # Published by MedMNIST and matched by ../shared/data/README.md's source file.
    assert MD5["bloodmnist"][28] == "7053d0359d879ad8a5505303e11de1dc"


def test_file_names_and_urls():
    assert file_name("bloodmnist") == "bloodmnist.npz"
    assert file_name("bloodmnist", 224) == "bloodmnist_224.npz"
    assert official_url("bloodmnist") == "https://zenodo.org/records/10519652/files/bloodmnist.npz?download=1"
    assert official_url("pathmnist", 64) == ZENODO_BASE + "pathmnist_64.npz?download=1"
    assert official_url("octmnist", 128, "http://mirror/m") == "http://mirror/m/octmnist_128.npz"
    assert official_url("octmnist", 128, "http://mirror/m/") == "http://mirror/m/octmnist_128.npz"


def test_class_names_for():
    assert flag_of("BloodMNIST_64.npz") == "bloodmnist"
    assert flag_of("leukemia.npz") is None
    names = class_names_for("bloodmnist_64.npz", 8)
    assert names == CLASS_NAMES["bloodmnist"] and len(names) == 8
    names.append("x")  # a copy: the table itself is unchanged
    assert len(CLASS_NAMES["bloodmnist"]) == 8
    assert class_names_for("bloodmnist.npz", 9) is None  # more labels than names
    assert class_names_for("bloodmnist.npz", None) is None
    assert class_names_for("organsmnist.npz", 11)[0] == "bladder"
    assert class_names_for("mydata.npz", 3) is None
