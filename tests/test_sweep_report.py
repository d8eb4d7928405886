"""The sweep report: mean ± std over seeds from the cells' metrics.json, best in bold, answers, figure grid."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from medcne.cli import main
from medcne.datasets import SAMPLE_PATH
from medcne.io import write_json
from medcne.sweep import cells, prepare_sweep, shorthand, write_report
from medcne.sweep.report import answers, collect, to_markdown
from medcne.sweep.run import CellProgress
from sweephelpers import fake_run

KNN = {"simclr": [60.0, 62.0, 64.0], "rotate": [70.0, 71.0, 75.0], "tsne-pixels": [65.0, 65.0, 66.0]}
SIL = {"simclr": [0.05, 0.06, 0.07], "rotate": [0.15, 0.17, 0.20], "tsne-pixels": [0.02, 0.02, 0.03]}


@pytest.fixture
def sweep_dir(tmp_path):
    """A sweep of 3 methods x 3 seeds whose cells are fake finished runs; rotate/seed2 is unfinished."""
    config = shorthand(SAMPLE_PATH, {"subset": 48}, ["simclr", "rotate"], ["tsne-pixels"], 3)
    out = tmp_path / "sweep"
    plan = cells(config, {"device": "cpu"})
    prepare_sweep(config, out, plan)
    for cell in plan:
        folder = cell.folder(out)
        if cell.name.endswith("rotate/seed2"):
            folder.mkdir(parents=True)
            write_json(folder / "params.json", {"method": "tsimcne"})  # killed while training
            continue
        fake_run(folder, KNN[cell.method][cell.seed], SIL[cell.method][cell.seed], cell.seed)
    return out


def test_table_is_mean_and_std_of_the_runs_metrics(sweep_dir):
    report = write_report(sweep_dir)
    assert set(report["paths"]) == {"csv", "md", "png"} and (sweep_dir / "report.png").stat().st_size > 0
    with open(sweep_dir / "report.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert list(rows) == ["simclr", "rotate", "tsne-pixels"]
    rotate = rows["rotate"]
    assert rotate["n_seeds"] == "2"  # the unfinished seed is left out
    assert float(rotate["knn_mean"]) == pytest.approx(70.5)
    assert float(rotate["knn_std"]) == pytest.approx(statistics.stdev([70.0, 71.0]))
    assert float(rows["simclr"]["silhouette_mean"]) == pytest.approx(0.06)
    assert rows["simclr"]["knn_by_seed"] == "0:60.0 1:62.0 2:64.0"
    md = (sweep_dir / "report.md").read_text()
    assert "| rotate | **70.5 ± 0.7** | **0.160 ± 0.014** | 2 | 1.0 |" in md
    assert "| simclr | 62.0 ± 2.0 | 0.060 ± 0.010 | 3 | 1.0 |" in md
    assert "## bloodmnist_sample (48 images)" in md and "![maps" in md


def test_answer_is_the_best_against_the_reference_paired_by_seed(sweep_dir):
    sweep, rows = collect(sweep_dir)
    # Seeds 0 and 1: rotate - simclr = 10, 9.
    assert answers(sweep, rows) == ["rotate beats simclr by 9.5 ± 0.7 (2 seeds) kNN points on bloodmnist_sample"]
    sweep["reference"] = "rotate"
    assert answers(sweep, rows) == [
        "rotate beats tsne-pixels by 5.5 ± 0.7 (2 seeds) kNN points on bloodmnist_sample"]


def test_a_cell_scored_on_other_labels_since_is_left_out_and_said(sweep_dir):
    """A user probe: `medcne evaluate CELL --labels-map ...` on one cell put its score (on 2 classes) into
    the mean of the others (on 8), marked best, with no word of it."""
    cell = sweep_dir / "bloodmnist_sample" / "rotate" / "seed0"
    metrics = json.loads((cell / "metrics.json").read_text())
    write_json(cell / "metrics.json", {**metrics, "knn_accuracy": 99.0, "labels": {"classes": 2, "changed": ["x"]}})
    report = write_report(sweep_dir)
    with open(sweep_dir / "report.csv") as fh:
        rotate = {r["method"]: r for r in csv.DictReader(fh)}["rotate"]
    assert rotate["n_seeds"] == "1" and rotate["knn_by_seed"] == "1:71.0"
    assert report["answers"][-1].startswith("left out: 1 cell(s) scored on other labels than their own since the "
                                            "sweep (bloodmnist_sample/rotate/seed0)")
    assert "left out: 1 cell(s)" in (sweep_dir / "report.md").read_text()


def test_ties_are_said(sweep_dir):
    sweep, rows = collect(sweep_dir)
    by = {r.method: r for r in rows}
    by["tsne-pixels"].values["knn_accuracy"] = {0: 70.0, 1: 71.0}
    assert answers(sweep, rows) == ["rotate beats simclr by 9.5 ± 0.7 (2 seeds) kNN points on bloodmnist_sample "
                                    "(tied for best with tsne-pixels)"]
    by["simclr"].values["knn_accuracy"] = {0: 70.0, 1: 71.0}
    assert answers(sweep, rows) == ["simclr ties with rotate, tsne-pixels for best on bloodmnist_sample "
                                    "(70.5 ± 0.7 kNN)"]


def test_report_command_prints_the_answers(sweep_dir, capsys):
    assert main(["sweep", "--report", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "rotate beats simclr by 9.5 ± 0.7 (2 seeds) kNN points on bloodmnist_sample"
    assert "report.md" in out


@pytest.mark.parametrize("extra, named", [
    (["quick"], "CONFIG (quick) was given too: drop it"),
    (["--out", "X"], "--out was given too: drop it"),
    (["quick", "--out", "X"], "CONFIG (quick) and --out were given too: drop them"),
    (["--list"], "--list was given too: drop it"),
    (["--seeds", "3", "--quick", "--subset", "10"], "--seeds, --quick and --subset were given too: drop them"),
])
def test_report_with_a_config_out_or_sweep_options_is_refused(sweep_dir, tmp_path, capsys, extra, named):
    # --report only writes the report: what it would silently ignore is refused, before anything is written.
    x = tmp_path / "x"
    extra = [str(x) if a == "X" else a for a in extra]
    assert main(["sweep", "--report", str(sweep_dir), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"medcne sweep: error: --report DIR only writes the report of the sweep in DIR "
                            f"({sweep_dir}); {named}, or drop --report to run the sweep\n")
    assert not x.exists()  # nothing written to --out
    assert not (sweep_dir / "report.md").exists()  # nor the report


def test_report_with_options_at_their_defaults_is_taken(sweep_dir, capsys):
    # Only options the user changed count: these are the parser's defaults.
    assert main(["sweep", "--report", str(sweep_dir), "--format", "auto", "--channels", "keep"]) == 0
    assert (sweep_dir / "report.md").is_file()


def test_report_of_a_folder_that_is_no_sweep(tmp_path, capsys):
    assert main(["sweep", "--report", str(tmp_path)]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_report_before_any_cell_finished(tmp_path):
    config = shorthand(SAMPLE_PATH, {"subset": 48}, ["simclr"], [], 1)
    prepare_sweep(config, tmp_path / "s", cells(config, {"device": "cpu"}))
    report = write_report(tmp_path / "s")
    assert "png" not in report["paths"] and report["answers"] == ["bloodmnist_sample: no finished cell with labels yet"]


def test_eta_uses_the_time_of_done_cells_of_the_same_method():
    plan = cells(shorthand(SAMPLE_PATH, {}, ["rotate"], ["tsne-pixels"], 3), {"device": "cpu"})
    lines = []
    bar = CellProgress(plan, echo=lines.append)
    assert bar.eta() is None
    bar.start(plan[0])
    bar.finish(plan[0], 100.0)  # rotate
    assert bar.eta() == pytest.approx(100.0 * 5)  # nothing known of t-SNE yet: the mean of all
    bar.finish(plan[1], 2.0)  # tsne-pixels
    assert bar.eta() == pytest.approx(2 * 100.0 + 2 * 2.0)
    bar.start(plan[2])
    assert lines[0].startswith("[....................] cell 1/6, ") and "ETA unknown" in lines[0]
    assert lines[1].startswith("[######..............] cell 3/6, ") and "ETA 3m24s" in lines[1]


def test_means_that_print_alike_are_all_bold(sweep_dir):
    """The bold best is chosen on the printed value: a mean a float's last bits above another that prints
    the same is no better (both bold), in each column."""
    sweep, rows = collect(sweep_dir)
    by = {r.method: r for r in rows}
    by["tsne-pixels"].values["knn_accuracy"] = {0: 70.0, 1: 71.0 + 1e-9}  # rotate: 70.0, 71.0
    by["simclr"].values["silhouette"] = {0: 0.15, 1: 0.1704}  # rotate: 0.15, 0.17 -> 0.160 both
    md = to_markdown(sweep, rows, [])
    assert "| rotate | **70.5 ± 0.7** | **0.160 ± 0.014** |" in md
    assert "| tsne-pixels | **70.5 ± 0.7** | 0.023 ± 0.006 |" in md
    assert "| simclr | 62.0 ± 2.0 | **0.160 ± 0.014** |" in md
    # The answers tie them as the table does (the reference here is simclr).
    answer = [line for line in answers(sweep, rows) if "beats" in line or "ties" in line][0]
    assert answer.endswith("(tied for best with tsne-pixels)"), answer
