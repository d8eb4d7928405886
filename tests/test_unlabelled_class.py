"""Images of the class `unlabelled` (scans without a label row, tiles outside every region, store parts
converted without labels) have no label: every score, qc and the training's kNN leave them out."""

import csv
import json
import warnings

import numpy as np
import pytest
import torch

from evalhelpers import make_run
from medcne.cli import main
from medcne.datasets import from_array
from medcne.datasets.imageset import known_labels
from medcne.errors import MedcneWarning
from medcne.metrics import knn_accuracy, silhouette
from medcne.runs import read_run, write_embedding
from medcne.runs.curate import propagate_run
from medcne.train.monitor import Monitor
from medcne.train.rng import Generators

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def with_unlabelled(folder, n=200, every=3):
    """A run whose every ``every``-th image is of the class `unlabelled` (added after the others)."""
    run = make_run(folder, n=n)
    r = read_run(run)
    names = [*r.class_names, "unlabelled"]
    labels = r.labels.copy()
    labels[::every] = len(names) - 1
    write_embedding(run, r.embedding, r.ids, labels, names)
    return run, labels, names


def test_known_labels_marks_the_class_unlabelled_as_no_label():
    codes = known_labels(np.array([0, 2, 1, 2]), ["a", "b", "unlabelled"])
    assert codes.tolist() == [0, -1, 1, -1]
    assert known_labels(np.array([0, 1]), ["a", "b"]).tolist() == [0, 1] and known_labels(None, None) is None


