"""What a user probe found: which rows of a labels CSV count (only what the docs say; an unknown value of
``source`` or ``annotated`` is refused, not guessed), what ``evaluate --labels`` scores, npz files that give
one id to several images, and the ``--np-queries`` message."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.errors import MedcneError
from medcne.runs import read_label_csv, read_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return read_run(make_run(tmp_path_factory.mktemp("probe") / "run", n=60))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0] and "None" not in err[0], err
    return err[0]


def export(path, rows):
    """The viewer's export with ``rows`` of (id, new_label, source)."""
    lines = ["id,x,y,old_label,new_label,source,confidence", *(f"{i},0,0,,{label},{source}," for i, label, source in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def propagated(path, rows):
    """propagate's output with ``rows`` of (id, label, annotated)."""
    lines = ["id,label,confidence,annotated", *(f"{i},{label},1.0000,{a}" for i, label, a in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


# 1. Only `manual` rows of the viewer's export and `annotated` 1 rows of propagate's output count.

@pytest.mark.parametrize("source", ["other", "", "Manual?"])
def test_a_source_that_is_neither_manual_nor_suggested_is_refused(tmp_path, run, source):
    a, b, c = run.ids[:3]
    path = export(tmp_path / "ann.csv", [(a, "basophil", "manual"), (b, "basophil", "suggested"),
                                         (c, "basophil", source)])
    shown = re.escape(f"'{source}'") if source else "empty"
    with pytest.raises(MedcneError, match=rf"ann\.csv: line 4: source is {shown}, .*write 'manual'"):
        read_label_csv(path)


@pytest.mark.parametrize("annotated", ["2", "yes", "", "true"])
def test_an_annotated_value_that_is_neither_1_nor_0_is_refused(tmp_path, run, annotated):
    a, b, c = run.ids[:3]
    path = propagated(tmp_path / "p.csv", [(a, "basophil", 1), (b, "basophil", 0), (c, "basophil", annotated)])
    shown = f"'{annotated}'" if annotated else "empty"
    with pytest.raises(MedcneError, match=rf"p\.csv: line 4: annotated is {shown}, .*write 1 .* or 0"):
        read_label_csv(path)


def test_the_documented_rows_count_and_the_guessed_ones_are_left_out(tmp_path, run):
    a, b, c, d = run.ids[:4]
    skipped: list[str] = []
    path = export(tmp_path / "ann.csv", [(a, "basophil", "manual"), (b, "eosinophil", " suggested "),
                                         (c, "", ""), (d, "", "other")])  # no label: only selected, skipped
    assert read_label_csv(path, skipped=skipped) == {a: "basophil"} and skipped == [b]
    skipped = []
    path = propagated(tmp_path / "p.csv", [(a, "basophil", 1), (b, "eosinophil", 0), (c, "platelet", " 1")])
    assert read_label_csv(path, skipped=skipped) == {a: "basophil", c: "platelet"} and skipped == [b]
    both = tmp_path / "both.csv"  # both columns: a row counts only when both say a person gave it
    both.write_text(f"id,label,source,annotated\n{a},basophil,manual,1\n{b},basophil,manual,0\n"
                    f"{c},basophil,suggested,1\n")
    skipped = []
    assert read_label_csv(both, skipped=skipped) == {a: "basophil"} and skipped == [b, c]
    plain = tmp_path / "plain.csv"
    plain.write_text(f"id,label\n{a},basophil\n{b},eosinophil\n")
    assert read_label_csv(plain) == {a: "basophil", b: "eosinophil"}


@pytest.mark.parametrize("command", ["evaluate", "propagate"])
@pytest.mark.parametrize("kind", ["export", "propagated"])
def test_the_cli_refuses_an_unknown_marker_in_one_line(tmp_path, run, capsys, command, kind):
    a, b = run.ids[:2]
    path = (export(tmp_path / "ann.csv", [(a, "basophil", "manual"), (b, "basophil", "other")]) if kind == "export"
            else propagated(tmp_path / "ann.csv", [(a, "basophil", 1), (b, "basophil", "yes")]))
    out = ["--out", str(tmp_path / "p.csv")] if command == "propagate" else ["--no-preservation"]
    assert main([command, str(run.path), "--labels", str(path), *out]) == 2
    err = one_line_error(capsys)
    column = "source is 'other'" if kind == "export" else "annotated is 'yes'"
    assert f"{path}: line 3: {column}" in err, err
    assert not (tmp_path / "p.csv").exists()


def test_propagates_own_output_reads_back_and_a_source_provenance_column_is_renamed(tmp_path):
    """propagate writes `annotated` 0/1 and never a `source` column (a provenance column of that name would
    then decide which rows count): its output reads back with its annotated rows only."""
    from medcne.runs.curate import propagate_run

    run = read_run(make_run(tmp_path / "run", n=60))
    hand = [int(np.flatnonzero(run.labels == c)[0]) for c in np.unique(run.labels)]
    ann = tmp_path / "ann.csv"
    ann.write_text("id,label\n" + "".join(f"{run.ids[i]},{run.class_names[run.labels[i]]}\n" for i in hand))
    npz = run.path / "embedding.npz"
    with np.load(npz) as z:
        arrays = dict(z)
    arrays["prov_source"] = np.array([f"slide{i % 3}.svs" for i in range(len(run.ids))])
    np.savez(npz, **arrays)
    out, _ = propagate_run(read_run(run.path), ann, tmp_path / "p.csv")
    header = out.read_text().splitlines()[0].split(",")
    assert header[:4] == ["id", "label", "confidence", "annotated"] and "prov_source" in header
    assert "source" not in header
    skipped: list[str] = []
    assert len(read_label_csv(out, skipped=skipped)) == len(hand) and len(skipped) == len(run.ids) - len(hand)


# 2. `evaluate --labels` scores every labelled image: the CSV's labels replace the run's for its ids.

def test_evaluate_with_a_few_hand_labels_scores_every_image_as_the_docs_say(tmp_path, capsys):
    from pathlib import Path

    run = make_run(tmp_path / "run", n=60)
    r = read_run(run)
    few = tmp_path / "few.csv"
    few.write_text("id,label\n" + "".join(f"{r.ids[i]},{r.class_names[r.labels[i]]}\n" for i in range(5)))
    assert main(["evaluate", str(run), "--labels", str(few), "--no-preservation"]) == 0
    assert json.loads((run / "metrics.json").read_text())["n_labeled"] == 60
    docs = (Path(__file__).resolve().parents[1] / "docs" / "curation.md").read_text(encoding="utf-8")
    line = next(x for x in docs.splitlines() if x.startswith("medcne evaluate demo-run --labels"))
    assert "hand labels only" not in line and "every image" in line, line


# 3. An npz whose `ids` give one id to several images is refused: ids are the keys labels are matched on.

def _npz(path, ids, split=None):
    images = np.random.default_rng(0).integers(0, 255, (len(ids), 8, 8, 3), dtype=np.uint8)
    extra = {} if split is None else {"split": np.asarray(split)}
    np.savez(path, images=images, labels=np.arange(len(ids)) % 2, ids=np.asarray(ids), **extra)
    return path


@pytest.mark.parametrize("command", [["info"], ["fit", "--out", "OUT", "--epochs", "1,1,1"]])
def test_repeated_npz_ids_are_refused_in_one_line(tmp_path, capsys, command):
    path = _npz(tmp_path / "dup.npz", ["x"] * 32)
    argv = [command[0], str(path), *(str(tmp_path / "out") if a == "OUT" else a for a in command[1:])]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"{path}: in 'ids', the id 'x' is given to 32 images" in err, err
    assert "give every image its own id, or leave 'ids' out to number the images" in err
    assert not (tmp_path / "out").exists()


def test_repeated_ids_are_named_and_counted_and_unique_ones_are_fine(tmp_path):
    from medcne.datasets import load_dataset
    from medcne.errors import DataError

    with pytest.raises(DataError, match=r"the id 'b' is given to 3 images \(2 ids are repeated\)"):
        load_dataset(_npz(tmp_path / "two.npz", ["a", "b", "a", "b", "b", "c"]))
    with pytest.raises(DataError, match=r"the id '' is given to 2 images"):
        load_dataset(_npz(tmp_path / "empty.npz", ["", "", "c"]))
    assert list(load_dataset(_npz(tmp_path / "ok.npz", ["a", "b", "c"])).ids) == ["a", "b", "c"]
    # ids unique within each split: a split reads fine, the whole file repeats them
    per_split = _npz(tmp_path / "split.npz", ["0", "1", "0", "1"], split=[0, 0, 2, 2])
    assert list(load_dataset(per_split, split="train").ids) == ["0", "1"]
    with pytest.raises(DataError, match=r"the id '0' is given to 2 images \(2 ids are repeated\)"):
        load_dataset(per_split)


# 4. --np-queries: 0 means every image on the command line (None in Python).

def test_the_np_queries_message_speaks_to_both_audiences(run, capsys):
    from medcne.runs import evaluate_and_write

    with pytest.raises(MedcneError, match=r"^`n_queries` must be a positive integer, or None for every image in "
                                          r"Python \(0 for every image on the command line\); got -1$"):
        evaluate_and_write(run, n_queries=-1)
    assert main(["evaluate", str(run.path), "--np-queries", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--np-queries must be a positive integer" in err and "0 for every image on the command line" in err


# 5. Class names that begin or end with a space (a folder's name can): a CSV's label, read without the
# spaces around it, still names that class, in `evaluate --labels` and in `propagate`.

def test_a_label_names_a_class_whose_name_has_spaces_around_it(tmp_path):
    from medcne.embedfile import write_embedding
    from medcne.runs.curate import annotation_codes
    from medcne.runs.evaluate import run_labels

    folder = make_run(tmp_path / "run", n=60)
    emb = np.load(folder / "embedding.npz")
    labels = np.arange(60) % 2
    spaced = [" basophil", "lymphocyte "]
    write_embedding(folder, emb["embedding"], emb["ids"], labels, spaced)
    run = read_run(folder)
    ids = [str(i) for i in run.ids]
    csv = export(tmp_path / "a.csv", [(ids[0], "lymphocyte", "manual"), (ids[1], "basophil", "manual")])
    codes, names, _ = run_labels(run, read_label_csv(csv))
    assert names == spaced and codes[0] == 1 and codes[1] == 0
    codes, names, _, _ = annotation_codes(run, csv)
    assert names == spaced and codes[0] == 1 and codes[1] == 0
    # A class named without spaces is still a class of its own when the run has it.
    write_embedding(folder, emb["embedding"], emb["ids"], labels, [" a", "a"])
    both = read_run(folder)
    codes, names, _ = run_labels(both, read_label_csv(export(tmp_path / "b.csv", [(ids[0], "a", "manual")])))
    assert names == [" a", "a"] and codes[0] == 1
    # ...and a label written exactly as a spaced name is that class (the review found it read as "a").
    codes, names, _ = run_labels(both, read_label_csv(export(tmp_path / "c.csv", [(ids[1], " a", "manual")])))
    assert names == [" a", "a"] and codes[1] == 0
    # A label that two spaced names could be is refused, not guessed.
    write_embedding(folder, emb["embedding"], emb["ids"], labels, [" a", "a "])
    with pytest.raises(MedcneError, match=r"the label 'a' could be any of the classes ' a', 'a '"):
        run_labels(read_run(folder), read_label_csv(export(tmp_path / "d.csv", [(ids[0], "a", "manual")])))


# 6. A CSV with ';' between columns (a spreadsheet's export where ',' is the decimal comma): one line that
# says so, whichever command reads it (before: a quoting error, or "no column 'label'").

@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_csv_with_semicolons_between_columns_is_named_as_such(tmp_path, run, suffix):
    from medcne.datasets.csvfile import read_table

    path = tmp_path / f"labels{suffix}"
    path.write_text('id;label\n"0";"a"\n1;b\n', encoding="utf-8")
    with pytest.raises(MedcneError, match="has ';' between columns, not " + ("commas" if suffix == ".csv" else "a tab")):
        read_table(path)
    with pytest.raises(MedcneError, match="has ';' between columns"):
        read_label_csv(path)
    ok = tmp_path / "ok.csv"
    ok.write_text('id,label\n"0;1",a\n', encoding="utf-8")  # a ';' inside a value is no delimiter
    assert read_table(ok)[0] == ["id", "label"]


def test_the_labels_map_and_slide_labels_readers_name_semicolons_too(tmp_path):
    """The review: `--labels-map` and tile's `--labels` read their CSVs themselves."""
    from medcne.datasets.labels import read_labels_map
    from medcne.datasets.slides_labels import read_slide_labels

    recipe = tmp_path / "map.csv"
    recipe.write_text("old;new\nbasophil;granulocyte\n", encoding="utf-8")
    with pytest.raises(MedcneError, match="has ';' between columns, not commas"):
        read_labels_map(recipe)
    slides = tmp_path / "slides.csv"
    slides.write_text("slide;label\ns1;tumour\n", encoding="utf-8")
    with pytest.raises(MedcneError, match="has ';' between columns, not commas"):
        read_slide_labels(slides)
