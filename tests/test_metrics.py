import numpy as np
import pytest
from sklearn.metrics import silhouette_samples as sk_samples
from sklearn.metrics import silhouette_score

from medcne.errors import MedcneError
from medcne.metrics import (
    knn_accuracy,
    knn_accuracy_splits,
    neighbour_preservation,
    silhouette,
    silhouette_samples,
)


def blobs(n=600, n_classes=4, spread=1.0, seed=0, d=2):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    centres = rng.normal(scale=10, size=(n_classes, d))
    return centres[labels] + rng.normal(scale=spread, size=(n, d)), labels


# -- kNN accuracy ------------------------------------------------------------

def test_knn_separated_classes_score_100():
    Z, y = blobs(spread=0.1)
    assert knn_accuracy(Z, y) == 100.0


def test_knn_random_labels_score_near_chance():
    Z, _ = blobs(n=2000)
    y = np.random.default_rng(1).integers(0, 4, 2000)
    assert 15 < knn_accuracy(Z, y) < 35


def test_knn_uses_a_stratified_tenth_as_test_set():
    # 1,000 points of two classes, 900 / 100: a stratified 10 % test set has 90 / 10, so every
    # accuracy is a multiple of 1 %; with everything predicted "0" (tiny class 1) it is exactly 90.
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(1000, 2))
    y = np.r_[np.zeros(900, int), np.ones(100, int)]
    assert knn_accuracy(Z, y, k=15) == pytest.approx(90.0, abs=3)
    acc = knn_accuracy(Z, y)
    assert acc == pytest.approx(round(acc))


def test_knn_seeded_and_splits():
    Z, y = blobs(spread=6)
    assert knn_accuracy(Z, y, seed=3) == knn_accuracy(Z, y, seed=3)
    accs = knn_accuracy_splits(Z, y, n_splits=4)
    assert accs.shape == (4,)
    assert accs[0] == knn_accuracy(Z, y, seed=0) and accs[2] == knn_accuracy(Z, y, seed=2)
    assert accs.std() > 0  # different splits differ on overlapping classes


def test_knn_string_labels_and_singleton_class():
    Z, y = blobs(spread=0.1)
    names = np.array(["a", "b", "c", "d"])[y]
    names[0] = "lonely"  # one point only: cannot be stratified, goes to training
    assert knn_accuracy(Z, names) > 95


@pytest.mark.parametrize("bad", [dict(k=0), dict(test_size=1.5), dict(k=10_000)])
def test_knn_bad_parameters(bad):
    Z, y = blobs()
    with pytest.raises(MedcneError):
        knn_accuracy(Z, y, **bad)


def test_knn_bad_shapes():
    Z, y = blobs()
    with pytest.raises(MedcneError, match="one label per point"):
        knn_accuracy(Z, y[:-1])
    with pytest.raises(MedcneError, match="NaN"):
        knn_accuracy(np.full((10, 2), np.nan), np.arange(10) % 2)


# -- silhouette --------------------------------------------------------------

@pytest.mark.parametrize("n,n_classes,d", [(300, 2, 2), (1000, 7, 2), (400, 3, 5)])
def test_silhouette_equals_sklearn(n, n_classes, d):
    Z, y = blobs(n, n_classes, spread=8, d=d)
    Z = Z + 1000  # far from the origin: precision must not depend on it
    assert silhouette(Z, y) == pytest.approx(silhouette_score(Z, y), abs=1e-6)
    np.testing.assert_allclose(silhouette_samples(Z, y), sk_samples(Z, y), atol=1e-6)


def test_silhouette_singletons_duplicates_and_threads():
    Z, y = blobs(500, 3, spread=3)
    y[0] = 9  # a class of one point scores 0
    Z[1:20] = Z[1]  # duplicates: zero distances
    ours = silhouette_samples(Z, y, n_jobs=1)
    assert ours[0] == 0.0
    np.testing.assert_allclose(ours, sk_samples(Z, y), atol=1e-6)
    np.testing.assert_array_equal(ours, silhouette_samples(Z, y, n_jobs=2))


def test_silhouette_spans_runs():
    # Classes much longer than one float32 run of the kernel (256 points).
    Z, y = blobs(5000, 2, spread=9)
    y = (np.arange(5000) % 10 == 0).astype(int)  # class 0: 4,500 points
    assert silhouette(Z, y) == pytest.approx(silhouette_score(Z, y), abs=1e-6)


@pytest.mark.parametrize("n_classes, d", [(3, 2), (40, 2), (5, 7)])
def test_silhouette_classes_of_any_size_and_dimension(n_classes, d):
    # Class sizes that are not multiples of the run length, a class of 3 points,
    # points in more than two dimensions, rows split across uneven threads.
    Z, y = blobs(700, n_classes, d=d, spread=6)
    y[:3] = n_classes
    ours = silhouette_samples(Z, y, n_jobs=3)
    np.testing.assert_allclose(ours, sk_samples(Z, y), atol=1e-6)
    np.testing.assert_array_equal(ours, silhouette_samples(Z, y, n_jobs=1))


