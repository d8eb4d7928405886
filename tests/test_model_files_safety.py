"""`TSimCNE.save` and the `checkpoint` parameter write only over medcne's own model and checkpoint
files (known by the format they state), never over a user's file, a folder, or a run folder's files."""

from __future__ import annotations

import numpy as np
import pytest

from medcne import TSimCNE
from medcne.errors import MedcneError
from medcne.runfiles import RUN_MARKER
from medcne.train.checkpoint import file_format

pytestmark = pytest.mark.usefixtures("one_torch_thread")
IMAGES = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
TINY = dict(epochs=(0, 0, 0), warmup=(0, 0, 0), batch_size=8, width=2, device="cpu", verbose=False)


@pytest.fixture(scope="module")
def fitted():
    return TSimCNE(**TINY).fit(IMAGES)


def test_save_never_replaces_a_file_medcne_did_not_write(tmp_path, fitted):
    notes = tmp_path / "notes.txt"
    notes.write_text("my thesis notes\n")
    with pytest.raises(MedcneError, match=r"^`path` .*notes.txt exists and is not a medcne model file"):
        fitted.save(notes)
    assert notes.read_text() == "my thesis notes\n"
    with pytest.raises(MedcneError, match=r"^`path` .* is a folder; give a file name"):
        fitted.save(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_MARKER).write_text("{}")
    with pytest.raises(MedcneError, match=r"is in the unfinished run folder .*; save it elsewhere"):
        fitted.save(run / "model.pt")
    assert not (run / "model.pt").exists()
    model = fitted.save(tmp_path / "model.pt")  # its own model file: replaced, as a notebook cell run again does
    assert file_format(model) == "medcne-model/2"
    assert fitted.save(model) == model and TSimCNE.load(model).width == 2


def test_a_checkpoint_is_never_written_over_a_users_file(tmp_path):
    mine = tmp_path / "results.csv"
    mine.write_text("a,b\n1,2\n")
    with pytest.raises(MedcneError, match=r"^`checkpoint` .*results.csv exists and is not a medcne checkpoint"):
        TSimCNE(**TINY, checkpoint=mine).validate(IMAGES)
    assert mine.read_text() == "a,b\n1,2\n"
    with pytest.raises(MedcneError, match=r"^`checkpoint` must be None or a file path; got 123"):
        TSimCNE(**TINY, checkpoint=123).validate(IMAGES)
    ckpt = tmp_path / "ckpt.pt"
    TSimCNE(**{**TINY, "epochs": (1, 0, 0)}, checkpoint=ckpt, checkpoint_minutes=0).fit(IMAGES)
    assert file_format(ckpt) == "medcne-checkpoint/2"
    TSimCNE(**{**TINY, "epochs": (1, 0, 0)}, checkpoint=ckpt, checkpoint_minutes=0).fit(IMAGES)  # its own: replaced
    assert file_format(mine) is None and file_format(tmp_path / "missing.pt") is None


def test_a_finished_runs_checkpoint_and_an_older_runs_model_are_never_written_over(tmp_path, fitted):
    import json

    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / RUN_MARKER).write_text("{}")
    (finished / "params.json").write_text(json.dumps({"method": "tsimcne", "data": {}, "finished": True}))
    (finished / "embedding.npz").write_bytes(b"")
    with pytest.raises(MedcneError, match=r"^`checkpoint` .* is in the finished run folder"):
        TSimCNE(**TINY, checkpoint=finished / "checkpoint.pt").validate(IMAGES)
    older = tmp_path / "older"  # a run written before the marker: its params.json says what it is
    older.mkdir()
    (older / "params.json").write_text(json.dumps({"method": "tsimcne", "data": {}, "finished": True}))
    (older / "embedding.npz").write_bytes(b"")
    with pytest.raises(MedcneError, match=r"^`path` .* is in the finished run folder"):
        fitted.save(older / "model.pt")
    unfinished = tmp_path / "unfinished"  # fit_run's own checkpoint, in the run it is writing
    unfinished.mkdir()
    (unfinished / RUN_MARKER).write_text("{}")
    (unfinished / "params.json").write_text(json.dumps({"method": "tsimcne", "data": {}, "finished": False}))
    TSimCNE(**TINY, checkpoint=unfinished / "checkpoint.pt").validate(IMAGES)
    oldest = tmp_path / "oldest"  # finished before runs recorded "finished": both embedding files say so
    oldest.mkdir()
    (oldest / "params.json").write_text(json.dumps({"method": "tsimcne", "data": {}}))
    (oldest / "embedding.npz").write_bytes(b"")
    (oldest / "embedding.csv").write_text("x,y,label,id\n")
    with pytest.raises(MedcneError, match=r"^`checkpoint` .* is in the finished run folder"):
        TSimCNE(**TINY, checkpoint=oldest / "checkpoint.pt").validate(IMAGES)


def test_a_resume_from_python_is_refused_on_other_images_or_another_seed(tmp_path):
    from medcne.errors import MedcneError as Refused

    ckpt = tmp_path / "ckpt.pt"
    params = dict(TINY, epochs=(2, 0, 0), checkpoint=ckpt, checkpoint_minutes=0, random_state=0)

    def stop(end):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TSimCNE(**params).fit(IMAGES, callback=stop)
    other = np.ascontiguousarray(255 - IMAGES)  # as many images, other pixels: only the count was compared
    with pytest.raises(Refused, match="cannot resume: the checkpoint was trained on other images"):
        TSimCNE(**params).fit(other, resume_from=ckpt)
    with pytest.raises(Refused, match="cannot resume: `random_state` was 0 in the checkpoint but is 1 now"):
        TSimCNE(**{**params, "random_state": 1}).fit(IMAGES, resume_from=ckpt)
    assert TSimCNE(**params).fit(IMAGES, resume_from=ckpt).embedding_.shape == (16, 2)


def test_one_image_or_a_boolean_mask_is_refused_with_what_to_give(fitted):
    with pytest.raises(MedcneError, match=r"^X: an array of 8x8x3 is one image, not 8 images of 8x3; give a batch of images, e.g. X\[None\]"):
        fitted.transform(IMAGES[0])  # was read as 8 images of 8 x 3
    with pytest.raises(MedcneError, match=r"^X: an array of 8x8 is one image, not 8 images of 8"):
        fitted.transform(IMAGES[0, :, :, 0])  # one grey image: only the model knows its shape
    assert fitted.transform(IMAGES[0][None]).shape == (1, 2)
    with pytest.raises(MedcneError, match="cannot use images of dtype bool"):  # 0/1 pixels: near-black images
        fitted.transform(IMAGES > 127)


def test_fitting_one_colour_image_or_simclr_without_epochs_is_refused():
    with pytest.raises(MedcneError, match=r"^X: an array of 8x8x3 is one image, not 8 images of 8x3"):
        TSimCNE(**TINY).fit_transform(IMAGES[0])  # was trained on 8 "images" of 8 x 3 pixels
    from medcne.baselines import simclr_features
    from medcne.datasets import from_array

    with pytest.raises(MedcneError, match=r"^`epochs` of the SimCLR network must be an integer >= 1"):
        simclr_features(from_array(IMAGES), epochs=0)
