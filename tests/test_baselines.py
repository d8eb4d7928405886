import importlib
import json
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from medcne.baselines import (
    MissingWeightsError,
    embed_baseline,
    pixel_features,
    resnet_features,
    tsne,
)
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH, from_array, load_dataset
from medcne.errors import MedcneError
from medcne.metrics import knn_accuracy_splits
from medcne.runs import make_baseline

resnet_mod = importlib.import_module("medcne.baselines.resnet")
tsne_mod = importlib.import_module("medcne.baselines.tsne")  # the package exports a function `tsne`
FAST_TSNE = dict(n_iter=150, early_exaggeration_iter=50)


def random_images(n, h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


# -- pixels --------------------------------------------------------------------

def test_small_images_stay_raw_pixels_in_unit_range():
    imgs = random_images(20, 28, 28)
    X, rec = pixel_features(from_array(imgs))
    assert X.shape == (20, 28 * 28 * 3) and X.dtype == np.float32 and rec["pca"] is None
    np.testing.assert_allclose(X[3], imgs[3].reshape(-1) / 255, atol=1e-7)


def test_raw_pixels_that_would_not_fit_are_refused_with_the_figures(monkeypatch):
    from medcne.datasets import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 100_000)  # 20 x 2,352 float32 = 188,160 bytes
    with pytest.raises(MedcneError, match=r"pixels of 20 images as float32 .* needs .*; use a `subset`"):
        pixel_features(from_array(random_images(20, 28, 28)))


def test_large_images_get_pca_to_50():
    data = from_array(random_images(110, 29, 29))  # 2,523 values per image > 2,500
    X, rec = pixel_features(data, seed=3)
    assert X.shape == (110, 50) and X.dtype == np.float32 and rec["pca"] == 50
    assert rec["pca_solver"] == "randomized, chunked" and rec["pca_power_iterations"] == 7
    assert np.all(np.diff(X.var(0)) <= 1e-6)  # components by decreasing variance
    np.testing.assert_array_equal(X, pixel_features(data, seed=3)[0])  # seeded
    few, rec = pixel_features(from_array(random_images(30, 29, 29)))
    assert few.shape == (30, 30) and rec["pca"] == 30  # 30 images span at most 30 directions


def test_pca_matches_an_exact_pca_of_blood_cells():
    from sklearn.decomposition import PCA

    data = load_dataset(SAMPLE_PATH, size=32, subset=1200)  # 3,072 values per image
    Y, _ = pixel_features(data)
    X = data.to_numpy().reshape(len(data), -1) / np.float32(255)
    exact = PCA(50, svd_solver="full").fit(X)
    variances = Y.var(0, ddof=1)
    np.testing.assert_allclose(variances[:10], exact.explained_variance_[:10], rtol=1e-4)
    np.testing.assert_allclose(variances, exact.explained_variance_, rtol=0.02)
    assert variances.sum() == pytest.approx(exact.explained_variance_.sum(), rel=1e-3)
    # The exact first 10 components lie in the span of the 50 found (1.0 when they do).
    E = exact.transform(X)[:, :10]
    residual = E - Y @ np.linalg.lstsq(Y, E, rcond=None)[0]
    assert (1 - (residual**2).sum(0) / (E**2).sum(0)).min() > 0.999


