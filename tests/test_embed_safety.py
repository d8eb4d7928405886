"""`medcne embed` never writes into a run, and reads its run's record and model as one (a user probe).

`embed RUN DATA --out RUN/qc.csv` replaced the run's qc.csv with placed points (the viewer then refused the
run), and a placement written as `OTHER/qc.csv` into another run did the same to it. `embed` read
params.json and model.pt at two moments without the run's lock, so a `fit --overwrite` could replace the run
in between.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medcne.cli import main
from safetyhelpers import make_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRC = Path(__file__).resolve().parents[1] / "src"
FIT = ["--epochs", "1,0,1", "--warmup", "0,0,0", "--width", "2", "--batch-size", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_safety")
    data = make_data(root / "data" / "data.npz", n=32)
    run = root / "run"
    assert main(["fit", str(data), "--out", str(run), *FIT]) == 0
    return run, data


@pytest.mark.parametrize("name", ["qc.csv", "propagated.csv", "embedding.csv"])
def test_a_placement_is_never_written_as_a_file_of_a_run(fitted, tmp_path, capsys, name):
    run, data = fitted
    other = tmp_path / "other"
    shutil.copytree(run, other)
    for target, words in ((run / name, ("is inside the run folder", "an input of this command")),
                          (other / name, ("bears the name of a run's own file",))):
        before = target.read_bytes() if target.exists() else None
        assert main(["embed", str(run), str(data), "--out", str(target), "--device", "cpu", "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert any(w in err for w in words) and err.count("\n") == 1, err
        assert (target.read_bytes() if target.exists() else None) == before
    # Any other name beside another run is the user's to choose.
    assert main(["embed", str(run), str(data), "--out", str(other / "placed.csv"), "--device", "cpu"]) == 0


def test_view_writes_its_page_into_the_run_it_reads_only(fitted, tmp_path, capsys):
    run, _ = fitted
    other = tmp_path / "other"
    shutil.copytree(run, other)
    assert main(["view", str(run), "--out", str(other / "viewer"), "--overwrite"]) == 2
    assert "bears the name of a run's own file" in capsys.readouterr().err


def test_propagate_writes_its_file_into_the_run_it_reads_only(fitted, tmp_path, capsys):
    run, data = fitted
    other = tmp_path / "other"
    shutil.copytree(run, other)
    ids = [line.split(",")[3] for line in (run / "embedding.csv").read_text().splitlines()[1:5]]
    labels = tmp_path / "ann.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{'a' if k % 2 else 'b'}\n" for k, i in enumerate(ids)))
    assert main(["propagate", str(run), "--labels", str(labels), "--space", "map",
                 "--out", str(other / "propagated.csv")]) == 2
    assert "bears the name of a run's own file" in capsys.readouterr().err
    assert main(["propagate", str(run), "--labels", str(labels), "--space", "map"]) == 0
    assert (run / "propagated.csv").is_file()


def test_embed_holds_its_run_while_it_reads_the_record_and_the_model(fitted, tmp_path, monkeypatch, capsys):
    import medcne.runs as runs

    run, data = fitted
    load, seen = runs.load_run_model, []

    def load_while_a_replacement_starts(*args, **kwargs):
        code = f"from medcne.runs.outputs import lock\nwith lock({str(run)!r}):\n    print('replaced')"
        seen.append(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "PYTHONPATH": str(SRC)}))
        return load(*args, **kwargs)

    monkeypatch.setattr(runs, "load_run_model", load_while_a_replacement_starts)
    assert main(["embed", str(run), str(data), "--out", str(tmp_path / "placed.csv"), "--device", "cpu"]) == 0
    assert "replaced" not in seen[0].stdout and f"pid {os.getpid()}" in seen[0].stderr, seen[0]


def test_a_model_file_of_another_run_is_refused(fitted, tmp_path, capsys):
    run, data = fitted
    wider = tmp_path / "wider"
    assert main(["fit", str(data), "--out", str(wider), *[a if a != "2" else "4" for a in FIT]]) == 0  # width 4
    mixed = tmp_path / "mixed"
    shutil.copytree(run, mixed)
    shutil.copyfile(wider / "model.pt", mixed / "model.pt")  # a model put into the wrong run by hand
    capsys.readouterr()
    assert main(["embed", str(mixed), str(data), "--out", str(tmp_path / "placed.csv"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "model.pt: not the model of this run: its width is 4, where the run's params.json records 2" in err, err
    assert not (tmp_path / "placed.csv").exists()


def test_a_run_of_an_older_medcne_without_newer_parameters_still_places_images(fitted, tmp_path):
    import json

    run, data = fitted
    old = tmp_path / "old"
    shutil.copytree(run, old)
    params = json.loads((old / "params.json").read_text())
    del params["estimator"]["stream"]  # a parameter added after the run was made
    (old / "params.json").write_text(json.dumps(params))
    assert main(["embed", str(old), str(data), "--out", str(tmp_path / "placed.csv"), "--device", "cpu"]) == 0
