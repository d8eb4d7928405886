"""`fit --resume` continues a run as it was made: on its own data (checked by a fingerprint), with its
own settings (other options refused), and a changed learning rate is recorded."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medcne.cli import main
from medcne.datasets import load_dataset
from medcne.runs import read_run
from safetyhelpers import TINY, error_lines, make_data, snapshot, stop_at_first_epoch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def stopped(tmp_path, monkeypatch):
    """A run interrupted after its first epoch's checkpoint, and its data."""
    data = make_data(tmp_path / "data" / "data.npz")
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_at_first_epoch(m)
        assert main(["fit", str(data), "--out", str(out), *TINY]) != 0
    assert (out / "checkpoint.pt").exists()
    return out, data


@pytest.mark.parametrize("option", [["--width", "8"], ["--epochs", "2,1,1"], ["--overwrite"], ["--seed", "3"],
                                    ["--subset", "20"], ["--budget", "1m"]])
def test_options_that_would_change_the_run_are_refused(stopped, capsys, option):
    out, _ = stopped
    before = snapshot(out)
    assert main(["fit", "--resume", str(out), *option]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and option[0] in lines[0] and "only --lr" in lines[0]
    assert snapshot(out) == before


def test_other_data_of_the_same_size_are_refused(stopped, capsys):
    out, data = stopped
    with np.load(data) as z:
        arrays = dict(z)
    arrays["images"] = np.ascontiguousarray(arrays["images"][::-1])  # the same images, other order
    np.savez(data, **arrays)
    before = snapshot(out)
    assert main(["fit", "--resume", str(out)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(data) in lines[0] and "does not hold the images the run began with" in lines[0]
    assert snapshot(out) == before


def test_moved_data_are_given_on_the_command_line_and_recorded(stopped, tmp_path):
    out, data = stopped
    moved = tmp_path / "elsewhere" / "data.npz"
    moved.parent.mkdir()
    shutil.move(data, moved)
    assert main(["fit", "--resume", str(out), str(moved)]) == 0
    run = read_run(out)
    assert run.params["data"]["path"] == str(moved.resolve())
    assert run.params["data_fingerprint"] == load_dataset(moved, size=16).fingerprint()


def test_a_resume_on_moved_data_that_is_interrupted_continues_without_naming_them_again(stopped, tmp_path,
                                                                                         monkeypatch, capsys):
    # The hint says `medcne fit --resume RUN`: it failed, since params.json still named the old place.
    from medcne.estimator import TSimCNE

    out, data = stopped
    moved = tmp_path / "elsewhere" / "data.npz"
    moved.parent.mkdir()
    shutil.move(data, moved)
    with monkeypatch.context() as m:
        m.setattr(TSimCNE, "fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert main(["fit", "--resume", str(out), str(moved)]) != 0
    assert f"continue with `medcne fit --resume {out}`" in capsys.readouterr().out
    assert main(["fit", "--resume", str(out)]) == 0
    assert read_run(out).params["data"]["path"] == str(moved.resolve())


def test_a_changed_learning_rate_is_recorded_beside_the_one_it_replaced(stopped):
    out, _ = stopped
    assert main(["fit", "--resume", str(out), "--lr", "0.01"]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["lr_changes"] == [{"lr": 0.01, "was": pytest.approx(0.12)}]


def test_the_fingerprint_follows_pixels_ids_and_labels():
    from medcne.datasets import ImageSet

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 200)
    base = ImageSet(images, labels).fingerprint()
    assert ImageSet(images.copy(), labels.copy()).fingerprint() == base
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1  # the first image is always among those read
    assert ImageSet(changed, labels).fingerprint() != base
    assert ImageSet(images, (labels + 1) % 3).fingerprint() != base
    assert ImageSet(images, labels, ids=[f"x{i}" for i in range(200)]).fingerprint() != base
    assert ImageSet(images[:199], labels[:199]).fingerprint() != base


def test_other_pixels_where_a_sample_would_not_look_are_refused(tmp_path, monkeypatch, capsys):
    # 1,936 of 2,000 images changed (all but the 64 the old fingerprint sampled) trained on to the end.
    data = make_data(tmp_path / "data" / "data.npz", n=120)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_at_first_epoch(m)
        assert main(["fit", str(data), "--out", str(out), *TINY]) != 0
    with np.load(data) as z:
        arrays = dict(z)
    skipped = np.setdiff1d(np.arange(120), np.unique(np.linspace(0, 119, 64).astype(np.int64)))[0]
    arrays["images"] = arrays["images"].copy()
    arrays["images"][skipped] = 255 - arrays["images"][skipped]
    np.savez(data, **arrays)
    assert main(["fit", "--resume", str(out)]) == 2
    assert "does not hold the images the run began with" in capsys.readouterr().err


# -- what to run next: the Python call from Python, the command on the command line ------------------------
PY_TINY = dict(epochs=(1, 1, 1), warmup=(0, 0, 0), width=4, batch_size=16, device="cpu", checkpoint_minutes=0,
               random_state=0)


@pytest.fixture
def as_python(monkeypatch):
    """Messages as a Python user gets them (`main`, called by other tests of this process, speaks as the CLI)."""
    import medcne.params as params

    monkeypatch.setitem(params._CLI, "on", False)


def test_python_is_told_the_python_calls_that_continue_a_run(tmp_path, monkeypatch, capsys, as_python):
    from medcne.errors import MedcneError
    from medcne.runs import fit_run, resume_run

    data = make_data(tmp_path / "data" / "data.npz")
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_at_first_epoch(m)
        with pytest.raises(KeyboardInterrupt):
            fit_run(data, out, PY_TINY)
    said = capsys.readouterr().out
    assert f"interrupted; continue with `resume_run({str(out)!r})`" in said and "medcne fit" not in said
    moved = tmp_path / "elsewhere.npz"
    shutil.move(data, moved)
    with pytest.raises(MedcneError, match=r"`resume_run\(.*, data_path=DATA\)` where it moved") as moved_away:
        resume_run(out, verbose=False)
    with pytest.raises(MedcneError, match=r"start a new run with `fit_run\(DATA, NEW, params\)`") as other_data:
        resume_run(out, verbose=False, data_path=make_data(tmp_path / "other.npz", n=40))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedcneError, match=r"start it again with `fit_run\(DATA, .*empty', params\)` \(with "
                                          r"`overwrite=True`") as nothing:
        resume_run(tmp_path / "empty")
    assert not any("medcne fit --resume" in str(e.value) for e in (moved_away, other_data, nothing))
    assert resume_run(out, verbose=False, data_path=moved).embedding.shape == (48, 2)


@pytest.mark.parametrize("cli", [False, True], ids=["python", "cli"])
def test_a_stopped_run_names_the_call_or_the_command_that_continues_it(tmp_path, monkeypatch, capsys, cli):
    import medcne.params as params
    from medcne.errors import DivergedError, MedcneError
    from medcne.runs.tsimcne import _stopped

    monkeypatch.setitem(params._CLI, "on", cli)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"a checkpoint")
    resume = f"`medcne fit --resume {out}`" if cli else f"`resume_run({str(out)!r})`"
    _stopped(out, out, KeyboardInterrupt(), True)
    assert capsys.readouterr().out == f"interrupted; continue with {resume}\n"
    with pytest.raises(DivergedError) as diverged:
        _stopped(out, out, DivergedError("the loss is not finite"), True)
    lower = f"`medcne fit --resume {out} --lr LOWER`" if cli else f"`resume_run({str(out)!r}, lr=LOWER)`"
    assert f"with a lower learning rate, {lower}, or start again" in str(diverged.value)
    with pytest.raises(MedcneError) as full:
        _stopped(out, out, OSError(28, "No space left on device", str(out / "history.csv")), True)
    assert str(full.value).endswith(f"continue with {resume}")
    (out / "checkpoint.pt").unlink()
    _stopped(out, out, KeyboardInterrupt(), True)
    again = "run the same command again" if cli else "call `fit_run` again"
    assert capsys.readouterr().out.endswith(f"nothing to resume; {again} to start over\n")


@pytest.mark.parametrize("when", ["after its checkpoint", "before its checkpoint"])
def test_a_resume_with_a_new_rate_that_is_interrupted_continues_with_that_rate(stopped, monkeypatch, capsys, when):
    # The hint says `medcne fit --resume RUN`: it was refused (the checkpoint's rate against params.json's).
    from medcne.estimator import TSimCNE

    out, _ = stopped
    with monkeypatch.context() as m:
        if when == "after its checkpoint":
            stop_at_first_epoch(m)
        else:
            m.setattr(TSimCNE, "fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert main(["fit", "--resume", str(out), "--lr", "0.01"]) != 0
    assert f"continue with `medcne fit --resume {out}`" in capsys.readouterr().out
    assert main(["fit", "--resume", str(out)]) == 0
    params = read_run(out).params
    assert params["lr_changes"] == [{"lr": 0.01, "was": pytest.approx(0.12)}]
    assert params["estimator"]["lr"] == pytest.approx(0.01)


def test_a_second_change_of_rate_names_the_first_as_the_one_it_replaced(stopped, monkeypatch):
    out, _ = stopped
    with monkeypatch.context() as m:
        stop_at_first_epoch(m)
        assert main(["fit", "--resume", str(out), "--lr", "0.05"]) != 0
    assert main(["fit", "--resume", str(out), "--lr", "0.01"]) == 0
    assert read_run(out).params["lr_changes"] == [{"lr": 0.05, "was": pytest.approx(0.12)}, {"lr": 0.01, "was": 0.05}]


def test_fit_run_over_an_unfinished_run_names_resume_run_in_python(stopped):
    from medcne.errors import MedcneError
    from medcne.runs import fit_run

    out, data = stopped
    with pytest.raises(MedcneError, match=r"holds an unfinished run; .*`resume_run\(") as caught:
        fit_run(data, out, {"epochs": (1, 1, 1)})
    assert "medcne fit" not in str(caught.value)
