"""Neighbourhood preservation against the pixels of a dataset read block by block (any number of images)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcne.curate.neighbours import nearest_among_blocks, nearest_neighbours
from medcne.datasets import load_dataset
from medcne.datasets.imageset import LazyImages
from medcne.datasets.store_write import StoreWriter
from medcne.errors import MedcneError
from medcne.metrics import neighbour_preservation
from medcne.runs.evaluate import pixel_preservation


def test_blocks_give_the_exact_neighbours_of_the_whole():
    rng = np.random.default_rng(0)
    R, X = rng.normal(size=(300, 12)).astype(np.float32), rng.normal(size=(40, 12)).astype(np.float32)
    whole = nearest_neighbours(X, 9, reference=R, method="exact")
    blocks = ((s, R[s : s + 7]) for s in range(0, len(R), 7))  # 43 blocks, the last of 6 rows: fewer than k
    found = nearest_among_blocks(X, blocks, 9)
    np.testing.assert_array_equal(found.indices, whole.indices)
    np.testing.assert_allclose(found.distances, whole.distances, rtol=1e-6)
    with pytest.raises(MedcneError, match="at most the 5 reference points"):
        nearest_among_blocks(X, [(0, R[:5])], 9)


def _images(n=240, seed=1):
    """Six groups of noisy copies of six images, and a map that keeps the groups apart (not the order within)."""
    rng = np.random.default_rng(seed)
    base, group = rng.integers(0, 256, (6, 10, 10, 3)), rng.integers(0, 6, n)
    images = np.clip(base[group] + rng.integers(-40, 40, (n, 10, 10, 3)), 0, 255).astype(np.uint8)
    return images, rng.normal(0, 10, (6, 2))[group] + rng.normal(0, 1, (n, 2))


@pytest.mark.parametrize("n_queries", [None, 50])
def test_pixel_preservation_equals_the_metric_on_the_pixels_held_whole(tmp_path, n_queries):
    images, Z = _images()
    with StoreWriter(tmp_path / "store", images.shape[1:]) as w:
        w.add_part("a", images, labels=None, ids=[str(i) for i in range(len(images))])
    data = load_dataset(tmp_path / "store")
    expected = neighbour_preservation(images.reshape(len(images), -1) / 255.0, Z, k=15, n_queries=n_queries)
    # block_mb gives blocks of 29 images: the last block is smaller than k + 1
    got = pixel_preservation(data, Z, k=15, n_queries=n_queries, block_mb=29 * 300 * 4 / 2**20)
    assert got == pytest.approx(expected)
    assert 0.2 < got < 0.9  # neither the identity nor chance: the score depends on the neighbours found


def test_evaluation_of_a_store_never_reads_it_whole(tmp_path, monkeypatch):
    # The planted bug this guards: reading every image at once (np.asarray of the whole lazy store).
    images, Z = _images(120)
    with StoreWriter(tmp_path / "store", images.shape[1:]) as w:
        w.add_part("a", images, labels=None, ids=[str(i) for i in range(len(images))])
    data = load_dataset(tmp_path / "store")
    expected = pixel_preservation(data, Z, k=10, n_queries=30)

    def whole(self, *a, **k):
        raise AssertionError("the whole store was read at once")

    monkeypatch.setattr(LazyImages, "__array__", whole)
    monkeypatch.setattr(type(data), "to_numpy", whole)
    read = []
    original = LazyImages.__getitem__
    monkeypatch.setattr(LazyImages, "__getitem__", lambda self, key: read.append(len(original(self, key)))
                        or original(self, key))
    assert pixel_preservation(data, Z, k=10, n_queries=30, block_mb=40 * 300 * 4 / 2**20) == pytest.approx(expected)
    assert sorted(read) == [30, 40, 40, 40]  # the 30 scored images, then every image in blocks of 40


def test_pixel_preservation_refuses_other_data_or_k(tmp_path):
    images, _ = _images(30)
    from medcne.datasets.imageset import ImageSet

    data = ImageSet(images=images, labels=None, class_names=None, ids=np.array([str(i) for i in range(30)]),
                    source="x")
    with pytest.raises(MedcneError, match="31 points but its data 30 images"):
        pixel_preservation(data, np.zeros((31, 2)))
    with pytest.raises(MedcneError, match="`k` must be an integer in 1..29"):
        pixel_preservation(data, np.zeros((30, 2)), k=30)


def test_scoring_more_images_than_fit_is_refused_with_the_option(tmp_path, monkeypatch, capsys):
    from medcne.cli import main
    from medcne.datasets import memory
    from medcne.runs import make_baseline

    images, _ = _images(60)
    np.savez(tmp_path / "d.npz", images=images, labels=np.repeat([0, 1, 2], 20))
    make_baseline(tmp_path / "d.npz", "tsne-pixels", tmp_path / "run", tsne_params={"n_iter": 10})
    monkeypatch.setattr(memory, "available_bytes", lambda: 50_000)  # 60 x 300 float32 = 72,000 bytes
    assert main(["evaluate", str(tmp_path / "run"), "--np-queries", "0"]) == 0
    out = capsys.readouterr().out
    assert "note: neighbourhood preservation skipped: " in out and "score fewer images (--np-queries)" in out, out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "neighbour_preservation" not in metrics
    assert any("score fewer images (`n_queries`)" in n for n in metrics["notes"]), metrics["notes"]


def test_the_memory_check_counts_what_the_search_holds_at_its_peak(monkeypatch):
    # The estimate the check uses must cover what the search really holds (numpy's allocations, as
    # tracemalloc sees them), without asking for much more.
    import tracemalloc

    from medcne.curate.neighbours import blocks_search_bytes
    from medcne.datasets import memory
    from medcne.datasets.imageset import ImageSet

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8)
    data = ImageSet(images=images, source="x")
    Z = rng.normal(size=(600, 2)).astype(np.float32)
    dim, block_mb = 32 * 32 * 3, 1.0
    rows = int(block_mb * 2**20 // (4 * dim))
    estimate = blocks_search_bytes(400, dim, 4 * dim * rows)
    pixel_preservation(data.take(range(50)), Z[:50], k=5)  # imports and first-call caches, outside the count
    tracemalloc.start()
    try:
        pixel_preservation(data, Z, k=5, n_queries=400, block_mb=block_mb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= estimate <= 2 * peak, (peak, estimate)
    monkeypatch.setattr(memory, "available_bytes", lambda: int(0.9 * estimate / memory.MARGIN))
    with pytest.raises(MedcneError, match="score fewer images"):
        pixel_preservation(data, Z, k=5, n_queries=400, block_mb=block_mb)
