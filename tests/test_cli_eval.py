import json

import numpy as np
import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.metrics import knn_accuracy, silhouette
from medcne.runs import read_run


def test_evaluate_writes_metrics_json(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    (run / "metrics.json").write_text(json.dumps({"seconds": 12.5, "silhouette": 99.0}))
    assert main(["evaluate", str(run), "--splits", "3", "--np-queries", "100"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    r = read_run(run)
    assert m["knn_accuracy"] == pytest.approx(knn_accuracy(r.embedding, r.labels))
    assert m["silhouette"] == pytest.approx(silhouette(r.embedding, r.labels))  # 99.0 replaced
    assert m["seconds"] == 12.5  # what training wrote is kept
    assert m["knn_splits"] == 3 and m["knn_accuracy_std"] >= 0
    assert 0 < m["neighbour_preservation"] <= 1 and m["neighbour_preservation_queries"] == 100
    out = capsys.readouterr().out
    assert f"kNN accuracy {m['knn_accuracy']:.1f}%" in out and "neighbourhood preservation" in out


def test_scoring_every_image_records_how_many_were_scored(tmp_path):
    run = make_run(tmp_path / "run", n=200)
    assert main(["evaluate", str(run), "--np-queries", "0"]) == 0  # 0: every image
    assert json.loads((run / "metrics.json").read_text())["neighbour_preservation_queries"] == 200
    assert main(["evaluate", str(run), "--np-queries", "5000"]) == 0  # more than there are: every image
    assert json.loads((run / "metrics.json").read_text())["neighbour_preservation_queries"] == 200


def test_evaluate_several_runs_and_missing_data(tmp_path, capsys):
    data = tmp_path / "copy.npz"
    data.write_bytes(make_run.__globals__["SAMPLE_PATH"].read_bytes())
    a = make_run(tmp_path / "a", n=200, data_path=data)
    b = make_run(tmp_path / "b", n=200, noise=5.0)
    data.unlink()  # run a's images are gone: preservation is skipped with a note
    assert main(["evaluate", str(a), str(b), "--np-queries", "50"]) == 0
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert "neighbour_preservation" not in ma and "skipped" in ma["notes"][0]
    assert "neighbour_preservation" in mb
    assert mb["knn_accuracy_mean"] < ma["knn_accuracy_mean"]  # noise blurs the classes
    assert "note: neighbourhood preservation skipped" in capsys.readouterr().out


def test_evaluate_labels_from_viewer_export(tmp_path):
    run = make_run(tmp_path / "run", n=200, labeled=False)
    r = read_run(run)
    assert main(["evaluate", str(run), "--no-preservation"]) == 0
    assert any("fewer than two classes" in n for n in json.loads((run / "metrics.json").read_text())["notes"])
    # The viewer exports id,x,y,old_label,new_label; empty new_label = only selected.
    half = np.arange(200) < 100
    rows = ["id,x,y,old_label,new_label"] + [
        f"{i},{x:.3f},{y:.3f},,{'left' if x < 0 else 'right'}" for i, (x, y) in zip(r.ids[half], r.embedding[half], strict=True)
    ] + [f"{r.ids[150]},0,0,,"]
    (tmp_path / "ann.csv").write_text("\n".join(rows) + "\n")
    assert main(["evaluate", str(run), "--labels", str(tmp_path / "ann.csv"), "--no-preservation"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_labeled"] == 100 and m["knn_accuracy"] > 80  # labels split by x: easy to predict
    assert any("100 unlabeled points" in n for n in m["notes"])


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=100)
    (tmp_path / "bad.csv").write_text("name,value\na,1\n")
    assert main(["evaluate", str(run), "--labels", str(tmp_path / "bad.csv")]) == 2
    err = capsys.readouterr().err
    assert "needs columns 'id' and 'label'" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "other.csv").write_text("id,label\nnope,a\n")
    assert main(["evaluate", str(run), "--labels", str(tmp_path / "other.csv")]) == 2
    assert "none of the ids" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_evaluate_uses_the_runs_integer_labels(tmp_path):
    # Class names whose alphabetical order is not their index order: coding the names
    # alphabetically (np.unique of strings) gave another stratified split than fit's.
    from medcne.runs import evaluate_run, write_embedding

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    Z = rng.normal(size=(300, 2)) + labels[:, None] * 0.8
    write_embedding(tmp_path, Z, np.arange(300).astype(str), labels, ["zeta", "alpha", "mid"])
    (tmp_path / "params.json").write_text('{"method": "fake"}')  # a run folder has params.json
    m = evaluate_run(read_run(tmp_path), preservation=False)
    assert m["knn_accuracy"] == knn_accuracy(Z.astype(np.float32), labels)
    names = np.array(["zeta", "alpha", "mid"])[labels]
    assert knn_accuracy(Z, names) != knn_accuracy(Z, labels)  # the two codings do split differently here


def test_labels_csv_maps_names_onto_the_runs_classes(tmp_path):
    from medcne.runs import evaluate_run, read_label_csv, write_embedding
    from medcne.runs.evaluate import run_labels

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    Z = rng.normal(size=(200, 2)) + labels[:, None] * 2.0
    ids = np.array([f"img{i}" for i in range(200)])
    write_embedding(tmp_path, Z, ids, labels, ["b", "a"])
    (tmp_path / "params.json").write_text('{"method": "fake"}')
    (tmp_path / "ann.csv").write_text("id,new_label\nimg0,a\nimg1,new class\nnope,a\n")
    codes, names, notes = run_labels(read_run(tmp_path), read_label_csv(tmp_path / "ann.csv"))
    assert names == ["b", "a", "new class"] and codes[0] == 1 and codes[1] == 2
    assert (codes[2:] == labels[2:]).all() and "2 labels from the CSV, 1 unknown ids ignored (not images of this run, e.g. 'nope')" in notes
    assert evaluate_run(read_run(tmp_path), {"img0": "a"}, preservation=False)["n_labeled"] == 200


def test_evaluate_applies_the_label_recipes_of_fit(tmp_path, capsys):
    # A run made without --labels-map / --merge-rare is scored as if it had been made with them:
    # the same labels as load_dataset's recipes give.
    from medcne.datasets.labels import MERGED, map_labels, merge_rare_labels
    from medcne.runs import write_embedding

    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2, 3], [120, 100, 8, 5])
    Z = rng.normal(size=(len(labels), 2)) + labels[:, None] * 1.5
    write_embedding(tmp_path, Z, np.arange(len(labels)).astype(str), labels, ["nevus", "mel", "bcc", "df"])
    (tmp_path / "params.json").write_text('{"method": "fake"}')
    (tmp_path / "binary.csv").write_text("old,new\nnevus,nevus\n*,other\n")
    assert main(["evaluate", str(tmp_path), "--labels-map", str(tmp_path / "binary.csv"), "--no-preservation"]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    binary, names = map_labels(labels, ["nevus", "mel", "bcc", "df"], {"nevus": "nevus", "*": "other"})
    assert names == ["nevus", "other"] and set(binary[:120]) == {0} and set(binary[120:]) == {1}
    assert m["knn_accuracy"] == pytest.approx(knn_accuracy(Z.astype(np.float32), binary))
    assert m["silhouette"] == pytest.approx(silhouette(Z.astype(np.float32), binary))
    assert "labels mapped: 4 classes -> 2" in m["notes"]

    assert main(["evaluate", str(tmp_path), "--merge-rare", "10", "--no-preservation"]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    merged, names, rare = merge_rare_labels(labels, ["nevus", "mel", "bcc", "df"], 10)
    assert names == ["nevus", "mel", MERGED] and rare == ["bcc", "df"] and set(merged[220:]) == {2}
    assert m["silhouette"] == pytest.approx(silhouette(Z.astype(np.float32), merged))
    assert any("merged 2 classes" in n for n in m["notes"])

    capsys.readouterr()
    (tmp_path / "bad.csv").write_text("old,new\nmelanoma,other\n")
    assert main(["evaluate", str(tmp_path), "--labels-map", str(tmp_path / "bad.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'melanoma' is not a class" in err[0]
    assert main(["evaluate", str(tmp_path), "--merge-rare", "0"]) == 2


def files_of(folder):
    """Every file of ``folder`` with its bytes: what a refused command must leave as it was."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_bad_number_of_splits_names_the_option(tmp_path, capsys):
    from medcne.errors import MedcneError
    from medcne.metrics import knn_accuracy_splits

    with pytest.raises(MedcneError, match=r"^`n_splits` must be a positive integer; got 0"):
        knn_accuracy_splits(np.zeros((20, 2)), np.arange(20) % 2, n_splits=0)
    run = make_run(tmp_path / "run", n=100)
    before = files_of(run)
    assert main(["evaluate", str(run), "--splits", "0"]) == 2
    assert capsys.readouterr().err.strip() == "medcne evaluate: error: --splits must be a positive integer; got 0"
    assert files_of(run) == before


def test_data_given_that_is_not_there_is_refused_before_writing(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=100)
    before = files_of(run)
    # Before, metrics.json was rewritten with only a note that preservation was skipped, and the exit was 0.
    assert main(["evaluate", str(run), "--data", str(tmp_path / "moved.npz")]) == 2
    err = capsys.readouterr().err
    assert f"--data {tmp_path / 'moved.npz'}: no such file or folder" in err and len(err.strip().splitlines()) == 1
    assert files_of(run) == before


def test_data_given_that_are_not_the_runs_is_refused_and_a_moved_datasets_score_is_kept(tmp_path, capsys):
    data = tmp_path / "copy.npz"
    data.write_bytes(make_run.__globals__["SAMPLE_PATH"].read_bytes())
    a = make_run(tmp_path / "a", n=200, data_path=data)
    assert main(["evaluate", str(a), "--np-queries", "50"]) == 0
    before = json.loads((a / "metrics.json").read_text())
    other = make_run(tmp_path / "b", n=120, data_path=data)  # another subset of the same file
    other_data = tmp_path / "other.npz"
    np.savez(other_data, images=np.zeros((5, 28, 28, 3), np.uint8))
    # Data given on purpose that are not the run's: one line, exit 2, metrics.json untouched (it lost
    # its neighbourhood preservation and exited 0).
    capsys.readouterr()
    assert main(["evaluate", str(a), "--data", str(other_data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its data cannot be read as the run read them" in err[0], err
    assert json.loads((a / "metrics.json").read_text()) == before
    # The run's own data moved away and none given: the last score of the same map and images stays.
    data.unlink()
    assert main(["evaluate", str(a), str(other), "--np-queries", "50"]) == 0
    after = json.loads((a / "metrics.json").read_text())
    assert after["neighbour_preservation"] == before["neighbour_preservation"]
    assert any(n.startswith("neighbourhood preservation kept from the last evaluation") for n in after["notes"])
    # At another k the old score is not the one asked for: skipped, as before.
    assert main(["evaluate", str(a), "--k", "5"]) == 0
    assert "neighbour_preservation" not in json.loads((a / "metrics.json").read_text())
