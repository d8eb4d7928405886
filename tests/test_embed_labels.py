"""`medcne embed` labels the placed images in the map's classes: the run's --labels-map applies to them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medcne.cli import main
from safetyhelpers import make_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIT = ["--epochs", "1,0,1", "--warmup", "0,0,0", "--width", "2", "--batch-size", "16", "--device", "cpu"]
GRANULOCYTES = ("basophil", "eosinophil", "neutrophil")


def labels_of(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["id"]: row["label"] for row in csv.DictReader(fh)}


def other_classes(path: Path) -> Path:
    """Four blank images of two classes that no map of the blood cells names."""
    np.savez(path, images=np.zeros((4, 16, 16, 3), np.uint8), labels=np.array([0, 1, 0, 1]),
             class_names=np.array(["tumour", "stroma"]))
    return path


@pytest.fixture(scope="module")
def mapped_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_labels")
    data = make_data(root / "data" / "data.npz", n=48)
    names = np.load(data)["class_names"].tolist()
    assert set(GRANULOCYTES) <= set(names)
    table = root / "gran.csv"
    table.write_text("old,new\n" + "".join(f"{c},granulocyte\n" for c in GRANULOCYTES))
    run = root / "run"
    assert main(["fit", str(data), "--out", str(run), "--labels-map", str(table), *FIT]) == 0
    return run, data, table


def test_placed_images_get_the_classes_of_the_map(mapped_run, tmp_path, capsys):
    run, data, _ = mapped_run
    out = tmp_path / "placed.csv"
    assert main(["embed", str(run), str(data), "--out", str(out), "--device", "cpu"]) == 0
    placed, trained = labels_of(out), labels_of(run / "embedding.csv")
    assert placed == trained and "granulocyte" in placed.values()  # the same id, the same class
    assert not set(GRANULOCYTES) & set(placed.values())
    assert "labels mapped by gran.csv" in capsys.readouterr().out


def test_a_map_of_other_classes_is_left_unapplied_with_a_note(mapped_run, tmp_path, capsys):
    run, _, _ = mapped_run
    other = other_classes(tmp_path / "other.npz")
    out = tmp_path / "placed.csv"
    assert main(["embed", str(run), str(other), "--out", str(out), "--device", "cpu"]) == 0
    assert sorted(set(labels_of(out).values())) == ["stroma", "tumour"]
    assert "the run's labels map gran.csv names none of these images' classes" in capsys.readouterr().out


def test_a_map_that_is_gone_is_said(mapped_run, tmp_path, capsys):
    run, data, table = mapped_run
    moved = table.with_name("moved.csv")
    table.rename(moved)
    try:
        out = tmp_path / "placed.csv"
        assert main(["embed", str(run), str(data), "--out", str(out), "--device", "cpu"]) == 0
        assert "basophil" in labels_of(out).values()  # its own names, as the note says
        assert f"the run's labels map {table} is gone" in capsys.readouterr().out
        # A map given on the command line is the one used.
        assert main(["embed", str(run), str(data), "--out", str(out), "--overwrite", "--labels-map", str(moved),
                     "--device", "cpu"]) == 0
        assert labels_of(out) == labels_of(run / "embedding.csv")
    finally:
        moved.rename(table)


def test_a_map_with_a_wildcard_naming_none_of_the_classes_is_left_unapplied(tmp_path, capsys):
    # The readers' rule for "a map meant for other data" counts '*' out; embed must use the same rule,
    # not apply such a map (which the reader then refuses).
    data = make_data(tmp_path / "data" / "data.npz", n=32)
    table = tmp_path / "wild.csv"
    table.write_text("old,new\nbasophil,granulocyte\n*,other\n")
    run = tmp_path / "run"
    assert main(["fit", str(data), "--out", str(run), "--labels-map", str(table), *FIT]) == 0
    other = other_classes(tmp_path / "other.npz")
    out = tmp_path / "placed.csv"
    assert main(["embed", str(run), str(other), "--out", str(out), "--device", "cpu"]) == 0
    assert sorted(set(labels_of(out).values())) == ["stroma", "tumour"]
    assert "names none of these images' classes" in capsys.readouterr().out


def test_a_placed_npz_numbers_its_classes_as_the_map_does(mapped_run, tmp_path, capsys):
    run, data, _ = mapped_run
    src = np.load(data)
    flipped = tmp_path / "flipped.npz"  # the same images, their classes listed in reverse
    names = src["class_names"].tolist()
    np.savez(flipped, images=src["images"][:12], labels=len(names) - 1 - src["labels"][:12],
             class_names=np.array(names[::-1]))
    out = tmp_path / "placed.npz"
    assert main(["embed", str(run), str(flipped), "--out", str(out), "--device", "cpu"]) == 0
    placed, own = np.load(out), np.load(run / "embedding.npz")
    assert placed["class_names"].tolist() == own["class_names"].tolist()  # label k means the map's class k
    by_id = dict(zip(own["ids"].tolist(), own["labels"].tolist(), strict=True))
    assert placed["labels"].tolist() == [by_id[i] for i in placed["ids"].tolist()]
    out2 = tmp_path / "other.npz"
    assert main(["embed", str(run), str(other_classes(tmp_path / "o.npz")), "--out", str(out2), "--device", "cpu"]) == 0
    assert "note: classes the map does not have: tumour, stroma" in capsys.readouterr().out
    assert np.load(out2)["class_names"].tolist() == [*own["class_names"].tolist(), "tumour", "stroma"]


def test_merge_rare_joins_classes_after_the_runs_labels_map_as_fit_does(mapped_run, tmp_path, capsys):
    run, data, _ = mapped_run
    out = tmp_path / "placed.csv"
    assert main(["embed", str(run), str(data), "--out", str(out), "--merge-rare", "10", "--device", "cpu"]) == 0
    placed = labels_of(out)
    counts = {c: list(placed.values()).count(c) for c in set(placed.values())}
    assert counts["granulocyte"] >= 10 and "other (merged)" in counts, counts  # joined first, so not rare
    assert "names none of these images' classes" not in capsys.readouterr().out


def test_placed_images_under_ids_of_other_images_of_the_map_are_noted(mapped_run, tmp_path, capsys):
    run, data, _ = mapped_run
    src = np.load(data)
    rows = tmp_path / "rows.npz"  # other images (the last 8, flipped) without ids: numbered 0..7 as the map's
    np.savez(rows, images=src["images"][-8:][:, ::-1].copy(), labels=src["labels"][-8:],
             class_names=src["class_names"])
    capsys.readouterr()
    assert main(["embed", str(run), str(rows), "--out", str(tmp_path / "a.csv"), "--device", "cpu"]) == 0
    assert "placed images bear the id of another image of the map (e.g. '0', placed elsewhere)" in capsys.readouterr().out
    # The map's own images placed again land on their points: no note.
    assert main(["embed", str(run), str(data), "--out", str(tmp_path / "b.csv"), "--device", "cpu"]) == 0
    assert "bear the id of another image" not in capsys.readouterr().out