def test_silhouette_small_tiles_and_capped_tables(monkeypatch):
    # Tiles of 7 rows (many tile and class boundaries) and a memory cap that
    # leaves one thread's table: same values.
    import importlib

    sil = importlib.import_module("medcne.metrics.silhouette")
    Z, y = blobs(600, 6, spread=5)
    expected = sk_samples(Z, y)
    monkeypatch.setattr(sil, "_TILE", 7)
    np.testing.assert_allclose(silhouette_samples(Z, y, n_jobs=4), expected, atol=1e-6)
    monkeypatch.setattr(sil, "_TABLES_BYTES", 8 * 600 * 6)
    np.testing.assert_allclose(silhouette_samples(Z, y, n_jobs=4), expected, atol=1e-6)


def test_silhouette_needs_two_classes():
    Z, _ = blobs(50)
    with pytest.raises(MedcneError, match="2 to N-1"):
        silhouette(Z, np.zeros(50, int))
    with pytest.raises(MedcneError, match="device"):
        silhouette(Z, np.arange(50) % 2, device="tpu")


# -- neighbour preservation ----------------------------------------------------

def test_neighbour_preservation_identity_and_random():
    X, _ = blobs(400, 3, d=20)
    assert neighbour_preservation(X, X, k=10) == 1.0
    Z = np.random.default_rng(5).normal(size=(400, 2))
    assert neighbour_preservation(X, Z, k=10) < 0.1  # chance is about k / N


def test_neighbour_preservation_matches_a_slow_loop():
    rng = np.random.default_rng(2)
    X, Z = rng.normal(size=(120, 8)), rng.normal(size=(120, 2))
    X[:, :2] += 3 * Z  # partly preserved
    k = 5

    def knn(A, i):
        d = ((A - A[i]) ** 2).sum(1)
        d[i] = np.inf
        return set(np.argsort(d)[:k])

    slow = np.mean([len(knn(X, i) & knn(Z, i)) / k for i in range(len(X))])
    assert neighbour_preservation(X, Z, k=k) == pytest.approx(slow)
    sub = neighbour_preservation(X, Z, k=k, n_queries=50, seed=1)
    assert 0 <= sub <= 1 and sub != pytest.approx(slow, abs=1e-12)


def test_neighbour_preservation_images_and_errors():
    imgs = np.random.default_rng(0).integers(0, 255, (60, 4, 4, 3), dtype=np.uint8)
    Z = imgs.reshape(60, -1)[:, :2].astype(float)
    assert 0 <= neighbour_preservation(imgs, Z, k=5) <= 1
    with pytest.raises(MedcneError, match="same points"):
        neighbour_preservation(imgs[:10], Z, k=5)
    with pytest.raises(MedcneError, match="`k` must"):
        neighbour_preservation(imgs, Z, k=60)


def test_silhouette_torch_path_matches(monkeypatch):
    # The GPU code path (torch cdist + one-hot product), run on the CPU so that it is tested here too.
    import importlib

    torch = pytest.importorskip("torch")
    sil = importlib.import_module("medcne.metrics.silhouette")
    monkeypatch.setattr(sil, "_resolve_device", lambda device: "cpu")
    Z, y = blobs(700, 4, spread=6)
    np.testing.assert_allclose(silhouette_samples(Z, y, device="cuda"), sk_samples(Z, y), atol=1e-6)
    if not torch.cuda.is_available():
        monkeypatch.undo()
        assert silhouette(Z, y, device="auto") == pytest.approx(silhouette_score(Z, y), abs=1e-6)


def test_silhouette_of_many_points_is_that_of_a_recorded_sample(monkeypatch):
    """Above SILHOUETTE_EXACT_MAX points evaluate scores a seeded random sample and says so;
    at or below it the silhouette is exact and nothing is recorded."""
    from medcne.runs import evaluate as ev

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 3000)
    Z = rng.normal(size=(3000, 2)) + codes[:, None] * 1.5
    out, notes = {}, []
    assert ev._silhouette(Z, codes, out, notes) == pytest.approx(silhouette(Z, codes))
    assert out == {} and notes == []
    monkeypatch.setattr(ev, "SILHOUETTE_EXACT_MAX", 1000)
    sampled = ev._silhouette(Z, codes, out, notes)
    pick = np.sort(np.random.default_rng(0).choice(3000, 1000, replace=False))
    assert sampled == pytest.approx(silhouette(Z[pick], codes[pick]))
    assert sampled != pytest.approx(silhouette(Z, codes), abs=1e-9)
    assert out == {"silhouette_sample": 1000} and "random sample of 1,000 of the 3,000 points" in notes[0]
