"""Approximate neighbours for many points: recall against exact, the automatic switch, and what outputs say."""

from __future__ import annotations

import numpy as np
import pytest

from medcne.curate import neighbours as nbmod
from medcne.curate import quality_control
from medcne.curate.neighbours import approximate_neighbours, auto_method, nearest_neighbours
from medcne.errors import MedcneError

pytest.importorskip("hnswlib")


def clusters(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (6, d))
    return (centres[rng.integers(0, 6, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def recall(a, b):
    return np.mean([len(np.intersect1d(x, y)) / len(y) for x, y in zip(a, b, strict=True)])


def test_hnswlib_finds_nearly_all_exact_neighbours_and_never_itself():
    X = clusters()
    exact = nearest_neighbours(X, 10, method="exact")
    approx = approximate_neighbours(X, 10)
    assert approx.method == "approximate (hnswlib)" and exact.method == "exact"
    assert approx.indices.shape == (600, 10)
    assert not (approx.indices == np.arange(600)[:, None]).any()
    assert recall(approx.indices, exact.indices) > 0.98
    assert (np.diff(approx.distances, axis=1) >= 0).all()  # exact distances, nearest first
    again = approximate_neighbours(X, 10)
    np.testing.assert_array_equal(again.indices, approx.indices)  # one thread, fixed seed: reproducible


def test_approximate_search_against_a_reference():
    X, R = clusters(50, seed=1), clusters(400, seed=2)
    exact = nearest_neighbours(X, 5, reference=R, method="exact")
    approx = approximate_neighbours(X, 5, reference=R)
    assert recall(approx.indices, exact.indices) > 0.98


def test_auto_switches_above_the_threshold_and_says_so(monkeypatch):
    X = clusters(300)
    assert nearest_neighbours(X, 5).method == "exact"
    monkeypatch.setattr(nbmod, "APPROX_ABOVE", 100)
    assert auto_method(300) == "approximate (hnswlib)" and auto_method(100) == "exact"
    assert nearest_neighbours(X, 5).method == "approximate (hnswlib)"
    assert quality_control(X, k=5).summary()["neighbours"] == "approximate (hnswlib)"
    monkeypatch.setattr(nbmod, "_installed", lambda name: False)  # without the extra: exact, as before
    assert nearest_neighbours(X, 5).method == "exact"


def test_bad_method_or_library_refused():
    X = clusters(20)
    with pytest.raises(MedcneError, match="`method` must be"):
        nearest_neighbours(X, 3, method="fast")
    with pytest.raises(MedcneError, match="library must be"):
        approximate_neighbours(X, 3, library="annoy")
    with pytest.raises(MedcneError, match="`k` must be between 1 and 19"):
        approximate_neighbours(X, 20)


def test_blocks_of_queries_give_the_neighbours_of_one_query(monkeypatch):
    # Queries and distance recomputation go a block of rows at a time (memory at millions of points).
    X = clusters()
    whole = approximate_neighbours(X, 10)
    monkeypatch.setattr(nbmod, "QUERY_BLOCK", 7)
    blocked = approximate_neighbours(X, 10)
    np.testing.assert_array_equal(blocked.indices, whole.indices)
    np.testing.assert_array_equal(blocked.distances, whole.distances)
    exact = nearest_neighbours(X, 10, method="exact")
    assert (blocked.indices == exact.indices).mean() > 0.95


def test_distances_of_long_vectors_are_recomputed_in_blocks_of_bounded_memory(monkeypatch):
    # Pixels of 96 x 96 x 3 images are 27,648 values: the float64 differences of the exact distances go
    # EXACT_BLOCK_MB at a time, not (rows, D) for every queried row at once.
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.random((1000, 4096), dtype=np.float32)  # 16 MB
    idx = rng.integers(0, 1000, (1000, 5))
    whole = nbmod._exact(X, X, idx)
    monkeypatch.setattr(nbmod, "EXACT_BLOCK_MB", 1)
    tracemalloc.start()
    blocked = nbmod._exact(X, X, idx)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(blocked[0], whole[0])
    np.testing.assert_array_equal(blocked[1], whole[1])
    assert peak < 6 * 2**20, f"{peak / 2**20:.1f} MiB"  # all rows at once: 80 MiB
