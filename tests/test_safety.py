"""A user's results are never lost: replacements written beside the run, finished runs marked, clean stops.

Covers ``fit --overwrite`` and ``baseline --force`` (the old run stays whole
until the new one is finished, and files medcne did not write are never
touched), resuming an interrupted replacement (exactly), a crash at every
moment of the final swap, the ``finished`` flag of params.json and runs made
before it, stops before and after the first checkpoint (Ctrl-C, SIGTERM,
errors, divergence) and the stale temporary files of a killed writer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import medcne.runs.staging as staging
import medcne.runs.tsimcne as tsimcne
from medcne.cli import main
from medcne.errors import DivergedError, MedcneError
from medcne.runs import read_run
from medcne.runs.folder import FINISHED, is_finished, read_json, staging_path
from medcne.runs.outputs import remember
from safetyhelpers import TINY, error_lines, make_data, make_run, snapshot, stop_at_first_epoch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data") / "data.npz")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A run trained without interruption with TINY: what every resumed run must equal."""
    out = tmp_path_factory.mktemp("trained") / "run"
    # Module fixtures are set up before the one-thread fixture of each test: set it here too, since
    # results depend on the thread count (bf16 convolutions of oneDNN split their sums by thread).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["fit", str(data), "--out", str(out), *TINY]) == 0
    finally:
        torch.set_num_threads(n)
    return out


@pytest.fixture
def old(data, tmp_path):
    """A finished run (not trained: epochs 0) with a file of the user's beside its run files."""
    out = make_run(tmp_path / "run", data)
    (out / "notes.txt").write_text("mine\n")
    return out


def stop_before_first_checkpoint(monkeypatch, exc=KeyboardInterrupt):
    import medcne.train.monitor as monitor

    def stop(path, checkpoint):
        raise exc()

    monkeypatch.setattr(monitor, "save_checkpoint", stop)


# -- fit --overwrite ---------------------------------------------------------------------------
def test_overwrite_replaces_only_the_run_files(old, data, trained, capsys):
    assert main(["fit", str(data), "--out", str(old), "--overwrite", *TINY]) == 0
    assert (old / "notes.txt").read_text() == "mine\n" and not staging_path(old).exists()
    assert read_run(old).params["resolved"]["stages"][0]["epochs"] == 1
    np.testing.assert_allclose(read_run(old).embedding, read_run(trained).embedding, atol=1e-5)


def test_interrupted_overwrite_keeps_the_old_run_and_resumes_exactly(old, data, trained, monkeypatch, capsys):
    before = snapshot(old)
    stop_at_first_epoch(monkeypatch)
    assert main(["fit", str(data), "--out", str(old), "--overwrite", *TINY]) == 130
    assert f"continue with `medcne fit --resume {old}`" in capsys.readouterr().out
    assert snapshot(old) == before and is_finished(old)  # the old run, whole and still readable
    assert (staging_path(old) / "checkpoint.pt").exists()
    monkeypatch.undo()
    assert main(["fit", "--resume", str(old)]) == 0
    assert not staging_path(old).exists() and (old / "notes.txt").read_text() == "mine\n"
    np.testing.assert_allclose(read_run(old).embedding, read_run(trained).embedding, atol=1e-5)


def test_the_staging_folder_itself_can_be_resumed(old, data, monkeypatch, capsys):
    stop_at_first_epoch(monkeypatch)
    assert main(["fit", str(data), "--out", str(old), "--overwrite", *TINY]) == 130
    monkeypatch.undo()
    assert main(["fit", "--resume", str(staging_path(old))]) == 0
    assert read_run(old).params["resolved"]["stages"][0]["epochs"] == 1 and not staging_path(old).exists()


def test_overwrite_stopped_before_a_checkpoint_leaves_the_old_run_and_no_staging(old, data, monkeypatch, capsys):
    before = snapshot(old)
    stop_before_first_checkpoint(monkeypatch)
    assert main(["fit", str(data), "--out", str(old), "--overwrite", *TINY]) == 130
    out = capsys.readouterr().out
    assert "nothing to resume" in out and "--resume" not in out and "still holds the previous run" in out
    assert snapshot(old) == before and not staging_path(old).exists()


