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


@pytest.mark.parametrize("in_memory", [True, False])
def test_large_images_get_pca_to_50(monkeypatch, in_memory):
    if not in_memory:
        monkeypatch.setattr(tsne_mod, "PCA_IN_MEMORY_BYTES", 0)
    imgs = random_images(110, 29, 29)  # 2,523 values per image > 2,500
    X, rec = pixel_features(from_array(imgs), chunk=55)
    assert X.shape == (110, 50) and rec["pca"] == 50
    assert rec["pca_solver"] == ("randomized" if in_memory else "incremental")
    assert X.std(0)[0] > X.std(0)[-1]  # components by decreasing variance


def test_pca_that_would_not_fit_in_memory_runs_incrementally_and_says_so(monkeypatch):
    from medcne.datasets import memory

    imgs = random_images(110, 29, 29)  # 110 x 2,523 float32 = 1.1 MB, under PCA_IN_MEMORY_BYTES
    # Room for the pixels once, not for them and the centred copy the randomized solver makes.
    monkeypatch.setattr(memory, "available_bytes", lambda: int(1.5 * 110 * 2523 * 4 / memory.MARGIN))
    X, rec = pixel_features(from_array(imgs))
    assert X.shape == (110, 50) and rec["pca_solver"] == "incremental"


def test_incremental_pca_works_on_chunks_of_bounded_memory(monkeypatch):
    import tracemalloc

    import sklearn.decomposition  # noqa: F401  (its import is not the solver's memory)

    monkeypatch.setattr(tsne_mod, "PCA_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(tsne_mod, "IPCA_BLOCK_MB", 4)  # 207 rows of 2,523 float64 values
    data = from_array(random_images(2000, 29, 29))  # 2,000 rows at once would be 40 MB as float64
    tracemalloc.start()
    try:
        X, rec = pixel_features(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert X.shape == (2000, 50) and rec["pca_solver"] == "incremental"
    # About six float64 copies of a chunk at the SVD (the chunk, centred, stacked, LAPACK's).
    assert peak < 48 << 20, f"{peak / 2**20:.0f} MiB"


def test_chunks_of_incremental_pca_hold_500_images_or_128_mb():
    assert tsne_mod.ipca_rows(96 * 96 * 3) == 500
    assert tsne_mod.ipca_rows(224 * 224 * 3) == 111  # 128 MB of float64 values
    assert tsne_mod.ipca_rows(1024 * 1024 * 3) == 100  # twice the components, at least


def test_incremental_pca_keeps_the_variance_of_pca_on_blood_cells(monkeypatch):
    data = load_dataset(SAMPLE_PATH, size=32, subset=1200)  # 3,072 values per image
    whole, rec = pixel_features(data)
    assert rec["pca_solver"] == "randomized"
    monkeypatch.setattr(tsne_mod, "PCA_IN_MEMORY_BYTES", 0)
    chunked, rec = pixel_features(data)
    assert rec["pca_solver"] == "incremental"
    assert chunked.var(0).sum() == pytest.approx(whole.var(0).sum(), rel=0.005)


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
    with pytest.raises(MedcneError, match="method must be one of"):
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
