"""`medcne fit` writes a complete run folder; `medcne embed` places new images; bad input exits 2."""

import csv
import json

import numpy as np
import pytest
import torch

from medcne.cli import main
from medcne.datasets import SAMPLE_PATH, load_sample
from medcne.metrics import knn_accuracy, silhouette
from medcne.runs import read_run

TINY = ["--subset", "48", "--size", "16", "--epochs", "1,1,1", "--warmup", "0,0,0", "--width", "4",
        "--batch-size", "16", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["fit", str(SAMPLE_PATH), "--out", str(out), "--preset", "rotate", *TINY]) == 0
    finally:
        torch.set_num_threads(n)
    return out


def test_run_folder_is_complete(run_dir, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {"params.json", "history.csv", "model.pt", "checkpoint.pt", "embedding.npz", "embedding.csv",
            "metrics.json", "map.png"} <= names
    assert not any(n.endswith(".tmp") for n in names)
    params = json.loads((run_dir / "params.json").read_text())
    assert params["method"] == "tsimcne" and params["data"]["path"] == str(SAMPLE_PATH.resolve())
    assert params["data"]["subset"] == 48 and params["estimator"]["preset"] == "rotate"
    assert [s["epochs"] for s in params["resolved"]["stages"]] == [1, 1, 1]
    run = read_run(run_dir)
    assert run.embedding.shape == (48, 2) and run.labels is not None and len(run.class_names) == 8
    # metrics.json has the one schema of `medcne evaluate`, computed on the map as written.
    assert run.metrics["knn_accuracy"] == knn_accuracy(run.embedding, run.labels)
    assert run.metrics["silhouette"] == pytest.approx(silhouette(run.embedding, run.labels))
    assert run.metrics["n_points"] == 48 and run.metrics["seconds"] > 0
    with open(run_dir / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["stage"] for r in rows] == ["1", "2", "3"] and float(rows[0]["views_per_s"]) > 0
    header = (run_dir / "embedding.csv").read_text().splitlines()[0]
    assert header == "x,y,label,id"
    # The run's images can be read back from params.json alone.
    assert np.array_equal(run.load_images().ids, run.ids)


def test_embed_places_new_images(run_dir, tmp_path, capsys):
    out = tmp_path / "new.csv"
    assert main(["embed", str(run_dir), str(SAMPLE_PATH), "--subset", "20", "--seed", "7", "--out", str(out),
                 "--device", "cpu"]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "x,y,label,id" and len(rows) == 21
    # Same images as the run -> same coordinates as the run's embedding (size taken from the run).
    same = tmp_path / "same.npz"
    assert main(["embed", str(run_dir), str(SAMPLE_PATH), "--subset", "48", "--out", str(same)]) == 0
    with np.load(same) as z:
        np.testing.assert_allclose(z["embedding"], read_run(run_dir).embedding, atol=1e-5)
    assert main(["embed", str(run_dir), str(SAMPLE_PATH), "--out", str(out)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err


def test_existing_out_is_refused(run_dir, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    assert main(["fit", str(SAMPLE_PATH), "--out", str(run_dir), *TINY]) == 2
    err = capsys.readouterr().err
    # A finished run cannot be resumed, so the line offers --overwrite only.
    assert "--overwrite" in err and "finished run" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


@pytest.mark.parametrize("bad,match", [
    (["--epochs", "10,5"], "epochs"), (["--lr", "fast"], "--lr"), (["--width", "0"], "width"),
])
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, bad, match):
    out = tmp_path / "run"
    assert main(["fit", str(SAMPLE_PATH), "--out", str(out), *TINY, *bad]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_resume_finishes_an_interrupted_run(run_dir, tmp_path):
    # An interrupted run has params.json and checkpoint.pt but no results yet.
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    for name in ("model.pt", "embedding.npz", "embedding.csv", "metrics.json", "map.png"):
        (broken / name).unlink()
    assert main(["fit", "--resume", str(broken)]) == 0
    np.testing.assert_allclose(read_run(broken).embedding, read_run(run_dir).embedding, atol=1e-5)


def test_quick_settings_on_cpu():
    from medcne.cli import build_parser
    from medcne.cli.fit import training_params
    from medcne.defaults import QUICK_CPU

    args = build_parser().parse_args(["fit", "x.npz", "--out", "r", "--quick", "--device", "cpu", "--width", "8"])
    params = training_params(args)
    assert params["width"] == 8  # explicit options win over --quick
    assert params["epochs"] == QUICK_CPU["epochs"] and params["batch_size"] == QUICK_CPU["batch_size"]
    assert len(load_sample()) == 2000


def test_fit_and_evaluate_write_the_same_metrics(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    before = json.loads((copy / "metrics.json").read_text())
    assert main(["evaluate", str(copy)]) == 0
    after = json.loads((copy / "metrics.json").read_text())
    assert after == before  # same keys, same split, same values: one schema, one label coding


def fit_params(*options):
    from medcne.cli import build_parser
    from medcne.cli.fit import training_params

    return training_params(build_parser().parse_args(["fit", "x.npz", "--out", "r", "--device", "cpu", *options]))


def test_a_cpu_run_that_names_no_schedule_gets_a_budget_not_the_papers_days():
    from medcne.defaults import BUDGET_CPU, CPU_DEFAULT_BUDGET, PAPER

    plain = fit_params()
    assert plain["budget"] == CPU_DEFAULT_BUDGET
    assert (plain["width"], plain["batch_size"]) == (BUDGET_CPU["width"], BUDGET_CPU["batch_size"])
    paper = fit_params("--paper")
    assert paper["budget"] is None and paper["epochs"] == PAPER["epochs"] and paper["width"] == PAPER["width"]
    epochs = fit_params("--epochs", "3,1,2")  # a schedule named: no budget, still the CPU's network
    assert epochs["budget"] is None and epochs["width"] == BUDGET_CPU["width"]
    assert fit_params("--quick")["budget"] is None and fit_params("--budget", "2m")["budget"] == "2m"


def test_the_cpu_rule_is_said_at_once_and_in_help(monkeypatch, capsys):
    import medcne.runs as runs
    from medcne.cli import build_parser

    seen = {}
    monkeypatch.setattr(runs, "fit_run", lambda data, out, params, **kw: seen.update(params) or None, raising=False)
    assert main(["fit", "x.npz", "--out", "r", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "15m time budget" in out and "--paper" in out and seen["budget"] == "15m"
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["fit"]
    assert "15-minute --budget" in sub.format_help()
