"""Commands that read a run and write into it, racing a replacement of the run (a user probe).

`evaluate` during `fit --overwrite` wrote the old map's metrics.json into the new run, and `qc` during
`baseline --force` wrote 4,000 rows of qc.csv into a 300-image run. Now the command line holds the
run's shared lock while it reads and writes (so the replacement stops at once, naming it), and every
writer into a run (metrics.json, qc.csv, the viewer) refuses a run replaced since it was read. A
reader of a run that another command is writing says so, not that the run stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.embedfile import write_embedding
from medcne.errors import MedcneError
from medcne.runs import read_run
from medcne.runs.folder import EMBEDDING, METRICS

SRC = Path(__file__).resolve().parents[1] / "src"


def replace_map(folder: Path) -> None:
    """What a replacement of the run does to its map: a new embedding.npz moved in."""
    emb = np.load(folder / EMBEDDING)
    new = folder.parent / "new"
    write_embedding(new, emb["embedding"][::-1].copy(), emb["ids"][::-1].copy(), emb["labels"][::-1].copy(),
                    list(emb["class_names"]))
    os.replace(new / EMBEDDING, folder / EMBEDDING)


def try_replace(folder: Path) -> subprocess.CompletedProcess:
    """Take the run's lock alone in another process, as `fit --overwrite` does first."""
    code = f"from medcne.runs.outputs import lock\nwith lock({str(folder)!r}):\n    print('replaced')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


@pytest.fixture()
def run(tmp_path):
    return make_run(tmp_path / "run", n=60)


def test_a_run_replaced_after_it_was_read_is_never_written_into(run, tmp_path):
    from medcne.runs import evaluate_and_write
    from medcne.runs.curate import propagate_run, write_run_output
    from medcne.viewer import build_viewer

    r = read_run(run)
    before = (run / METRICS).read_bytes() if (run / METRICS).exists() else None
    replace_map(run)
    with pytest.raises(MedcneError, match="the run was replaced while this command read it"):
        evaluate_and_write(r, preservation=False)
    assert ((run / METRICS).read_bytes() if (run / METRICS).exists() else None) == before
    with pytest.raises(MedcneError, match="the run was replaced"):
        write_run_output(r, "qc.csv", "id\n")
    assert not (run / "qc.csv").exists()
    with pytest.raises(MedcneError, match="the run was replaced"):
        build_viewer(r, bundle=Path(__file__), images=np.zeros((60, 8, 8, 3), np.uint8))
    assert not (run / "viewer").exists()
    labels = tmp_path / "labels.csv"
    labels.write_text(f"id,label\n{r.ids[0]},a\n{r.ids[1]},b\n")
    with pytest.raises(MedcneError, match="the run was replaced"):
        propagate_run(r, labels, space="map")
    assert not (run / "propagated.csv").exists()
    # The run read again is the new one, and is written into.
    assert evaluate_and_write(read_run(run), preservation=False)["knn_accuracy"] >= 0


@pytest.mark.parametrize("command", ["evaluate", "qc"])
def test_a_replacement_started_while_the_command_works_stops_at_once(run, command, monkeypatch, capsys):
    import medcne.curate
    import medcne.runs.evaluate as evaluate_module

    seen = []

    def replaced_meanwhile(real):
        def work(*args, **kwargs):
            seen.append(try_replace(run))  # a `fit --overwrite` of the run, started now
            return real(*args, **kwargs)
        return work

    if command == "evaluate":
        monkeypatch.setattr(evaluate_module, "evaluate_run", replaced_meanwhile(evaluate_module.evaluate_run))
        argv = ["evaluate", str(run), "--no-preservation"]
    else:
        monkeypatch.setattr(medcne.curate, "quality_control", replaced_meanwhile(medcne.curate.quality_control))
        argv = ["qc", str(run), "--space", "map"]
    assert main(argv) == 0
    [other] = seen
    assert other.returncode != 0 and "replaced" not in other.stdout
    assert f"another medcne command (pid {os.getpid()}) is writing it" in other.stderr


def test_a_run_beside_which_no_lock_can_be_made_is_still_scored(run, monkeypatch, capsys):
    """A run you may write in a folder you may not: no replacement can be staged there, so the command
    goes on without the lock (the check against a replaced run still guards the write)."""
    import errno

    import medcne.runs.outputs as outputs

    def denied(path, shared=False):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(outputs, "_acquire", denied)
    assert main(["evaluate", str(run), "--no-preservation"]) == 0
    assert "kNN accuracy" in capsys.readouterr().out


def test_a_reader_of_a_run_being_written_names_the_writer(tmp_path, capsys):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "params.json").write_text('{"method": "tsimcne", "data": {}}')  # a fit just begun
    code = (f"import time\nfrom medcne.runs.outputs import lock\nwith lock({str(folder)!r}):\n"
            "    print('held', flush=True)\n    time.sleep(60)")
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert writer.stdout.readline().strip() == "held"
        with pytest.raises(MedcneError, match=rf"another medcne command \(pid {writer.pid}\) is writing this run"):
            read_run(folder)
        assert main(["view", str(folder)]) == 2
        assert f"(pid {writer.pid}) is writing" in capsys.readouterr().err
        # A finished run being replaced: the reader waits; it is not told to choose another output.
        finished = make_run(tmp_path / "finished", n=30)
        held = subprocess.Popen([sys.executable, "-c", code.replace(str(folder), str(finished))],
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
        try:
            assert held.stdout.readline().strip() == "held"
            assert main(["evaluate", str(finished), "--no-preservation"]) == 2
            err = capsys.readouterr().err
            assert f"(pid {held.pid}) is writing it; wait for it to end, then run this command again" in err, err
        finally:
            held.kill()
            held.wait()
    finally:
        writer.kill()
        writer.wait()
    deadline = time.time() + 10
    while time.time() < deadline:  # the lock is the kernel's: gone with the process
        try:
            read_run(folder)
        except MedcneError as exc:
            if "is writing this run" not in str(exc):
                assert "it stopped before its last file was written" in str(exc)
                break
        time.sleep(0.1)
    else:
        pytest.fail("the lock outlived its process")
