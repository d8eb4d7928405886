"""Messages a user probe found untrue or unclear: each says what is true, names the option, and gives the fix.

1. --color-by on a column the run's points have no values in said "no id matches the run's ids".
2. --color-by without --values on a run whose embedding.csv is gone named a --values that was not given.
3. `medcne view --thumb 100000` did not name the option.
4. --size 0 was told "(height, width)", a Python tuple a command-line user cannot type.
5. A run without params.json was sent to `medcne fit --resume`, which then said "no checkpoint.pt".
6. An embedding.npz of Python objects passed on numpy's advice to load it unsafely (allow_pickle).
"""

from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH
from medcne.errors import MedcneError
from medcne.params import for_cli
from medcne.runfiles import FINISHED


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def run_ids(run) -> list[str]:
    with open(run / "embedding.csv", newline="", encoding="utf-8") as f:
        return [row["id"] for row in csv.DictReader(f)]


# -- 1. a column without values for the run's points ---------------------------------------
def test_color_by_label_of_an_unlabelled_run_says_the_column_is_empty_not_that_no_id_matches(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=30, labeled=False)
    assert main(["plot", str(run), "--color-by", "label", "--out", str(tmp_path / "x.png")]) == 2
    line = one_error_line(capsys)
    assert "no id matches" not in line, line
    assert "column 'label' has no values for any of the 30 points" in line, line
    assert "give --values CSV" in line and "or colour by another column" in line, line
    assert not (tmp_path / "x.png").exists()


def test_values_whose_ids_are_the_runs_but_whose_cells_are_empty_say_so(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=30)
    values = tmp_path / "vals.csv"
    values.write_text("id,score\n" + "".join(f"{i},\n" for i in run_ids(run)))
    assert main(["plot", str(run), "--values", str(values), "--color-by", "score",
                 "--out", str(tmp_path / "x.png")]) == 2
    line = one_error_line(capsys)
    assert f"{values}: column 'score' has no values for any of the 30 points" in line, line
    assert "fill in 'score' for the run's ids" in line and "no id matches" not in line, line