def test_evaluate_scores_the_labelled_images_only(tmp_path):
    run, labels, names = with_unlabelled(tmp_path / "run")
    assert main(["evaluate", str(run), "--no-preservation"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    keep = labels != names.index("unlabelled")
    Z = read_run(run).embedding
    assert m["n_labeled"] == int(keep.sum())
    assert m["knn_accuracy"] == pytest.approx(knn_accuracy(Z[keep], labels[keep]))
    assert m["silhouette"] == pytest.approx(silhouette(Z[keep], labels[keep]))
    assert any(f"{int((~keep).sum())} unlabeled points left out" in n for n in m["notes"])


def test_qc_neither_checks_nor_suggests_the_class_unlabelled(tmp_path):
    run, labels, names = with_unlabelled(tmp_path / "run")
    assert main(["qc", str(run)]) == 0
    with open(run / "qc.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    unlabelled = [row for row in rows if row["label"] == "unlabelled"]
    assert len(unlabelled) == int((labels == names.index("unlabelled")).sum())
    # Scattered over the map, with neighbours of other classes: as a class they were all "label errors".
    assert all(row["label_issue_score"] == "" and row["likely_label_error"] == "0" for row in unlabelled)
    assert all(row["suggested_label"] != "unlabelled" for row in rows)
    assert any(row["suggested_label"] for row in unlabelled)  # what their neighbours say: a suggestion


def test_propagate_agreement_is_over_images_with_a_label(tmp_path):
    run, labels, names = with_unlabelled(tmp_path / "run")
    r = read_run(run)
    picked = [i for c in range(len(names) - 1) for i in np.flatnonzero(labels == c)[:3]]
    said_none = np.flatnonzero(labels != names.index("unlabelled"))[-3:]  # annotated `unlabelled`: no seed
    ann = tmp_path / "ann.csv"
    ann.write_text("id,label\n" + "".join(f"{r.ids[i]},{names[labels[i]]}\n" for i in picked)
                   + "".join(f"{r.ids[i]},unlabelled\n" for i in said_none))
    path, summary = propagate_run(r, ann, tmp_path / "out.csv")
    assert summary["annotated"] == len(picked)
    with open(path, newline="", encoding="utf-8") as fh:
        predicted = np.array([row["label"] for row in csv.DictReader(fh)], dtype=object)
    check = np.ones(len(labels), bool)
    check[picked] = False
    check &= labels != names.index("unlabelled")
    expected = 100.0 * np.mean(predicted[check] == np.array(names, dtype=object)[labels[check]])
    assert summary["agreement"] == pytest.approx(expected) and summary["agreement_of"] == int(check.sum())
    assert "unlabelled" not in set(predicted)


def monitor_of(data):
    gens = Generators.from_rng(np.random.default_rng(0), torch.device("cpu"))
    return Monitor(data, torch.device("cpu"), gens, {}, knn_every=1)


def test_the_training_knn_is_scored_on_labelled_images_only():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (60, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(60) % 3
    mon = monitor_of(from_array(images, labels, ["a", "b", "unlabelled"]))
    assert mon.knn_every == 1 and len(mon.knn_labels) == 40 and set(mon.knn_labels.tolist()) == {0, 1}
    assert monitor_of(from_array(images, np.full(60, 0), ["unlabelled"])).knn_every == 0
    assert monitor_of(from_array(images)).knn_every == 0  # no labels at all


def test_knn_every_on_images_all_unlabelled_warns():
    from medcne import TSimCNE

    images = np.random.default_rng(0).integers(0, 255, (32, 16, 16, 3), dtype=np.uint8)
    est = TSimCNE(epochs=(1, 0, 0), warmup=(0, 0, 0), batch_size=16, width=4, knn_every=1, device="cpu", verbose=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        est.fit(from_array(images, np.zeros(32, int), ["unlabelled"]))
    assert any(issubclass(w.category, MedcneWarning) and "fewer than two classes of them" in str(w.message)
               for w in seen)


def test_a_labels_csv_gives_unlabelled_images_a_label_or_takes_one_away(tmp_path):
    run, labels, names = with_unlabelled(tmp_path / "run")
    r = read_run(run)
    none = names.index("unlabelled")
    given = np.flatnonzero(labels == none)[:5]  # five images without a label get one
    taken = np.flatnonzero(labels != none)[:4]  # four labelled images are said to have none
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("id,label\n" + "".join(f"{r.ids[i]},{names[0]}\n" for i in given)
                        + "".join(f"{r.ids[i]},unlabelled\n" for i in taken))
    assert main(["evaluate", str(run), "--labels", str(csv_path), "--no-preservation"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_labeled"] == int((labels != none).sum()) + len(given) - len(taken)


def test_a_labels_map_onto_unlabelled_takes_the_labels_away(tmp_path):
    run, labels, names = with_unlabelled(tmp_path / "run")
    gone = [names[0], names[1]]
    (tmp_path / "map.csv").write_text("old,new\n" + "".join(f"{n},unlabelled\n" for n in gone))
    assert main(["evaluate", str(run), "--labels-map", str(tmp_path / "map.csv"), "--no-preservation"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    keep = ~np.isin(labels, [names.index(n) for n in (*gone, "unlabelled")])
    assert m["n_labeled"] == int(keep.sum())
    assert m["labels"]["classes"] == len(names) - 3  # the class `unlabelled` is not counted
    assert any(f"{len(names) - 1} classes -> {len(names) - 3}" in n for n in m["notes"])


def test_a_labels_map_from_unlabelled_gives_the_images_a_label(tmp_path):
    run, labels, names = with_unlabelled(tmp_path / "run")
    (tmp_path / "map.csv").write_text(f"old,new\nunlabelled,{names[0]}\n")
    assert main(["evaluate", str(run), "--labels-map", str(tmp_path / "map.csv"), "--no-preservation"]) == 0
    assert json.loads((run / "metrics.json").read_text())["n_labeled"] == len(labels)


def test_one_class_beside_unlabelled_gets_no_training_knn():
    images = np.random.default_rng(0).integers(0, 255, (60, 8, 8, 3), dtype=np.uint8)
    assert monitor_of(from_array(images, np.arange(60) % 2, ["cell", "unlabelled"])).knn_every == 0


def test_fit_says_before_training_that_one_class_beside_unlabelled_cannot_be_scored(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "one.npz", images=images, labels=np.arange(40) % 2, class_names=np.array(["cell", "unlabelled"]))
    argv = ["fit", str(tmp_path / "one.npz"), "--out", str(tmp_path / "run"), "--epochs", "1,0,1", "--warmup", "0,0,0",
            "--width", "4", "--batch-size", "16", "--device", "cpu"]
    assert main(argv) == 0
    assert "kNN accuracy and silhouette will be skipped: fewer than two classes" in capsys.readouterr().out


def test_info_counts_the_class_unlabelled_as_no_label(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 255, (60, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=(np.arange(60) >= 30).astype(int),
             class_names=np.array(["tumour", "unlabelled"]))
    assert main(["info", str(tmp_path / "d.npz")]) == 0
    out = capsys.readouterr().out
    assert "classes:  1 (and the class 'unlabelled': no label)" in out
    assert "fewer than two classes are labeled" in out and "unlabelled (30)" not in out
