"""TSimCNE follows scikit-learn conventions; transform, features, save/load, inputs."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from medcne import TSimCNE
from medcne.errors import MedcneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def images(n=40, size=16, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def tiny(**kw):
    args = dict(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=16, width=4, device="cpu",
                random_state=0, verbose=False)
    args.update(kw)
    return TSimCNE(**args)


@pytest.fixture(scope="module")
def fitted():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return tiny().fit(images())
    finally:
        torch.set_num_threads(n)


def test_init_only_stores_and_params_round_trip():
    est = TSimCNE(width=-3, preset="nope", lr="fast")  # nothing validated before fit
    assert est.get_params()["width"] == -3
    est.set_params(width=8, epochs=(5, 1, 2))
    assert est.get_params()["width"] == 8 and est.epochs == (5, 1, 2)
    assert clone(est).get_params() == est.get_params()
    assert not hasattr(est, "model_")


def test_fit_resolves_and_returns_self(fitted):
    assert isinstance(fitted, TSimCNE)
    assert fitted.batch_size_ == 16 and fitted.lr_ == pytest.approx(0.03 * 16 / 256)
    assert fitted.small_stem_ is True and fitted.device_.type == "cpu"
    assert [s.epochs for s in fitted.stages_] == [1, 1, 1]
    assert fitted.embedding_.shape == (40, 2) and fitted.embedding_.dtype == np.float32


def test_transform_is_deterministic_and_matches_embedding(fitted):
    X = images()
    a, b = fitted.transform(X), fitted.transform(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, fitted.embedding_, atol=1e-6)
    assert fitted.transform(images(n=5, seed=9)).shape == (5, 2)


def test_features(fitted):
    h = fitted.features(images(n=6))
    assert h.shape == (6, 32) and h.dtype == np.float32  # 8 * width


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.pt")
    raw = torch.load(path, weights_only=True)  # plain dict, nothing pickled
    assert raw["format"] == "medcne-model/2" and "state_dict" in raw
    loaded = TSimCNE.load(path, device="cpu")
    X = images(n=8, seed=3)
    np.testing.assert_allclose(loaded.transform(X), fitted.transform(X), atol=1e-6)
    assert loaded.get_params()["width"] == 4 and loaded.history_ == fitted.history_


def test_model_files_of_medcne_0_1_still_load(fitted, tmp_path):
    # The layout `save` wrote before the record: parameters (with stages) and `fitted` apart.
    record = fitted.record()
    old = {
        "format": "medcne-model/1",
        "params": {**record["params"], "stages": record["resolved"]["stages"]},
        "fitted": {"image_shape": list(fitted.image_shape_), "small_stem": True, "out_dim": 2,
                   "batch_size": fitted.batch_size_, "lr": fitted.lr_},
        "history": fitted.history_,
        "state_dict": fitted.model_.state_dict(),
    }
    torch.save(old, tmp_path / "old.pt")
    loaded = TSimCNE.load(tmp_path / "old.pt", device="cpu")
    X = images(n=8, seed=3)
    np.testing.assert_allclose(loaded.transform(X), fitted.transform(X), atol=1e-6)
    assert loaded.stages_ == fitted.stages_ and loaded.width == 4


def test_inputs_imageset_gray_and_torch_dataset():
    from medcne.datasets import from_array

    gray = from_array(images(n=20, channels=1))
    assert tiny(epochs=(1, 0, 1), batch_size=8).fit(gray).embedding_.shape == (20, 2)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            return torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)), i % 2

    assert tiny(epochs=(1, 0, 0)).fit(DS()).embedding_.shape == (12, 2)


def test_random_state_generator_and_dim3():
    # A numpy Generator is the one source of randomness: the same state gives the same map.
    def fit(rng):
        return tiny(random_state=rng, dim=3, epochs=(1, 0, 1)).fit_transform(images(n=20))

    a, b, c = fit(np.random.default_rng(5)), fit(np.random.default_rng(5)), fit(np.random.default_rng(6))
    assert a.shape == (20, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("preset,size,needs", [
    ("rot90", (16, 24), True), ("rot90", (16, 16), False), ("rotate", (16, 16), True), ("simclr", (16, 24), False),
])
def test_training_fills_uncovered_corners_with_the_border_colour(preset, size, needs):
    # Quarter turns of non-square images uncover corners: training must fill them with the
    # dataset's border colour (as the preview does), not black.
    import torch

    from medcne.augment import Augmenter

    uniform = np.full((8, *size, 3), 200, dtype=np.uint8)
    est = tiny(preset=preset, epochs=(1, 0, 0), batch_size=4).fit(uniform)
    assert (est.fill_ is not None) == needs
    if needs:
        np.testing.assert_allclose(est.fill_, [200 / 255] * 3, atol=1e-6)
    aug = Augmenter(preset, fill=est.fill_, jitter=False)  # colour jitter would change the uniform value
    views = aug(torch.from_numpy(uniform).permute(0, 3, 1, 2), torch.Generator().manual_seed(0))
    if needs or preset == "simclr":
        # Black corners would be 0.78 off; grayscale's weights (0.2989, 0.587, 0.114) sum to 0.9999.
        torch.testing.assert_close(views, torch.full_like(views, 200 / 255), atol=2e-4, rtol=0)


def test_cosine_is_the_simclr_baseline():
    est = tiny(loss="cosine", epochs=(2, 50, 450)).fit(images(n=20))
    assert len(est.stages_) == 1 and est.stages_[0].epochs == 2
    assert est.embedding_.shape == (20, 128) and est.features(images(n=3)).shape == (3, 32)


@pytest.mark.parametrize("kw,match", [
    ({"preset": "rotation"}, "preset"), ({"lr": -1.0}, "lr"), ({"batch_size": 1}, "batch_size"),
    ({"epochs": "1,2"}, "epochs"), ({"loss": "l2"}, "loss"), ({"backbone": "vit"}, "backbone"),
    ({"device": "tpu"}, "device"), ({"knn_every": -1}, "knn_every"),
])
def test_bad_parameters_name_themselves(kw, match):
    with pytest.raises(MedcneError, match=match):
        tiny(**kw).fit(images(n=8))


def test_misuse(fitted, tmp_path):
    with pytest.raises(MedcneError, match="not fitted"):
        TSimCNE().transform(images(n=2))
    with pytest.raises(MedcneError, match="must be 16x16x3"):
        fitted.transform(images(n=2, size=20))
    with pytest.raises(MedcneError, match="X must be"):
        tiny().fit(42)
    with pytest.raises(MedcneError, match="no such model"):
        TSimCNE.load(tmp_path / "missing.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_training_bf16_channels_last(compile):
    # The CUDA path of the loop: data and views on the GPU, bf16 autocast,
    # channels_last, optionally torch.compile; then the map comes back to the CPU.
    est = tiny(device="cuda", compile=compile).fit(images())
    assert est.device_.type == "cuda"
    assert np.isfinite(est.embedding_).all() and est.embedding_.shape == (40, 2)
    assert np.allclose(est.transform(images()), est.embedding_, atol=1e-2)


def test_fit_leaves_the_global_torch_generator_alone_and_fit_transform_returns_a_copy():
    # The network's layers are drawn from the estimator's own generator; PyTorch's constructors would
    # also draw their default weights from the global one, changing the user's torch.rand sequence.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    est = tiny(epochs=(1, 1, 1))
    Z = est.fit_transform(images(n=24))
    assert torch.equal(torch.rand(3), expected)
    Z[:] = 0
    assert np.abs(est.embedding_).sum() > 0  # editing the returned map leaves the fitted one


def test_nested_lists_of_pixel_values_are_read_as_an_array():
    # They were taken for a torch Dataset, and each image's second row for its label.
    X = images(n=24)
    est = tiny(epochs=(1, 0, 1)).fit(X)
    np.testing.assert_array_equal(est.transform(X[:4].tolist()), est.transform(X[:4]))