def test_pca_reads_the_images_in_chunks_of_bounded_memory(monkeypatch):
    import tracemalloc

    from medcne import defaults

    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 1)  # 103 images of 2,523 float32 values
    data = from_array(random_images(2000, 29, 29))  # 20 MB as float32
    tracemalloc.start()
    try:
        X, _ = pixel_features(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert X.shape == (2000, 50)
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB"  # a chunk and a few (N, 60) and (2,523, 60) matrices


def test_pca_of_a_store_equals_pca_of_the_same_images_in_memory(tmp_path):
    from medcne.datasets.store_write import StoreWriter

    images = random_images(300, 29, 29)
    with StoreWriter(tmp_path / "s", images.shape[1:]) as w:
        w.add_part("a", images[:120], ids=[str(i) for i in range(120)])
        w.add_part("b", images[120:], ids=[str(i) for i in range(120, 300)])
    store = load_dataset(tmp_path / "s")
    assert store.is_lazy
    np.testing.assert_array_equal(pixel_features(store)[0], pixel_features(from_array(images))[0])


# -- t-SNE -----------------------------------------------------------------------

@pytest.mark.slow
def test_tsne_of_pixels_separates_blood_cells():
    data = load_dataset(SAMPLE_PATH, subset=400)
    Z, rec = embed_baseline(data, "tsne-pixels", seed=1, n_jobs=1, tsne_params=FAST_TSNE)
    assert Z.shape == (400, 2) and Z.dtype == np.float32
    assert rec["reducer"]["tool"] == "openTSNE" and rec["reducer"]["random_state"] == 1
    # The largest class holds 19 %; raw pixels of 400 images give ~55 %, 2,000 images ~70 %.
    assert knn_accuracy_splits(Z, data.labels, n_splits=10).mean() > 40
    Z2, _ = tsne(pixel_features(data)[0], seed=1, n_jobs=1, **FAST_TSNE)
    np.testing.assert_array_equal(Z, Z2)  # same seed, same map


def test_unknown_method():
    with pytest.raises(MedcneError, match="`method` must be one of"):
        embed_baseline(from_array(random_images(5, 8, 8)), "pca")


def test_umap_needs_its_extra():
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(MedcneError, match=r"medcne\[umap\]"):
            embed_baseline(from_array(random_images(30, 8, 8)), "umap-pixels")
    else:
        Z, rec = embed_baseline(from_array(random_images(60, 8, 8)), "umap-pixels")
        assert Z.shape == (60, 2) and rec["reducer"]["tool"] == "umap-learn"


# -- ImageNet ResNet features --------------------------------------------------------

def test_preprocess_resizes_crops_and_normalises():
    imgs = np.full((2, 28, 28, 1), 128, dtype=np.uint8)  # grey, one channel
    x = resnet_mod.preprocess(imgs, "cpu")
    assert tuple(x.shape) == (2, 3, 224, 224)
    expected = (128 / 255 - np.array(resnet_mod.MEAN)) / np.array(resnet_mod.STD)
    np.testing.assert_allclose(x[0, :, 100, 100].numpy(), expected, atol=1e-5)
    wide = resnet_mod.preprocess(np.zeros((1, 30, 60, 3), np.uint8), "cpu")
    assert tuple(wide.shape) == (1, 3, 224, 224)


def test_resnet18_features_with_random_weights():
    data = from_array(random_images(3, 28, 28))
    H, rec = resnet_features(data, "resnet18", weights=None, batch_size=2)
    assert H.shape == (3, 512) and np.isfinite(H).all() and rec["weights"].startswith("random")
    assert rec["dim"] == 512 and "centre crop 224" in rec["preprocess"]


@pytest.mark.slow
def test_weights_file_is_loaded(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    data = from_array(random_images(2, 16, 16))
    H, rec = resnet_features(data, "resnet18", weights=tmp_path / "r18.pth")
    model.fc = torch.nn.Identity()
    with torch.inference_mode():
        ref = model.eval()(resnet_mod.preprocess(data.images, "cpu")).numpy()
    np.testing.assert_allclose(H, ref, rtol=1e-4, atol=1e-5)
    assert rec["weights"].endswith("r18.pth")
    (tmp_path / "bad.pth").write_text("<html>not found</html>")
    with pytest.raises(MedcneError, match="not a readable resnet18 weights file"):
        resnet_features(data, "resnet18", weights=tmp_path / "bad.pth")


def test_missing_weights_offline_name_file_and_place(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert resnet_mod.cached_weights_path("resnet18") == expected
    data = from_array(random_images(2, 8, 8))
    with pytest.raises(MissingWeightsError) as err:
        resnet_features(data, "resnet18")
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in str(err.value)
    assert str(expected) in str(err.value)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(MissingWeightsError, match="download failed"):
        resnet_features(data, "resnet152", download=True)
    code = main(["baseline", str(SAMPLE_PATH), "--method", "tsne-resnet18", "--out", str(tmp_path / "r"),
                 "--subset", "100"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "resnet18-f37072fd.pth" in err
    assert not (tmp_path / "r" / "embedding.npz").exists()
    code = main(["baseline", str(SAMPLE_PATH), "--method", "tsne-resnet18", "--out", str(tmp_path / "r"),
                 "--weights", str(tmp_path / "nope.pth")])
    assert code == 2 and "nope.pth: no such file" in capsys.readouterr().err


# -- run folders -------------------------------------------------------------------

def test_make_baseline_writes_a_run_folder(tmp_path):
    out = make_baseline(SAMPLE_PATH, "tsne-pixels", tmp_path / "run", {"subset": 150, "seed": 2},
                        seed=0, n_jobs=1, tsne_params=FAST_TSNE).path
    names = sorted(p.name for p in out.iterdir())
    assert names == [".medcne-run", "embedding.csv", "embedding.npz", "map.png", "metrics.json", "params.json"]
    params = json.loads((out / "params.json").read_text())
    assert params["method"] == "tsne-pixels" and params["data"]["subset"] == 150
    assert params["data"]["path"] == str(SAMPLE_PATH.resolve())
    assert params["reducer"]["n_iter"] == 150
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"knn_accuracy", "silhouette", "neighbour_preservation", "seconds"} <= set(metrics)
    with pytest.raises(MedcneError, match="already holds a finished run"):
        make_baseline(SAMPLE_PATH, "tsne-pixels", out, {"subset": 150})


def test_make_baseline_refuses_an_option_it_does_not_take_before_writing_anything(tmp_path):
    # `overwrite` is fit_run's name for `force`: it used to end in a TypeError of embed_baseline, mid-run.
    out = tmp_path / "run"
    with pytest.raises(MedcneError) as overwrite:
        make_baseline(SAMPLE_PATH, "tsne-pixels", out, {"subset": 40}, overwrite=True)
    said = str(overwrite.value)
    assert "unknown option `overwrite`" in said and "the switch that replaces a run is `force`" in said
    assert all(f"`{name}`" in said for name in ("data_spec", "force", "seed", "n_jobs", "tsne_params", "simclr"))
    with pytest.raises(MedcneError, match="unknown options `perplexity`, `n_iter`; its options are"):
        make_baseline(SAMPLE_PATH, "tsne-pixels", out, {"subset": 40}, perplexity=5, n_iter=10)
    assert list(tmp_path.iterdir()) == []  # not the run, its staging folder or its lock


@pytest.mark.slow
def test_cli_baseline_default_tsne(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["baseline", str(SAMPLE_PATH), "--method", "tsne-pixels", "--out", str(out),
                 "--subset", "300", "--jobs", "1"]) == 0
    assert "kNN accuracy" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["knn_accuracy"] > 50


@pytest.mark.slow
def test_tsne_simclr_trains_then_embeds_features(tmp_path):
    # Tiny settings: one epoch of a narrow network, only to check the wiring end to end.
    out = make_baseline(
        SAMPLE_PATH, "tsne-simclr", tmp_path / "run", {"subset": 100}, seed=0, n_jobs=1,
        tsne_params=FAST_TSNE, simclr=dict(epochs=1, batch_size=50, width=8, device="cpu", verbose=False),
    ).path
    params = json.loads((out / "params.json").read_text())
    assert params["method"] == "tsne-simclr"
    assert params["features"]["features"] == "simclr" and params["features"]["dim"] == 64  # 512 * 8 / 64
    assert params["features"]["epochs"] == 1
    assert json.loads((out / "metrics.json").read_text())["n_points"] == 100
