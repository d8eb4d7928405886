"""A command that reads a run's images again (qc, view, plot, evaluate) checks they are the run's own:
the ids, and a fingerprint of the pixels that params.json keeps. Corrected labels still read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcne.cli import main
from medcne.errors import MedcneError
from medcne.runfiles import IMAGES_FINGERPRINT
from medcne.runs import make_baseline, read_run
from safetyhelpers import error_lines, make_data, make_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rewrite(path, **changes):
    with np.load(path) as z:
        arrays = dict(z)
    arrays.update(changes)
    np.savez(path, **arrays)


@pytest.fixture
def run(tmp_path):
    data = make_data(tmp_path / "data" / "data.npz")
    return make_run(tmp_path / "run", data), data


def test_the_images_of_a_run_are_checked_by_their_pixels_not_only_their_ids(run, capsys):
    out, data = run
    assert IMAGES_FINGERPRINT in json.loads((out / "params.json").read_text())
    with np.load(data) as z:
        images, labels = z["images"], z["labels"]
    rewrite(data, labels=(labels + 1) % 8)  # labels corrected: the run's images are the same
    assert len(read_run(out).load_images()) == len(images)
    rewrite(data, images=np.ascontiguousarray(255 - images))  # same ids (positions), other pixels
    with pytest.raises(MedcneError, match="have the run's ids but other pixels"):
        read_run(out).load_images()
    assert main(["qc", str(out), "--space", "pixels"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "other pixels" in lines[0] and not (out / "qc.csv").exists()


def test_a_run_without_the_record_is_read_by_its_ids_as_before(run):
    out, data = run
    params = json.loads((out / "params.json").read_text())
    del params[IMAGES_FINGERPRINT]  # a run of an older medcne
    (out / "params.json").write_text(json.dumps(params))
    with np.load(data) as z:
        rewrite(data, images=np.ascontiguousarray(255 - z["images"]))
    assert len(read_run(out).load_images()) == 48


def test_a_baseline_records_its_images_too(tmp_path):
    data = make_data(tmp_path / "data.npz", n=24)
    r = make_baseline(data, "tsne-pixels", tmp_path / "b", tsne_params={"n_iter": 10})
    assert r.params[IMAGES_FINGERPRINT] == read_run(r.path).load_images().fingerprint(sampled=None, labels=False)


def test_images_handed_in_from_python_are_checked_the_same_way(run):
    from medcne.datasets import load_dataset
    from medcne.runs import evaluate_and_write

    out, data = run
    with np.load(data) as z:
        other = np.ascontiguousarray(255 - z["images"])
    np.savez(data.parent / "other.npz", images=other)
    m = evaluate_and_write(read_run(out), data=load_dataset(data.parent / "other.npz"))
    assert "neighbour_preservation" not in m
    assert any("the images given have the run's ids but other pixels" in n for n in m["notes"]), m["notes"]
    assert "neighbour_preservation" in evaluate_and_write(read_run(out), data=load_dataset(data))


def test_a_run_read_again_from_other_data_says_so_without_the_readers_advice(run, tmp_path, capsys):
    # The reader's own fix ("choose at most 30 or leave --subset unset") cannot be followed: the subset,
    # size and the rest are the run's. evaluate --data and fit --resume DATA say what to give instead.
    out, data = run
    small = tmp_path / "small.npz"
    with np.load(data) as z:
        np.savez(small, images=z["images"][:30], labels=z["labels"][:30])
    params = json.loads((out / "params.json").read_text())
    params["data"]["subset"] = 48  # as a run made with --subset 48
    (out / "params.json").write_text(json.dumps(params))
    with pytest.raises(MedcneError) as caught:
        read_run(out).load_images(small)
    message = str(caught.value)
    assert "its data cannot be read as the run read them (subset 48) from" in message, message
    assert message.endswith("is larger than the dataset (30 images); give the dataset the run was made from "
                            "(`data_path`)") and "choose at most" not in message


def test_images_changed_where_a_sample_would_not_look_are_refused_too(tmp_path):
    # A fingerprint of 64 sampled images let 136 of 200 other images through (wrong thumbnails and scores).
    data = make_data(tmp_path / "data" / "data.npz", n=200)
    out = make_run(tmp_path / "run", data)
    with np.load(data) as z:
        images = z["images"].copy()
    sampled = np.unique(np.linspace(0, len(images) - 1, 64).astype(np.int64))
    skipped = np.setdiff1d(np.arange(len(images)), sampled)[0]
    images[skipped] = 255 - images[skipped]  # one image a sample of 64 skips
    rewrite(data, images=images)
    with pytest.raises(MedcneError, match="have the run's ids but other pixels"):
        read_run(out).load_images()


def test_ids_that_differ_say_what_else_than_other_data_can_make_them_differ(run):
    out, data = run
    r = read_run(out)
    from medcne.datasets import load_dataset

    other = load_dataset(data, subset=40)
    r.params["data"]["subset"] = 40  # a run drawn by label
    with pytest.raises(MedcneError, match=r"a `subset` is drawn class by class, so corrected labels draw other"):
        r.check_images(other)
    r.params["data"].pop("subset")
    r.ids = np.array([f"x-{i:012x}/IM{i}.dcm" for i in range(len(r.ids))])  # DICOM ids under coded folders
    with pytest.raises(MedcneError, match=r"depend on the key \(MEDCNE_IDENTITY_KEY or .*identity.key\)"):
        r.check_images(other)


@pytest.mark.parametrize("bad", [-1, 0, 1.5, True])
def test_the_number_of_images_preservation_scores_is_checked(run, bad, capsys):
    from medcne.runs import evaluate_and_write

    out, _ = run
    with pytest.raises(MedcneError, match=r"^`n_queries` must be a positive integer, or None for every image"):
        evaluate_and_write(read_run(out), n_queries=bad)
    if bad == -1:  # an internal error on the command line before
        assert main(["evaluate", str(out), "--np-queries", "-1"]) == 2
        assert "--np-queries must be a positive integer" in capsys.readouterr().err


def test_too_few_images_for_preservation_is_said_without_an_option_baseline_lacks(tmp_path):
    from medcne.runs import make_baseline

    data = make_data(tmp_path / "data.npz", n=8)
    r = make_baseline(data, "tsne-pixels", tmp_path / "b", tsne_params={"n_iter": 10, "perplexity": 2})
    assert "neighbourhood preservation skipped: it needs more than k=15 images; got 8" in r.metrics["notes"]