def test_a_new_overwrite_discards_an_interrupted_one(old, data, monkeypatch, capsys):
    stop_at_first_epoch(monkeypatch)
    assert main(["fit", str(data), "--out", str(old), "--overwrite", *TINY]) == 130
    monkeypatch.undo()
    before = snapshot(old)
    assert main(["fit", str(data), "--out", str(old), *TINY]) == 2  # without --overwrite: refused
    assert "--resume" in capsys.readouterr().err and snapshot(old) == before
    assert main(["fit", str(data), "--out", str(old), "--overwrite", *TINY]) == 0
    assert not staging_path(old).exists() and is_finished(old)


@pytest.mark.parametrize("crash_at", range(7))
def test_a_crash_at_any_moment_of_the_swap_is_completed_later(old, data, monkeypatch, crash_at):
    # A finished new run (another map, a marker in params.json) in the staging folder; the swap
    # is stopped before its rename number `crash_at` (7 renames: 6 files, then params.json).
    from medcne.io import write_json
    from medcne.runs import write_embedding

    new = make_run(staging_path(old), data)
    z = dict(np.load(new / "embedding.npz"))
    write_embedding(new, z["embedding"] + 1, z["ids"], z["labels"], z["class_names"])
    write_json(new / "params.json", {**read_json(new / "params.json"), "marker": "new"})
    expected = {n: (new / n).read_bytes() for n in os.listdir(new)}
    real_replace, done = os.replace, []

    def replace(src, dst):
        if len(done) == crash_at:
            raise KeyboardInterrupt
        done.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        staging.commit(new, old)
    monkeypatch.undo()
    with pytest.raises(MedcneError, match=f"medcne fit --resume {old}"):
        read_run(old)  # half swapped: refused, never read as a mix of two runs
    assert tsimcne.resume_run(old, verbose=False).params["marker"] == "new"
    assert {n: (old / n).read_bytes() for n in expected} == expected
    assert (old / "notes.txt").exists() and not staging_path(old).exists()


