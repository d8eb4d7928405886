"""An annotation CSV that gives one id two different labels is refused (evaluate and propagate share the reader)."""

from __future__ import annotations

import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.errors import MedcneError
from medcne.runs import read_label_csv, read_run


def write(path, rows, header="id,label"):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_two_labels_for_one_id_name_both_and_their_lines(tmp_path):
    csv = write(tmp_path / "ann.csv", ["a.png,basophil", "b.png,basophil", "b.png,basophil", "a.png,platelet"])
    with pytest.raises(MedcneError, match=r"id 'a.png' has two labels, 'basophil' \(line 2\) and 'platelet' \(line 5\)"):
        read_label_csv(csv)


def test_the_same_label_twice_and_empty_new_labels_are_fine(tmp_path):
    csv = write(tmp_path / "ann.csv", ["a.png,basophil", "a.png,basophil"])
    assert read_label_csv(csv) == {"a.png": "basophil"}
    export = write(tmp_path / "export.csv", ["a.png,basophil,", "a.png,basophil,platelet"], "id,old_label,new_label")
    assert read_label_csv(export) == {"a.png": "platelet"}


@pytest.mark.parametrize("command", ["evaluate", "propagate"])
def test_cli_refuses_conflicting_annotations_in_one_line(tmp_path, capsys, command):
    run = make_run(tmp_path / "run", n=40)
    first, second = read_run(run).ids[:2]
    csv = write(tmp_path / "ann.csv", [f"{first},basophil", f"{second},eosinophil", f"{first},platelet"])
    out = ["--out", str(tmp_path / "p.csv")] if command == "propagate" else []
    assert main([command, str(run), "--labels", str(csv), *out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"id '{first}' has two labels" in err[0] and "line 4" in err[0], err
    assert not (tmp_path / "p.csv").exists()