def test_values_of_other_ids_still_say_no_id_matches(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=30)
    values = tmp_path / "vals.csv"
    values.write_text("id,score\nnot-an-id,1.5\n")
    assert main(["plot", str(run), "--values", str(values), "--color-by", "score",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "no id matches the run's ids" in one_error_line(capsys)


# -- 2. the run's own embedding.csv is missing ----------------------------------------------
def test_color_by_without_values_on_a_run_without_embedding_csv_names_the_runs_file(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=30)
    params = json.loads((run / "params.json").read_text())
    (run / "params.json").write_text(json.dumps({**params, FINISHED: True}))  # as medcne's writers mark a run
    (run / "embedding.csv").unlink()
    assert main(["plot", str(run), "--color-by", "label", "--out", str(tmp_path / "x.png")]) == 2
    line = one_error_line(capsys)
    assert "--values " + str(run) not in line, line  # --values was not given
    assert f"{run / 'embedding.csv'} is missing" in line, line
    assert "make the run again, or give --values CSV" in line, line


# -- 3. --thumb out of range names the option -------------------------------------------------
# The one message of sprites.check_thumb, which build_viewer and the sprite sheets' layout both use.
THUMB_MESSAGE = "`thumb` must be a thumbnail side from 1 to {max} pixels (the side of a sprite sheet); got {got}"


def test_build_viewer_names_thumb_before_reading_any_image(tmp_path):
    from medcne.viewer import build_viewer

    run = make_run(tmp_path / "run", n=20)
    with pytest.raises(MedcneError) as exc:
        build_viewer(run, tmp_path / "vw", thumb=100000, data_path=tmp_path / "nowhere.npz")
    assert str(exc.value) == THUMB_MESSAGE.format(max=4096, got=100000)
    with pytest.raises(MedcneError) as exc:
        build_viewer(run, tmp_path / "vw", thumb=600, max_sheet=512, data_path=tmp_path / "nowhere.npz")
    assert str(exc.value) == THUMB_MESSAGE.format(max=512, got=600)
    with pytest.raises(MedcneError) as exc:
        build_viewer(run, tmp_path / "vw", thumb=0, data_path=tmp_path / "nowhere.npz")
    assert str(exc.value) == THUMB_MESSAGE.format(max=4096, got=0)


def test_view_thumb_too_large_is_one_line_naming_the_option(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=20)
    assert main(["view", str(run), "--out", str(tmp_path / "vw"), "--thumb", "100000"]) == 2
    line = one_error_line(capsys)
    assert line == "medcne view: error: " + for_cli(THUMB_MESSAGE.format(max=4096, got=100000)), line
    assert line == ("medcne view: error: --thumb must be a thumbnail side from 1 to 4096 pixels "
                    "(the side of a sprite sheet); got 100000"), line
    assert not (tmp_path / "vw").exists()


def test_the_command_line_shows_thumb_as_its_option(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=20)
    assert main(["view", str(run), "--out", str(tmp_path / "vw"), "--thumb", "100000"]) == 2
    line = one_error_line(capsys)
    assert line.endswith("error: --thumb must be a thumbnail side from 1 to 4096 pixels (the side of a sprite "
                         "sheet); got 100000") and "`" not in line, line


# -- 4. --size in the command line's form ---------------------------------------------------------
@pytest.mark.parametrize("size, got", [("0", "'0'"), ("0x5", "'0x5'"), ("1x2x3", "'1x2x3'")])
def test_size_says_hxw_and_what_was_typed(size, got, capsys):
    assert main(["info", str(SAMPLE_PATH), f"--size={size}"]) == 2
    line = one_error_line(capsys)
    assert line == ("medcne info: error: --size must be a positive integer or HxW such as 28x32 "
                    f"(in Python also a (height, width) pair); got {got}"), line


def test_python_size_message_names_the_parameter_and_the_pair():
    from medcne.datasets.convert import parse_size

    with pytest.raises(MedcneError) as caught:
        parse_size((0, 5))
    assert str(caught.value) == ("`size` must be a positive integer or HxW such as 28x32 "
                                 "(in Python also a (height, width) pair); got (0, 5)")


# -- 5. a run without params.json -------------------------------------------------------------
def stopped_run_without_params(folder):
    run = make_run(folder, n=20)
    (run / "checkpoint.pt").write_bytes(b"a checkpoint")
    (run / "params.json").unlink()
    return run


def test_a_run_without_params_json_is_not_sent_to_resume_and_resume_agrees(tmp_path, capsys):
    run = stopped_run_without_params(tmp_path / "run")
    said = (f"{run}: not a finished run, and it cannot be resumed: {run / 'params.json'} is missing "
            "(it records the data and settings a resume needs; checkpoint.pt alone is not enough); "
            f"make the run again with `medcne fit DATA --out {run} --overwrite`")
    assert main(["embed", str(run), str(SAMPLE_PATH), "--out", str(tmp_path / "e.csv")]) == 2
    assert one_error_line(capsys) == "medcne embed: error: " + said
    assert main(["plot", str(run), "--out", str(tmp_path / "x.png")]) == 2
    assert one_error_line(capsys) == "medcne plot: error: " + said
    assert main(["fit", "--resume", str(run)]) == 2
    line = one_error_line(capsys)
    assert line == "medcne fit: error: " + said, line
    assert "no checkpoint.pt" not in line


def test_resume_run_without_params_json_says_the_same(tmp_path):
    from medcne.runs import resume_run

    run = stopped_run_without_params(tmp_path / "run")
    with pytest.raises(MedcneError, match=r"cannot be resumed: .*params.json is missing"):
        resume_run(run, verbose=False)


# -- 6. an embedding.npz of Python objects ---------------------------------------------------------
def replace_npz(run, **arrays):
    z = dict(np.load(run / "embedding.npz"))
    z.update(arrays)
    np.savez(run / "embedding.npz", **z)


@pytest.mark.parametrize("command", [
    lambda run, tmp: ["embed", str(run), str(SAMPLE_PATH), "--out", str(tmp / "e.csv")],
    lambda run, tmp: ["evaluate", str(run)],
    lambda run, tmp: ["plot", str(run), "--out", str(tmp / "x.png")],
    lambda run, tmp: ["compare", str(run), str(run), "--out", str(tmp / "c.csv")],
], ids=["embed", "evaluate", "plot", "compare"])
def test_an_object_array_in_embedding_npz_is_damage_not_advice_to_load_it_unsafely(tmp_path, capsys, command):
    run = make_run(tmp_path / "run", n=20)
    replace_npz(run, embedding=np.array([["a", "b"]] * 20, dtype=object))
    assert main(command(run, tmp_path)) == 2
    line = one_error_line(capsys)
    assert "allow_pickle" not in line and "unsafe" not in line, line
    # the run's remedy, not the advice for a user's data ("store numbers, and text as fixed-width strings")
    assert line.endswith(f": error: {run / 'embedding.npz'}: array 'embedding' holds Python objects (dtype object), "
                         "which medcne does not load (unpickling can run code); make the run again"), line


def test_a_pickle_under_the_name_embedding_npz_is_damage(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=20)
    (run / "embedding.npz").write_bytes(pickle.dumps({"embedding": [[0.0, 1.0]]}))
    assert main(["plot", str(run), "--out", str(tmp_path / "x.png")]) == 2
    line = one_error_line(capsys)
    assert "allow_pickle" not in line and "unsafe" not in line, line
    assert line.endswith(f": error: {run / 'embedding.npz'}: not an .npz archive (it does not start as a zip file "
                         "does); make the run again"), line


def test_one_bare_npy_array_under_the_name_embedding_npz_is_damage_not_an_internal_error(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=20)
    with open(run / "embedding.npz", "wb") as f:
        np.save(f, np.zeros((20, 2)))
    assert main(["plot", str(run), "--out", str(tmp_path / "x.png")]) == 2
    line = one_error_line(capsys)
    assert "internal error" not in line, line
    assert line.endswith(f": error: {run / 'embedding.npz'}: holds one bare array, not an .npz archive; "
                         "make the run again"), line


def test_the_viewers_extra_columns_refuse_an_object_array_too(tmp_path):
    from medcne.embedfile import read_columns

    run = make_run(tmp_path / "run", n=20)
    replace_npz(run, score=np.array([{"a": 1}] * 20, dtype=object))
    with pytest.raises(MedcneError) as caught:
        read_columns(run / "embedding.npz", 20)
    assert str(caught.value) == (f"{run / 'embedding.npz'}: array 'score' holds Python objects (dtype object), "
                                 "which medcne does not load (unpickling can run code); make the run again")


def test_writing_over_a_stopped_run_without_params_json_does_not_offer_a_resume(tmp_path):
    from medcne.errors import MedcneError
    from medcne.runfiles import TSIMCNE_FILES
    from medcne.runs import staging

    out = tmp_path / "run"
    out.mkdir()
    staging.mark(out, TSIMCNE_FILES)
    (out / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(MedcneError, match="holds an unfinished run; pass `overwrite` to replace its run files, or"):
        staging.check(out, False, option="overwrite")
    (out / "params.json").write_text("{}")  # with its record, the resume is offered
    with pytest.raises(MedcneError, match=r"`resume_run\("):
        staging.check(out, False, option="overwrite")


def test_a_run_and_a_page_can_be_written_into_the_current_empty_folder(tmp_path, monkeypatch, capsys):
    # `--out .`: the lock file and the page's build folder lay inside `.`, which then "held files medcne
    # did not write" (its own lock file) and was refused.
    from medcne.datasets import SAMPLE_PATH

    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["baseline", str(SAMPLE_PATH), "--method", "tsne-pixels", "--subset", "64", "--out", "."]) == 0, \
        capsys.readouterr().err
    assert (tmp_path / "here" / "embedding.npz").is_file()
    run = make_run(tmp_path / "run", n=20)
    (tmp_path / "page").mkdir()
    monkeypatch.chdir(tmp_path / "page")
    assert main(["view", str(run), "--out", "."]) == 0, capsys.readouterr().err
    assert (tmp_path / "page" / "index.html").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no lock or build folder left beside


def test_an_output_that_cannot_be_written_names_itself_and_the_fix(tmp_path, capsys):
    # Was: "/proc/.x.medcne-lock: no such file or folder" (the lock file, no fix).
    from medcne.datasets import SAMPLE_PATH

    assert main(["baseline", str(SAMPLE_PATH), "--method", "tsne-pixels", "--out", "/proc/medcne-x"]) == 2
    line = one_error_line(capsys)
    assert "/proc/medcne-x: cannot be written there" in line and "choose a folder you can write to" in line, line