# -- fresh runs ---------------------------------------------------------------------------------
def test_fit_stopped_before_a_checkpoint_leaves_nothing(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"
    stop_before_first_checkpoint(monkeypatch)
    assert main(["fit", str(data), "--out", str(out), *TINY]) == 130
    assert "nothing to resume" in capsys.readouterr().out and not out.exists()


def test_fit_stopped_after_a_checkpoint_is_unfinished_and_resumable(data, trained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"
    stop_at_first_epoch(monkeypatch)
    assert main(["fit", str(data), "--out", str(out), *TINY]) == 130
    assert f"--resume {out}" in capsys.readouterr().out
    assert not is_finished(out)
    with pytest.raises(MedcneError, match=f"medcne fit --resume {out}"):
        read_run(out)
    monkeypatch.undo()
    assert main(["fit", "--resume", str(out)]) == 0
    np.testing.assert_allclose(read_run(out).embedding, read_run(trained).embedding, atol=1e-5)


def test_an_error_after_a_checkpoint_keeps_it_and_says_how_to_resume(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"
    stop_at_first_epoch(monkeypatch, OSError(28, "No space left on device", str(out / "history.csv")))
    assert main(["fit", str(data), "--out", str(out), *TINY]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"medcne fit --resume {out}" in lines[0] and "history.csv" in lines[0]
    assert (out / "checkpoint.pt").exists()


def test_an_error_before_a_checkpoint_leaves_nothing(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"
    stop_before_first_checkpoint(monkeypatch, lambda: OSError(28, "No space left on device", str(out)))
    assert main(["fit", str(data), "--out", str(out), *TINY]) == 2
    assert len(error_lines(capsys.readouterr().err)) == 1 and not out.exists()


def test_a_diverged_fit_keeps_its_last_good_checkpoint(old, data, tmp_path, monkeypatch, capsys):
    # Divergence after the first checkpoint: the run keeps it (never overwritten by NaN weights) and
    # can continue from it with a lower learning rate; an --overwrite leaves the old run whole.
    before = snapshot(old)
    stop_at_first_epoch(monkeypatch, DivergedError("loss is NaN at epoch 1 with lr 1e6; lower --lr"))
    assert main(["fit", str(data), "--out", str(old), "--overwrite", *TINY]) == 2
    new = tmp_path / "new"
    assert main(["fit", str(data), "--out", str(new), *TINY]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 2 and all("lower --lr" in line and "--resume" in line and "--lr LOWER" in line
                                   for line in lines)
    assert snapshot(old) == before and (staging_path(old) / "checkpoint.pt").is_file()
    assert (new / "checkpoint.pt").is_file() and not is_finished(new)
    monkeypatch.undo()
    assert main(["fit", "--resume", str(new), "--lr", "0.0001"]) == 0
    run = read_run(new)
    assert run.params["estimator"]["lr"] == 0.0001 and np.isfinite(run.embedding).all()


def test_a_fit_that_diverges_at_once_is_one_line_and_leaves_nothing(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", str(data), "--out", str(out), *TINY, "--lr", "1e6"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "diverged in stage 'pretrain', epoch 1" in lines[0] and "--lr" in lines[0]
    assert not out.exists()


def test_resume_refuses_another_learning_rate_without_asking(data, tmp_path, monkeypatch):
    from medcne.train.checkpoint import check_resume, load_checkpoint

    stop_at_first_epoch(monkeypatch)
    out = tmp_path / "run"
    assert main(["fit", str(data), "--out", str(out), *TINY]) != 0
    ck = load_checkpoint(out / "checkpoint.pt")
    changed = json.loads(json.dumps(ck["record"]))
    changed["resolved"]["stages"][0]["lr"] *= 10
    with pytest.raises(MedcneError, match="cannot resume: the schedule"):
        check_resume(ck, changed, ck["n_images"])
    check_resume(ck, changed, ck["n_images"], ignore_lr=True)


def test_fit_notes_a_batch_size_larger_than_the_data(data, tmp_path, capsys):
    args = ["fit", str(data), "--out", str(tmp_path / "r"), *TINY, "--batch-size", "1000000000000",
            "--epochs", "1,0,1"]
    assert main(args) == 0
    assert "note: batch size 1000000000000 is larger than the 48 images; using 48" in capsys.readouterr().out


# -- finished runs ------------------------------------------------------------------------------
def test_a_run_is_finished_only_once_its_last_file_is_written(data, tmp_path, monkeypatch):
    import medcne.plot as plot

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", "map.png")

    monkeypatch.setattr(plot, "save_map", full)  # the last file of a run
    with pytest.raises(OSError):
        make_run(tmp_path / "run", data)
    assert (tmp_path / "run" / "embedding.npz").exists() and not is_finished(tmp_path / "run")
    with pytest.raises(MedcneError, match="not a finished run"):
        read_run(tmp_path / "run")
    monkeypatch.undo()
    assert read_json(make_run(tmp_path / "done", data) / "params.json")[FINISHED] is True


def test_runs_made_before_the_flag_are_read_when_their_embedding_files_are_there(old):
    params = read_json(old / "params.json")
    del params[FINISHED]
    (old / "params.json").write_text(json.dumps(params))
    assert is_finished(old) and len(read_run(old).ids) == 48
    (old / "embedding.csv").unlink()  # stopped between the two embedding files
    with pytest.raises(MedcneError, match="not a finished run"):
        read_run(old)


def test_a_params_json_without_the_method_is_no_record_of_a_finished_run(old):
    # Every params.json medcne wrote names the method: {} beside the embedding files is no old run.
    (old / "params.json").write_text("{}")
    assert (old / "embedding.csv").is_file() and not is_finished(old)


@pytest.mark.slow
def test_baseline_force_keeps_the_old_run_when_it_fails(old, data, tmp_path, monkeypatch):
    import medcne.baselines as baselines

    pytest.importorskip("openTSNE")
    before = snapshot(old)
    with pytest.raises(MedcneError, match="already holds a finished run"):
        staging.check(old, False, option="force", refuse_any=False)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device", "x")

    monkeypatch.setattr(baselines, "embed_baseline", fail)
    from medcne.runs import make_baseline

    with pytest.raises(OSError):
        make_baseline(data, "tsne-pixels", old, force=True)
    with pytest.raises(OSError):
        make_baseline(data, "tsne-pixels", tmp_path / "fresh")
    assert snapshot(old) == before and not staging_path(old).exists() and not (tmp_path / "fresh").exists()
    monkeypatch.undo()
    run = make_baseline(data, "tsne-pixels", old, force=True)
    # The t-SimCNE files the baseline does not have are gone; the user's file stays.
    assert run.method == "tsne-pixels" and not (old / "model.pt").exists() and (old / "notes.txt").exists()


# -- stale temporary files ----------------------------------------------------------------------
def test_stale_temporary_files_are_removed_by_the_next_resume(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"
    stop_at_first_epoch(monkeypatch)
    assert main(["fit", str(data), "--out", str(out), *TINY]) == 130
    monkeypatch.undo()
    stale = [".checkpoint.pt.a1b2c3d4.tmp.pt", ".params.json.zz_9zz9z.tmp.json", ".map.png.abcdefgh.tmp.png"]
    others = [".checkpoint.pt.a1b2c3d4e.tmp.pt", ".notes.txt.abcdefgh.tmp.txt", "checkpoint.pt.abcdefgh.tmp.pt"]
    for name in stale + others:
        (out / name).write_bytes(b"x")
    assert main(["fit", "--resume", str(out)]) == 0
    names = set(os.listdir(out))
    assert not names & set(stale) and set(others) <= names


# -- signals and pipes (subprocesses) -----------------------------------------------------------
def run_cli(args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.Popen([sys.executable, "-m", "medcne", *args], env=env, text=True, **kwargs)


def signal_fit(argv, when: Path, signum) -> tuple[int, str, str]:
    """Run `medcne fit ARGV` in a process, send it ``signum`` once ``when`` exists; (status, stdout, stderr)."""
    p = run_cli(["fit", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not when.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
    p.send_signal(signum)
    stdout, stderr = p.communicate(timeout=120)
    return p.returncode, stdout, stderr


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c(data, tmp_path):
    out = tmp_path / "new"
    status, stdout, stderr = signal_fit([str(data), "--out", str(out), *TINY, "--epochs", "200,1,1"],
                                        out / "checkpoint.pt", signal.SIGTERM)
    assert status == 143, stderr
    assert f"continue with `medcne fit --resume {out}`" in stdout
    assert error_lines(stderr) == ["medcne fit: terminated"] and (out / "checkpoint.pt").exists()


@pytest.mark.slow
def test_sighup_stops_like_ctrl_c_and_leaves_the_old_run_and_no_lock(old, data):
    """A closed terminal (SIGHUP) ended a replacement silently, leaving its staging folder and lock file."""
    before, staged = snapshot(old), staging_path(old)
    status, _, stderr = signal_fit([str(data), "--out", str(old), "--overwrite", *TINY, "--epochs", "200,1,1",
                                    "--checkpoint-minutes", "60"], staged / "params.json", signal.SIGHUP)
    assert status == 129, stderr
    assert error_lines(stderr) == ["medcne fit: hung up"]
    assert snapshot(old) == before  # the old run and the user's file, whole
    assert not staged.exists()  # stopped before its first checkpoint: nothing to resume, nothing left
    assert [q.name for q in old.parent.iterdir() if q.name.startswith(".")] == []  # no lock file


@pytest.mark.parametrize("ignored", [False, True])
def test_sighup_stops_a_command_unless_the_caller_ignores_it_as_nohup_does(data, ignored):
    code = (
        "import os, signal, sys\n"
        f"{'signal.signal(signal.SIGHUP, signal.SIG_IGN)' if ignored else ''}\n"
        "import medcne.cli as cli, medcne.cli.info as info\n"
        "real = info.run\n"
        "def hung_up(args):\n    os.kill(os.getpid(), signal.SIGHUP)\n    return real(args)\n"
        "info.run = hung_up\n"
        f"sys.exit(cli.main(['info', {str(data)!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == (0 if ignored else 129), done.stderr
    assert ("images:" in done.stdout) == ignored and ("hung up" in done.stderr) != ignored


def test_a_closed_pipe_ends_quietly(data):
    p = run_cli(["info", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # as `| head` does once it has its lines
    stderr = p.stderr.read()
    assert p.wait(timeout=120) == 141 and stderr == ""


def test_a_replaced_run_drops_the_qc_of_the_old_one(old, data):
    # qc.csv describes the old run's images and map: the viewer would show stale flags.
    (old / "qc.csv").write_text("id,label\n")
    (old / "propagated.csv").write_text("id,label\n")
    staging.add_to_run(old, "qc.csv")  # as `medcne qc` and `medcne propagate` record what they write
    staging.add_to_run(old, "propagated.csv")
    remember([old / "qc.csv", old / "propagated.csv"])  # with their checksums (an edited one stays)
    assert main(["fit", str(data), "--out", str(old), "--overwrite", *TINY]) == 0
    assert not (old / "qc.csv").exists() and not (old / "propagated.csv").exists()
    assert (old / "notes.txt").read_text() == "mine\n"
