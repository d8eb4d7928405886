"""Which rows of an annotation CSV are labels a person gave: the viewer's export marks its own
suggestions ``source=suggested``, and propagate's output marks the rows it filled in ``annotated=0``;
`evaluate` and `propagate` both leave them out, and say so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.errors import MedcneError
from medcne.runs import read_label_csv, read_run
from medcne.runs.compare import compare
from medcne.runs.curate import propagate_run


def export(path, run, hand, guessed, extra=()):
    """The viewer's export: ``hand`` images labelled by a person (their run label), ``guessed`` ones
    suggested (a wrong label, confidence 0.40), then ``extra`` manual rows (id, label)."""
    names = np.array(run.class_names)
    lines = ["id,x,y,old_label,new_label,source,confidence"]
    lines += [f"{run.ids[i]},0,0,{names[run.labels[i]]},{names[run.labels[i]]},manual," for i in hand]
    lines += [f"{run.ids[i]},0,0,{names[run.labels[i]]},{names[(run.labels[i] + 1) % len(names)]},suggested,0.40"
              for i in guessed]
    lines += [f"{i},0,0,,{label},manual," for i, label in extra]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def run(tmp_path):
    r = read_run(make_run(tmp_path / "run", n=120))
    hand = np.concatenate([np.flatnonzero(r.labels == c)[:2] for c in np.unique(r.labels)])
    return r, hand, np.setdiff1d(np.arange(len(r.ids)), hand)[:60]


def test_the_reader_keeps_hand_labels_and_counts_the_suggestions(tmp_path, run):
    r, hand, guessed = run
    path = export(tmp_path / "export.csv", r, hand, guessed)
    skipped: list[str] = []
    assert read_label_csv(path, skipped=skipped) == {r.ids[i]: r.class_names[r.labels[i]] for i in hand}
    assert skipped == [r.ids[i] for i in guessed]
    plain = tmp_path / "plain.csv"  # a hand-written CSV has no source column: every row counts
    plain.write_text("id,label\n" + "".join(f"{r.ids[i]},x\n" for i in guessed))
    assert len(read_label_csv(plain)) == len(guessed)
    with pytest.raises(MedcneError, match=r"only\.csv: no hand-labelled rows \(60 labels medcne guessed"):
        read_label_csv(export(tmp_path / "only.csv", r, [], guessed))


def test_evaluate_scores_the_map_against_hand_labels_only(tmp_path, run, capsys):
    """A suggestion is the map's own neighbours' vote: scored against it, a map scores itself."""
    r, hand, guessed = run
    path = export(tmp_path / "export.csv", r, hand, guessed)
    assert main(["evaluate", str(r.path), "--labels", str(path), "--no-preservation"]) == 0
    record = json.loads((r.path / "metrics.json").read_text())["labels"]
    assert record["changed"] == [f"{len(hand)} labels from the CSV"], record
    assert main(["evaluate", str(r.path), "--labels", str(export(tmp_path / "only.csv", r, [], guessed)),
                 "--no-preservation"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no hand-labelled rows" in err and len(err.splitlines()) == 1


def test_propagate_notes_what_it_left_out_in_evaluates_words(tmp_path, run):
    r, hand, guessed = run
    path = export(tmp_path / "export.csv", r, hand, guessed, extra=[("nope/x.png", "basophil"), ("nope/y", "new")])
    _, s = propagate_run(r, path, tmp_path / "p.csv")
    assert s["annotated"] == len(hand) and s["suggested_ids"] == [r.ids[i] for i in guessed]
    assert s["notes"] == [
        "60 labels medcne guessed (the viewer's suggestions, or propagated rows with annotated 0) were left out: "
        "only labels a person gave count; to keep some, select those images in the viewer and label them",
        "2 unknown ids ignored (not images of this run, e.g. 'nope/x.png')",
    ]


def test_propagates_own_output_read_back_keeps_only_the_annotated_rows(tmp_path, run, capsys):
    # propagated.csv labels every image; its rows with annotated 0 are the propagation's guesses. Read back
    # as annotations they became hand labels of confidence 1 (propagate) or the map's own score (evaluate).
    r, hand, guessed = run
    first, s1 = propagate_run(r, export(tmp_path / "export.csv", r, hand, guessed), tmp_path / "p1.csv")
    assert s1["annotated"] == len(hand)
    again, s2 = propagate_run(r, first, tmp_path / "p2.csv")
    assert s2["annotated"] == len(hand) and len(s2["suggested_ids"]) == len(r.ids) - len(hand)
    assert s2["notes"][0].startswith(f"{len(r.ids) - len(hand)} labels medcne guessed")
    rows = [line.split(",") for line in again.read_text().splitlines()[1:]]
    assert sum(row[3] == "1" for row in rows) == len(hand)  # annotated: the hand labels only
    assert main(["evaluate", str(r.path), "--labels", str(first), "--no-preservation"]) == 0
    assert f"note: {len(r.ids) - len(hand)} labels medcne guessed" in capsys.readouterr().out
    record = json.loads((r.path / "metrics.json").read_text())["labels"]
    assert record["changed"] == [f"{len(hand)} labels from the CSV"], record
    plain = tmp_path / "plain.csv"  # an `annotated` column alone, all 1: every row is a person's
    plain.write_text("id,label,annotated\n" + "".join(f"{r.ids[i]},x,1\n" for i in guessed))
    assert len(read_label_csv(plain)) == len(guessed)


def test_compare_names_the_dataset_of_a_run_scored_on_other_labels(tmp_path):
    from medcne.datasets import SAMPLE_PATH

    other = tmp_path / "data" / "other.npz"
    other.parent.mkdir()
    other.write_bytes(SAMPLE_PATH.read_bytes())
    a = make_run(tmp_path / "a", n=100, method="tsimcne")
    b = make_run(tmp_path / "b", n=100, method="tsimcne", data_path=other)
    two = tmp_path / "two.csv"
    two.write_text("old,new\nbasophil,basophil\n*,other\n")
    assert main(["evaluate", str(b), "--labels-map", str(two), "--no-preservation"]) == 0
    md = compare([a, b], tmp_path / "r")["md"].read_text()
    assert "- tsimcne on other [subset 100, seed 0]: 2 classes (labels mapped: 8 classes -> 2)" in md, md
