"""`medcne qc` and `medcne propagate` on run folders: files, columns, summary, spaces, bad input."""

import csv
import re

import numpy as np
import pytest
import torch

from evalhelpers import make_run
from medcne.cli import main
from medcne.curate import aligned_distances, image_checks
from medcne.datasets import SAMPLE_PATH
from medcne.errors import MedcneError
from medcne.runs import read_run
from medcne.runs.curate import PROPAGATED_COLUMNS, QC_COLUMNS, qc_run, resolve_space, run_points
from medcne.runs.outputs import remember

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SUMMARY = re.compile(r"^(\d+) likely label errors, (\d+) near-duplicate pairs, (\d+) outliers; see qc\.csv$")


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        return next(reader), list(reader)


@pytest.fixture(scope="module")
def tsimcne_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["fit", str(SAMPLE_PATH), "--out", str(out), "--subset", "48", "--size", "16", "--epochs",
                     "1,1,1", "--warmup", "0,0,0", "--width", "4", "--batch-size", "16", "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(n)
    return out


def test_qc_writes_every_image_with_the_exact_columns_and_prints_the_summary(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=200, method="tsne-pixels")
    assert main(["qc", str(run)]) == 0
    header, rows = read_csv(run / "qc.csv")
    assert tuple(header) == QC_COLUMNS
    r = read_run(run)
    assert [row[0] for row in rows] == list(r.ids)  # embedding order
    assert [row[1] for row in rows] == [r.class_names[i] for i in r.labels]
    assert {row[4] for row in rows} <= {"0", "1"} and {row[7] for row in rows} <= {"0", "1"}
    assert all(row[5] in set(r.ids) and row[5] != row[0] for row in rows)
    first, line = capsys.readouterr().out.strip().splitlines()[-2:]
    assert "pixels space" in first  # a pixel baseline is scored on its pixels
    m = SUMMARY.match(line)
    assert m, line
    assert int(m[1]) == sum(row[4] == "1" for row in rows) and int(m[3]) == sum(row[9] == "1" for row in rows)
    # the label-issue score is the (rank-weighted) share of the neighbours disagreeing
    scores = np.array([float(row[2]) for row in rows])
    assert 0 <= scores.min() and scores.max() <= 1 and scores.std() > 0
    # the duplicate distance is the RMS difference of the two thumbnails, best turn or flip
    thumbs = image_checks(r.load_images().images).thumbnails
    pairs = np.array([[list(r.ids).index(row[5])] for row in rows])
    np.testing.assert_allclose([float(row[6]) for row in rows], aligned_distances(thumbs, pairs)[:, 0], rtol=1e-4)


@pytest.mark.parametrize("method,space", [("tsne-pixels", "pixels"), ("umap-pixels", "pixels"),
                                          ("tsne-resnet18", "map"), ("tsne-simclr", "map")])
def test_auto_space_of_baselines(tmp_path, method, space):
    r = read_run(make_run(tmp_path / "run", n=30, method=method))
    assert resolve_space(r) == space and resolve_space(r, "map") == "map"
    with pytest.raises(MedcneError, match="`space` must be one of"):
        resolve_space(r, "feature")


def test_qc_replaces_its_csv_atomically(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", n=100)
    (run / "qc.csv").write_text("old\n")
    remember([run / "qc.csv"])  # as medcne records what it writes: a file it did not write is never replaced

    def crash(src, dst):
        raise KeyboardInterrupt  # the moment between writing and renaming

    monkeypatch.setattr("medcne.io.os.replace", crash)
    assert main(["qc", str(run)]) == 130
    assert (run / "qc.csv").read_text() == "old\n"
    assert sorted(p.name for p in run.iterdir() if "qc" in p.name) == ["qc.csv"]  # no temporary file left


def test_qc_on_an_unlabeled_run(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=120, labeled=False)
    assert main(["qc", str(run)]) == 0
    header, rows = read_csv(run / "qc.csv")
    assert tuple(header) == QC_COLUMNS and len(rows) == 120
    assert all(row[1] == row[2] == row[3] == "" and row[4] == "0" for row in rows)
    assert float(rows[0][8]) > 0
    assert "no labels to check, " in capsys.readouterr().out


@pytest.mark.slow  # trains a tiny model once (about 10 s)
def test_qc_spaces_pixels_and_features(tmp_path, tsimcne_run, capsys):
    base = make_run(tmp_path / "base", n=100)
    assert main(["qc", str(base), "--space", "pixels"]) == 0
    assert "pixels space" in capsys.readouterr().out
    r = read_run(tsimcne_run)
    X, space = run_points(r, "auto", device="cpu")
    assert space == "features" and X.shape == (48, 32)  # width 4: 8 * 4 features
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    path, result, space = qc_run(r, device="cpu")
    header, rows = read_csv(path)
    assert space == "features" and len(rows) == 48
    np.testing.assert_allclose([float(row[8]) for row in rows], result.outlier_score, rtol=1e-5)
    assert main(["qc", str(tsimcne_run), "--device", "cpu"]) == 0
    assert "features space" in capsys.readouterr().out


@pytest.mark.parametrize("args,match", [
    (["{missing}"], "no such run folder"),
    (["{run}", "--space", "features"], "no model.pt"),
    (["{run}", "--k", "0"], "k must be at least 1"),
    (["{run}", "{other}", "--space", "pixels"], "do not match the run's ids"),
])
def test_qc_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, match):
    run = make_run(tmp_path / "run", n=60)
    other = tmp_path / "other.npz"
    np.savez(other, images=np.zeros((100, 28, 28, 3), dtype=np.uint8))
    names = {"missing": tmp_path / "nope", "run": run, "other": other}
    argv = ["qc", *(a.format(**names) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (run / "qc.csv").exists()


def write_annotations(path, ids, labels):
    """The viewer's export: id,x,y,old_label,new_label (empty new_label: only selected)."""
    rows = ["id,x,y,old_label,new_label"] + [f"{i},0,0,,{lab}" for i, lab in zip(ids, labels, strict=True)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_propagate_writes_labels_that_evaluate_reads(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=200)
    r = read_run(run)
    names = np.array(r.class_names)
    picked = np.concatenate([np.flatnonzero(r.labels == c)[:3] for c in np.unique(r.labels)])
    ann = write_annotations(tmp_path / "ann.csv", [*r.ids[picked], r.ids[0]], [*names[r.labels[picked]], ""])
    assert main(["propagate", str(run), "--labels", str(ann)]) == 0
    out = capsys.readouterr().out
    header, rows = read_csv(run / "propagated.csv")
    assert tuple(header) == PROPAGATED_COLUMNS and [row[0] for row in rows] == list(r.ids)
    agree = np.mean([row[1] == names[lab] for row, lab in zip(rows, r.labels, strict=True)])
    assert agree > 0.4  # two pixel statistics as the map: far better than 1 in 8, far from perfect
    assert all(rows[i][1] == names[r.labels[i]] and rows[i][2] == "1.0000" and rows[i][3] == "1" for i in picked)
    assert sum(row[3] == "1" for row in rows) == len(picked)
    assert all(0 < float(row[2]) <= 1 for row in rows)
    assert f"from {len(picked)} annotated" in out and "agree with the run's labels" in out
    assert f"over the {len(r.ids) - len(picked):,} not annotated: mean confidence" in out  # not over all
    assert main(["evaluate", str(run), "--labels", str(run / "propagated.csv"), "--no-preservation"]) == 0


def test_propagate_refuses_to_overwrite(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=100)
    r = read_run(run)
    ann = write_annotations(tmp_path / "ann.csv", r.ids[:4], ["a", "b", "a", "b"])
    before = ann.read_text()
    assert main(["propagate", str(run), "--labels", str(ann), "--out", str(ann), "--overwrite"]) == 2
    assert "annotations file itself" in capsys.readouterr().err and ann.read_text() == before
    for name in ("labels.npz", "labels.txt", "labels"):  # propagate writes a CSV whatever the name said
        assert main(["propagate", str(run), "--labels", str(ann), "--out", str(tmp_path / name)]) == 2
        assert "--out" in capsys.readouterr().err and not (tmp_path / name).exists()
        assert not list(tmp_path.glob(f"*{name}*"))  # nor a lock or a temporary file
    mine = tmp_path / "mine.csv"
    mine.write_text("precious\n")
    for flag in ([], ["--overwrite"]):  # a file medcne did not write is never replaced
        assert main(["propagate", str(run), "--labels", str(ann), "--out", str(mine), *flag]) == 2
        assert "not written by medcne" in capsys.readouterr().err and mine.read_text() == "precious\n"
    out = tmp_path / "labels.csv"
    assert main(["propagate", str(run), "--labels", str(ann), "--out", str(out)]) == 0
    assert main(["propagate", str(run), "--labels", str(ann), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["propagate", str(run), "--labels", str(ann), "--out", str(out), "--overwrite"]) == 0
    header, rows = read_csv(out)
    assert {row[1] for row in rows} == {"a", "b"}


@pytest.mark.parametrize("content,match", [
    ("id,x,y,old_label,new_label\n{id0},0,0,,a\n{id1},0,0,,a\n", "at least two classes"),
    ("id,x,y,old_label,new_label\nnot-an-id,0,0,,a\n", "none of its ids belong"),
    ("id,x,y,old_label,new_label\n{id0},0,0,,\n", "no annotated rows"),
    ("name,label\n{id0},a\n", "needs columns 'id'"),
])
def test_propagate_bad_annotations_are_one_line(tmp_path, capsys, content, match):
    run = make_run(tmp_path / "run", n=60)
    r = read_run(run)
    ann = tmp_path / "ann.csv"
    ann.write_text(content.format(id0=r.ids[0], id1=r.ids[1]))
    assert main(["propagate", str(run), "--labels", str(ann)]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (run / "propagated.csv").exists()


def test_qc_and_propagate_carry_where_each_image_came_from(tmp_path, capsys):
    from medcne.runs import write_embedding

    run = make_run(tmp_path / "run", n=120)
    r = read_run(run)
    prov = {"slide": np.array([f"s{i % 3}" for i in range(120)]), "x": np.arange(120) * 96}
    write_embedding(run, r.embedding, r.ids, r.labels, r.class_names, prov)  # a run of tiles
    assert main(["qc", str(run)]) == 0
    header, rows = read_csv(run / "qc.csv")
    # "x" is taken by no qc column, so it keeps its name; slide and x follow the qc columns.
    assert header == [*QC_COLUMNS, "slide", "x"] and [row[-2:] for row in rows[:2]] == [["s0", "0"], ["s1", "96"]]
    ann = write_annotations(tmp_path / "ann.csv", r.ids[:8], np.array(r.class_names)[r.labels[:8]])
    assert main(["propagate", str(run), "--labels", str(ann)]) == 0
    header, rows = read_csv(run / "propagated.csv")
    assert header == [*PROPAGATED_COLUMNS, "slide", "x"] and rows[5][-2:] == ["s2", "480"]
    _, emb_rows = read_csv(run / "embedding.csv")
    assert emb_rows[5][-2:] == ["s2", "480"]  # embedding.csv: x is taken there, so it is prov_x
    assert read_csv(run / "embedding.csv")[0][-2:] == ["slide", "prov_x"]


def test_qc_that_cannot_fit_is_refused_before_the_search_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from medcne.curate import qc as qc_module
    from medcne.runs import curate as runs_curate

    run = make_run(tmp_path / "run", n=200, method="tsne-pixels")
    searched = []
    monkeypatch.setattr("medcne.curate.nearest_neighbours", lambda *a, **k: searched.append(1))
    from medcne.datasets import memory

    def little_left(*args):  # the images were read; the search would find 1,000 bytes left
        with monkeypatch.context() as m:
            m.setattr(memory, "available_bytes", lambda: 1000)
            memory.check_memory(*args)

    monkeypatch.setattr(runs_curate, "check_memory", little_left)
    assert main(["qc", str(run), "--space", "map"]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "quality control of 200 images" in line and "--space map" in line, line
    assert not (run / "qc.csv").exists() and not searched
    assert qc_module.THUMB_BYTES == 588  # 7 x 7 x 3 float32, the figure the docs give


def test_propagate_names_annotations_of_ids_the_run_lacks(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=200)
    r = read_run(run)
    names = np.array(r.class_names)
    picked = np.concatenate([np.flatnonzero(r.labels == c)[:2] for c in np.unique(r.labels)])
    ann = write_annotations(tmp_path / "ann.csv", [*r.ids[picked], "nope/x.png", "also/y.png"],
                            [*names[r.labels[picked]], names[0], names[1]])
    assert main(["propagate", str(run), "--labels", str(ann)]) == 0
    out = capsys.readouterr().out
    assert "note: 2 unknown ids ignored (not images of this run, e.g. 'nope/x.png')" in out, out


def test_propagate_starts_from_hand_labels_not_the_viewers_suggestions(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=200)
    r = read_run(run)
    names = np.array(r.class_names)
    hand = np.concatenate([np.flatnonzero(r.labels == c)[:3] for c in np.unique(r.labels)])
    guessed = np.setdiff1d(np.arange(len(r.ids)), hand)[:50]
    lines = ["id,x,y,old_label,new_label,source,confidence"]
    lines += [f"{r.ids[i]},0,0,{names[r.labels[i]]},{names[r.labels[i]]},manual," for i in hand]
    lines += [f"{r.ids[i]},0,0,{names[r.labels[i]]},{names[0]},suggested,0.40" for i in guessed]
    (tmp_path / "export.csv").write_text("\n".join(lines) + "\n")
    assert main(["propagate", str(run), "--labels", str(tmp_path / "export.csv")]) == 0
    out = capsys.readouterr().out
    assert f"from {len(hand)} annotated" in out and "note: 50 labels medcne guessed" in out, out
    header, rows = read_csv(run / "propagated.csv")
    assert sum(row[3] == "1" for row in rows) == len(hand)
    assert all(rows[i][3] == "0" for i in guessed)
    only = tmp_path / "only.csv"
    only.write_text("\n".join([lines[0], *lines[len(hand) + 1:]]) + "\n")
    assert main(["propagate", str(run), "--labels", str(only), "--out", str(tmp_path / "p.csv")]) == 2
    assert "no hand-labelled rows (50 labels medcne guessed" in capsys.readouterr().err
    # evaluate scores a map against the hand labels too, and says what it left out
    assert main(["evaluate", str(run), "--labels", str(tmp_path / "export.csv"), "--no-preservation"]) == 0
    out = capsys.readouterr().out
    assert "note: 50 labels medcne guessed" in out and f"{len(hand)} labels from the CSV" in out, out


def test_qc_of_a_run_whose_data_moved_names_an_option_qc_has(tmp_path, capsys):
    import shutil

    moved = tmp_path / "data" / "blood.npz"
    moved.parent.mkdir()
    shutil.copy(SAMPLE_PATH, moved)
    run = make_run(tmp_path / "run", n=120, method="tsne-pixels", data_path=moved)
    elsewhere = tmp_path / "elsewhere.npz"
    moved.rename(elsewhere)
    assert main(["qc", str(run), "--space", "pixels"]) == 2
    err = capsys.readouterr().err
    assert "(--data)" in err  # the message's advice: an option qc now has (it took DATA only after RUN)
    assert main(["qc", str(run), "--space", "pixels", "--data", str(elsewhere)]) == 0
    assert main(["qc", str(run), str(elsewhere), "--space", "pixels"]) == 0  # the older form still works
    capsys.readouterr()
    assert main(["qc", str(run), str(elsewhere), "--data", str(elsewhere)]) == 2
    assert "give the dataset once" in capsys.readouterr().err
