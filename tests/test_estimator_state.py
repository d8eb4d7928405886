"""A fit that does not finish leaves the estimator as it was; scikit-learn's fitted state; inputs that
hold no images; warnings of settings that run but do not do what they seem to."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from medcne import TSimCNE
from medcne.datasets import as_imageset, from_torch_dataset
from medcne.errors import DivergedError, MedcneError, MedcneWarning
from medcne.train.budget import budget_stages, scaled_warmup
from medcne.train.session import warmup_problem
from medcne.train.stages import Stage, tsimcne_stages
from medcne.train.timing import StepTiming

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def images(n=24, size=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def tiny(**kw):
    args = dict(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=8, width=4, device="cpu", random_state=0,
                verbose=False)
    return TSimCNE(**{**args, **kw})


class Stop(Exception):
    pass


def stop(end):
    raise Stop


def interrupt(end):
    raise KeyboardInterrupt


# -- a fit that does not finish ----------------------------------------------------

@pytest.mark.parametrize("stopper", [stop, interrupt])
def test_an_unfinished_first_fit_leaves_the_estimator_unfitted(stopper, tmp_path):
    est = tiny()
    with pytest.raises((Stop, KeyboardInterrupt)):
        est.fit(images(), callback=stopper)
    assert vars(est) == vars(tiny())  # nothing set: no model, no resolved values
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(MedcneError, match="not fitted"):
        est.transform(images(n=2))
    with pytest.raises(MedcneError, match="not fitted"):
        est.save(tmp_path / "model.pt")


def test_an_interrupted_refit_keeps_the_previous_fit(tmp_path):
    est = tiny().fit(images())
    before = dict(vars(est))
    Z, history = est.transform(images(n=4)), list(est.history_)
    est.set_params(epochs=(2, 1, 1), random_state=1)
    with pytest.raises(KeyboardInterrupt):
        est.fit(images(seed=1), callback=interrupt)
    assert vars(est).keys() == before.keys() and all(vars(est)[k] is v for k, v in before.items()
                                                     if k not in ("epochs", "random_state"))
    np.testing.assert_array_equal(est.transform(images(n=4)), Z)  # the previous (N, 2) map, not stage 1's
    assert est.history_ == history and est.epochs == (2, 1, 1)  # the parameters stay as the user set them
    loaded = TSimCNE.load(est.save(tmp_path / "model.pt"), device="cpu")
    np.testing.assert_allclose(loaded.transform(images(n=4)), Z, atol=1e-6)


def test_a_diverged_fit_leaves_no_model():
    est = tiny(lr=1e6)
    with pytest.raises(DivergedError):
        est.fit(images())
    assert not hasattr(est, "model_") and not hasattr(est, "stages_")
    with pytest.raises(MedcneError, match="not fitted"):
        est.transform(images(n=2))


def test_a_fit_stopped_after_a_checkpoint_still_resumes(tmp_path):
    ckpt = tmp_path / "ck.pt"
    full = tiny(epochs=(2, 1, 1)).fit(images())
    est = tiny(epochs=(2, 1, 1), checkpoint=ckpt, checkpoint_minutes=0)

    def stop_after_one(end):
        if end.position.stage == 0 and end.position.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        est.fit(images(), callback=stop_after_one)
    assert ckpt.is_file() and not hasattr(est, "model_")
    np.testing.assert_allclose(est.fit(images(), resume_from=ckpt).embedding_, full.embedding_, atol=1e-5)


# -- scikit-learn's conventions ----------------------------------------------------

def test_not_fitted_is_scikit_learns_error_and_validate_fits_nothing():
    est = tiny()
    with pytest.raises(NotFittedError, match="not fitted") as caught:
        est.transform(images(n=2))
    assert isinstance(caught.value, MedcneError)
    est.validate(images())
    assert est.batch_size_ == 8  # resolved ...
    with pytest.raises(NotFittedError):  # ... but not fitted
        check_is_fitted(est)
    check_is_fitted(tiny().fit(images(n=16)))


def test_the_not_fitted_error_pickles():
    import pickle

    from medcne.errors import NotFittedError as Ours

    back = pickle.loads(pickle.dumps(Ours("not fitted")))
    assert type(back) is Ours and str(back) == "not fitted"


def test_the_errors_module_loads_no_scikit_learn():
    import subprocess
    import sys

    code = "import sys, medcne.errors, medcne.params; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-500:]


# -- inputs that hold no images ----------------------------------------------------

@pytest.fixture
def npz_file(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=images(n=4), labels=np.arange(4))
    return path


def test_a_path_is_refused_with_what_to_do(npz_file):
    for X in (str(npz_file), npz_file):
        with pytest.raises(MedcneError, match=r"`X` is a path \(.*data.npz\), not images; .*load_dataset\(path\)"):
            tiny().fit(X)
    with pytest.raises(MedcneError, match="is a path"):
        from_torch_dataset(str(npz_file))


def test_an_npz_files_arrays_or_a_dict_are_refused_with_what_to_pass(npz_file):
    with np.load(npz_file) as npz, pytest.raises(MedcneError, match=r"an \.npz file's arrays \(np.load\) with keys "
                                                 r"'images', 'labels', not images; .*X\['images'\].*load_dataset"):
        tiny().fit(npz)
    with pytest.raises(MedcneError, match=r"is a dict with keys 'x', 'train_images'.*X\['train_images'\]"):
        as_imageset({"x": 1, "train_images": images(n=4)})


def test_datasets_that_cannot_be_read_say_why():
    class Iter(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(images(n=1)[0], 0)] * 4)

    for read in (from_torch_dataset, tiny().fit):
        with pytest.raises(MedcneError, match=r"an iterable torch Dataset \(Iter\) has no length.*map-style"):
            read(Iter())
    records = [{"image": im, "label": 1} for im in images(n=4)]
    with pytest.raises(MedcneError, match=r"item 0 is a dict with keys 'image', 'label'; .*\(image, label\) pair"):
        from_torch_dataset(records)
    with pytest.raises(MedcneError, match=r"item 0 is the text 'a.png', not an image"):
        from_torch_dataset(["a.png", "b.png"])
    with pytest.raises(MedcneError, match=r"item 0's image has shape \(2, 2, 2, 2\)"):
        from_torch_dataset([np.zeros((2, 2, 2, 2), np.uint8)] * 3)
    assert from_torch_dataset([(im, 1) for im in images(n=3)]).labels.tolist() == [1, 1, 1]  # still read


# -- warnings ------------------------------------------------------------------------

def fit_warnings(est, X) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
    return [str(w.message) for w in caught if issubclass(w.category, MedcneWarning)]


def test_knn_every_without_labels_warns_once():
    said = fit_warnings(tiny(knn_every=1), images())
    assert len(said) == 1 and "`knn_every` is set, but the images have no labels" in said[0]
    assert "y of fit is ignored" in said[0]
    from medcne.datasets import from_array

    labelled = from_array(images(), np.arange(24) % 2)
    assert fit_warnings(tiny(knn_every=1), labelled) == []


def test_a_warm_up_as_long_as_its_stage_warns_once_naming_warmup_and_epochs():
    said = fit_warnings(tiny(epochs=(2, 1, 1), warmup=(10, 0, 10)), images())
    assert len(said) == 1
    assert said[0].startswith("`warmup` 10,0,10 is as long as `epochs` 2,1,1 or longer in stages pretrain and "
                              "finetune") and "e.g. `warmup` 0,0,0" in said[0]
    assert fit_warnings(tiny(epochs=(2, 1, 1), warmup=(1, 0, 0)), images()) == []


def test_the_warm_up_check_on_the_stages():
    assert warmup_problem(tsimcne_stages((12, 1, 6), warmup=(2, 0, 1))) is None
    assert warmup_problem(tsimcne_stages((0, 0, 3), warmup=(10, 0, 2))) is None  # a stage not run is no problem
    assert "stage finetune:" in warmup_problem(tsimcne_stages((12, 1, 6), warmup=(2, 0, 6)))
    assert "e.g. `warmup` 2,0,1" in warmup_problem(tsimcne_stages((12, 1, 6), warmup=(2, 0, 6)))


def test_a_budget_never_warms_up_for_a_whole_stage():
    # The notebook's budget run: epochs 3,0,2 with the paper's warm-up 10,0,10 chose "pretrain 9, finetune 6
    # (warm-up 9,0,6)": learning rates that never annealed.
    template = tsimcne_stages((3, 0, 2), lr=0.06, warmup=(10, 0, 10))
    for seconds in (12.0, 40.0, 80.0, 300.0):
        stages = budget_stages(template, StepTiming(step=0.5, first=0.5), n=1000, batch_size=100, seconds=seconds)
        assert all(s.warmup_epochs < s.epochs for s in stages if s.epochs), stages
        assert warmup_problem(stages) is None
    assert [scaled_warmup(Stage("s", 6, 0.1, 10), e) for e in (0, 1, 2, 9, 11, 30)] == [0, 0, 1, 8, 10, 10]
    assert [scaled_warmup(Stage("s", 6, 0.1, 5), e) for e in (1, 2, 6, 12)] == [0, 1, 5, 10]
