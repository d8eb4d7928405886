"""Issue 23, the rest of the probe: resource parameters, degenerate labels, HDF5 sources, sweep config
paths, formula injection in CSV outputs, and the cosmetic cases. Each fails on the code before it."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from medcne.cli import main
from medcne.datasets import SAMPLE_PATH, load_dataset
from medcne.errors import DataError, MedcneError
from medcne.runs.folder import staging_path
from safetyhelpers import TINY, error_lines, make_data, make_run, snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("ldata") / "data.npz")


def one_line(argv, capsys, *words) -> str:
    assert main(argv) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "internal error" not in lines[0], lines
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# -- resources --------------------------------------------------------------------------------------
def test_a_negative_seed_is_one_line(capsys):
    one_line(["info", str(SAMPLE_PATH), "--subset", "10", "--seed=-1"], capsys, "--seed")


def test_a_width_that_cannot_fit_is_refused_before_anything_is_written(data, tmp_path, capsys):
    out = tmp_path / "x"
    one_line(["fit", str(data), "--out", str(out), *TINY, "--width", "100000"], capsys, "--width 100000", "memory")
    assert not out.exists()


def test_the_memory_estimate_is_a_lower_bound_of_the_models_weights():
    import medcne.limits as limits
    from medcne.models import TSimCNENet

    for backbone, width in (("resnet18", 8), ("resnet50", 4)):
        net = TSimCNENet(backbone=backbone, width=width)
        weights = sum(p.numel() for p in net.parameters() if p.dim() > 1)
        assert limits.model_parameters(width, backbone) <= weights


def test_nproc_above_the_cores_is_refused_with_the_figure(data, tmp_path, capsys, monkeypatch):
    import torch

    import medcne.limits as limits

    monkeypatch.setattr(limits, "usable_cores", lambda: 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    one_line(["fit", str(data), "--out", str(tmp_path / "x"), *TINY, "--nproc", "64"], capsys,
             "--nproc 64", "2 CPU core")
    assert not (tmp_path / "x").exists()


# -- degenerate labels ------------------------------------------------------------------------------
def test_labels_of_one_image_each_train_without_metrics_and_a_note(tmp_path, capsys):
    images = load_dataset(SAMPLE_PATH, subset=32, seed=0, size=16).to_numpy()
    path = tmp_path / "unique.npz"
    np.savez(path, images=images, labels=np.arange(32), class_names=np.array([f"c{i}" for i in range(32)]))
    out = tmp_path / "run"
    assert main(["fit", str(path), "--out", str(out), *TINY]) == 0
    assert "class of its own" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert "silhouette" not in metrics and any("class of its own" in n for n in metrics["notes"])
    assert main(["fit", "--resume", str(out)]) == 2  # finished: nothing left that --resume must redo


# -- HDF5 sources -----------------------------------------------------------------------------------
h5py = pytest.importorskip("h5py")


def test_a_virtual_dataset_that_maps_less_than_it_declares_is_refused(tmp_path):
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["x"] = np.zeros((64, 8, 8, 3), np.uint8)
    layout = h5py.VirtualLayout(shape=(1_000_000, 8, 8, 3), dtype=np.uint8)
    layout[:64] = h5py.VirtualSource(tmp_path / "src.h5", "x", shape=(64, 8, 8, 3))
    with h5py.File(tmp_path / "v_x.h5", "w") as f:
        f.create_virtual_dataset("x", layout)
    with pytest.raises(DataError, match="maps only 12,288"):
        load_dataset(tmp_path / "v_x.h5")


def test_a_virtual_dataset_reading_outside_its_folder_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data").mkdir()
    with h5py.File(tmp_path / "elsewhere" / "src.h5", "w") as f:
        f["x"] = np.zeros((4, 8, 8, 3), np.uint8)
    layout = h5py.VirtualLayout(shape=(4, 8, 8, 3), dtype=np.uint8)
    layout[:] = h5py.VirtualSource(tmp_path / "elsewhere" / "src.h5", "x", shape=(4, 8, 8, 3))
    with h5py.File(tmp_path / "data" / "v_x.h5", "w") as f:
        f.create_virtual_dataset("x", layout)
    with pytest.raises(DataError, match="outside the dataset's folder"):
        load_dataset(tmp_path / "data" / "v_x.h5")


def test_external_storage_outside_the_folder_is_refused_and_inside_is_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 40)
    (tmp_path / "data").mkdir()
    with h5py.File(tmp_path / "data" / "e_x.h5", "w") as f:
        f.create_dataset("x", shape=(4, 8, 8, 3), dtype=np.uint8, external=[(str(secret), 0, 768)])
    with pytest.raises(DataError, match="outside the dataset's folder") as caught:
        load_dataset(tmp_path / "data" / "e_x.h5")
    assert "root:" not in str(caught.value)
    raw = tmp_path / "data" / "pixels.raw"
    raw.write_bytes(bytes(range(192)) * 4)
    with h5py.File(tmp_path / "data" / "i_x.h5", "w") as f:
        f.create_dataset("x", shape=(4, 8, 8, 3), dtype=np.uint8, external=[(str(raw), 0, 768)])
    assert load_dataset(tmp_path / "data" / "i_x.h5").to_numpy()[1].ravel()[5] == 5


# -- sweep configs ----------------------------------------------------------------------------------
def test_a_sweep_config_reads_no_file_outside_its_folder(tmp_path):
    from medcne.sweep import load_config

    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0\n")
    folder = tmp_path / "cfg"
    folder.mkdir()
    toml = folder / "s.toml"
    toml.write_text(f'[datasets.d]\npath = "{secret}"\n[methods.m]\nmethod = "tsne-pixels"\n')
    with pytest.raises(MedcneError, match="`allow_outside`") as caught:
        load_config(toml)
    assert "root:" not in str(caught.value)
    assert load_config(toml, allow_outside=True).datasets["d"].paths == (str(secret),)
    toml.write_text(f'[datasets.d]\npath = "x.npz"\nlabels_map = "{secret}"\n[methods.m]\nmethod = "tsne-pixels"\n')
    with pytest.raises(MedcneError, match="labels_map"):
        load_config(toml)


def test_a_sweep_config_that_is_not_utf8_is_named(tmp_path):
    from medcne.sweep import load_config

    toml = tmp_path / "latin.toml"
    toml.write_bytes('[sweep]\ndescription = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(MedcneError, match="latin.toml: not UTF-8"):
        load_config(toml)


# -- formula injection ------------------------------------------------------------------------------
HOSTILE = ["=cmd|' /C calc'!A0", '=HYPERLINK("http://x")', "+SUM(1,2)", "@IMPORT(x)", "-2+3", "\tx", "'=x"]
# Numbers to Python's float() that a spreadsheet takes for formulas after their sign.
NOT_NUMBERS = ["-inf", "-Infinity", "+1_000", "-nan", "+infinity", "- 1", "-1e", "-0x10"]
NUMBERS = ["-1.5", "1e5", "+2", "-.5", "-1.", "+1E-3"]


@pytest.mark.parametrize("text", [*HOSTILE, *NOT_NUMBERS, *NUMBERS, "plain", "'quoted", ""])
def test_csv_cells_are_escaped_and_read_back_exactly(text):
    from medcne.io import csv_cell, csv_value

    cell = csv_cell(text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or text in NUMBERS
    assert csv_value(cell) == text
    assert (cell == text) == (text in (*NUMBERS, "plain", "'quoted", ""))  # numbers and plain text unchanged


def test_the_run_files_and_propagate_output_are_safe_in_a_spreadsheet(tmp_path, capsys):
    images = load_dataset(SAMPLE_PATH, subset=24, seed=0, size=16).to_numpy()
    path = tmp_path / "hostile.npz"
    names = np.array(HOSTILE[:3])
    np.savez(path, images=images, labels=np.arange(24) % 3, class_names=names)
    run = make_run(tmp_path / "run", path)
    text = (run / "embedding.csv").read_text()
    assert "\n=" not in text and ",=" not in text and ",+" not in text and "'=cmd" in text
    ids = np.load(run / "embedding.npz")["ids"]
    ann = tmp_path / "ann.csv"
    ann.write_text(_csv_text(["id", "label"], [[ids[0], "@evil"], [ids[1], "=good"], [ids[2], "@evil"]]))
    out = tmp_path / "p.csv"
    assert main(["propagate", str(run), "--labels", str(ann), "--out", str(out), "--space", "map"]) == 0
    body = out.read_text()
    assert ",@evil" not in body and ",'@evil" in body
    from medcne.runs.table import read_table

    labels = {row["label"] for row in read_table(out, "--labels")[1]}
    assert labels == {"@evil", "=good"}  # the escape is undone on reading


def _csv_text(header, rows) -> str:
    from medcne.io import csv_text

    return csv_text(header, rows)


def test_qc_csv_is_escaped(tmp_path):
    from medcne.curate.qc import quality_control
    from medcne.runs import read_run
    from medcne.runs.curate import write_qc

    images = load_dataset(SAMPLE_PATH, subset=24, seed=0, size=16).to_numpy()
    path = tmp_path / "hostile.npz"
    np.savez(path, images=images, labels=np.arange(24) % 3, class_names=np.array(HOSTILE[:3]))
    run = read_run(make_run(tmp_path / "run", path))
    result = quality_control(run.embedding.astype(np.float64), run.labels, k=5, n_classes=3)
    text = write_qc(run, result).read_text()
    assert ",=" not in text and ",+" not in text and "'=cmd" in text


# -- cosmetic ---------------------------------------------------------------------------------------
def test_view_on_a_full_disk_names_the_page(data, tmp_path, capsys, monkeypatch):
    import medcne.viewer.build as build

    run = make_run(tmp_path / "run", data)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(build, "write_sprites", full)
    line = one_line(["view", str(run)], capsys)
    assert str(run / "viewer") in line
    assert [p.name for p in run.iterdir() if p.name.startswith(".viewer")] == []


def test_resume_after_an_interrupted_replacement_says_what_happened(data, tmp_path, capsys):
    run = make_run(tmp_path / "run", data)
    (run / "checkpoint.pt").write_bytes(b"old run's")
    staged = staging_path(run)
    staged.mkdir()
    (staged / ".medcne-run").write_text('{"format": "medcne-run-1", "files": []}')
    (staged / "params.json").write_text('{"method": "tsimcne", "data": {"path": "x"}, "estimator": {}, '
                                        '"finished": false}')
    before = snapshot(run)
    one_line(["fit", "--resume", str(run)], capsys, "before its first checkpoint", "previous run")
    assert snapshot(run) == before


def test_the_viewers_export_escapes_as_the_python_writer_does():
    import shutil
    import subprocess
    from pathlib import Path

    from medcne.io import csv_cell, csv_value

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    js = Path(__file__).parents[1] / "src" / "medcne" / "viewer" / "js" / "csv.js"
    texts = [*HOSTILE, *NOT_NUMBERS, *NUMBERS, "plain", "'quoted", ""]
    code = (f"import {{csvCell}} from {json.dumps(js.as_uri())};"
            f"console.log(JSON.stringify({json.dumps(texts)}.map(csvCell)));")
    done = subprocess.run([node, "--input-type=module", "-e", code], capture_output=True, text=True, timeout=60)
    cells = json.loads(done.stdout)
    assert [csv_value(c) for c in cells] == texts
    assert cells == [csv_cell(t) for t in texts]


def test_a_file_that_is_no_csv_table_is_not_repeated_in_the_error(tmp_path):
    secret = tmp_path / "passwd.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    with pytest.raises(MedcneError, match="no header of column names") as caught:
        load_dataset(secret)
    assert "root:" not in str(caught.value)
    table = tmp_path / "table.csv"
    table.write_text("file,cls\na.png,1\n")
    with pytest.raises(MedcneError, match="columns: file, cls"):
        load_dataset(table)


def test_a_virtual_dataset_with_a_relative_source_beside_it_is_read_from_any_folder(tmp_path, monkeypatch):
    # HDF5 finds a relative source beside the file before it looks in the working directory.
    (tmp_path / "data").mkdir()
    with h5py.File(tmp_path / "data" / "src.h5", "w") as f:
        f["x"] = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    layout = h5py.VirtualLayout(shape=(4, 8, 8, 3), dtype=np.uint8)
    layout[:] = h5py.VirtualSource("src.h5", "x", shape=(4, 8, 8, 3))
    with h5py.File(tmp_path / "data" / "v_x.h5", "w") as f:
        f.create_virtual_dataset("x", layout)
    monkeypatch.chdir(tmp_path)  # not the data's folder
    assert load_dataset(tmp_path / "data" / "v_x.h5").to_numpy()[1].ravel()[5] == 197
    (tmp_path / "data" / "src.h5").rename(tmp_path / "src.h5")  # now only in the working directory: outside
    with pytest.raises(DataError, match="outside the dataset's folder"):
        load_dataset(tmp_path / "data" / "v_x.h5")
