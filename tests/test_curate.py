"""medcne.curate on small planted data: exact neighbours, label issues, duplicates, outliers, propagation."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from medcne.curate import (
    aligned_distances,
    image_checks,
    label_issues,
    near_duplicates,
    nearest_neighbours,
    outlier_scores,
    propagate_labels,
    quality_control,
)
from medcne.errors import MedcneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n_per=60, n_classes=4, dim=6, spread=0.4, seed=0):
    """Well-separated Gaussian classes: centres on the axes, 3 units apart."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per)
    centres = 3.0 * np.eye(n_classes, dim)
    return (centres[labels] + rng.normal(scale=spread, size=(len(labels), dim))).astype(np.float32), labels


def test_neighbours_are_exact_in_any_number_of_blocks():
    X = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32) * 50 + 1000  # far from 0: rounding
    ref_d, ref_i = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X)
    for memory_mb in (512, 0.01):  # one block, or one query row per block
        nb = nearest_neighbours(X, 5, memory_mb=memory_mb)
        np.testing.assert_array_equal(nb.indices, ref_i[:, 1:])
        np.testing.assert_allclose(nb.distances, ref_d[:, 1:], rtol=1e-5)
    Q = X[:7] + 0.1
    nb = nearest_neighbours(Q, 3, reference=X)
    ref_d, ref_i = NearestNeighbors(n_neighbors=3).fit(X).kneighbors(Q)
    np.testing.assert_array_equal(nb.indices, ref_i)
    np.testing.assert_allclose(nb.distances, ref_d, rtol=1e-5)


def test_a_copy_is_the_nearest_at_distance_zero_and_a_point_never_its_own():
    X, _ = blobs()
    X[10] = X[3]
    nb = nearest_neighbours(X, 4)
    assert (nb.indices != np.arange(len(X))[:, None]).all()
    assert nb.indices[3, 0] == 10 and nb.indices[10, 0] == 3
    assert nb.distances[3, 0] == 0 and nb.distances[10, 0] == 0
    assert (np.diff(nb.distances, axis=1) >= 0).all()


@pytest.mark.parametrize("X,k,match", [
    (np.zeros((5, 2)), 5, "`k` must be between 1 and 4"),
    (np.zeros((5, 2)), 0, "`k` must be between"),
    (np.zeros(5), 1, "2-D array"),
    (np.array([[0.0, np.nan], [1, 1], [2, 2]]), 1, "NaN"),
])
def test_neighbour_errors_name_the_parameter(X, k, match):
    with pytest.raises(MedcneError, match=match):
        nearest_neighbours(X, k)


def test_label_issue_score_ranks_flipped_labels_first_and_suggests_the_true_class():
    X, true = blobs()
    noisy = true.copy()
    flipped = np.random.default_rng(2).choice(len(true), 12, replace=False)
    noisy[flipped] = (true[flipped] + 1) % 4
    score, suggested, likely = label_issues(nearest_neighbours(X, 10), noisy, 4)
    assert set(np.argsort(-score, kind="stable")[:12]) == set(flipped)
    np.testing.assert_array_equal(suggested[flipped], true[flipped])
    # flagged: no neighbour shares the label; a flip next to another flip to the same class is not
    assert set(np.flatnonzero(likely)) <= set(flipped) and likely.sum() >= 8
    assert score[np.setdiff1d(np.arange(len(X)), flipped)].max() < 0.5


def test_a_tied_vote_goes_to_the_class_of_the_nearer_neighbours():
    X = np.array([[0.0], [1.0], [1.1], [3.0], [3.1]], dtype=np.float32)
    labels = np.array([2, 1, 1, 0, 0])  # point 0: two neighbours of class 1 near, two of class 0 far
    score, suggested, _ = label_issues(nearest_neighbours(X, 4), labels, 3)
    assert suggested[0] == 1 and score[0] == 1.0


def test_label_issues_leave_unlabeled_images_out():
    X, true = blobs()
    labels = true.copy()
    labels[::2] = -1  # half unlabeled: they neither vote nor get a score
    score, suggested, likely = label_issues(nearest_neighbours(X, 10), labels, 4)
    assert np.isnan(score[::2]).all() and np.isfinite(score[1::2]).all()
    np.testing.assert_array_equal(suggested, true)
    assert not likely.any()
    with pytest.raises(MedcneError, match="labels must be"):
        label_issues(nearest_neighbours(X, 3), labels[:-1])


def test_near_duplicates_flag_exactly_the_planted_copies():
    X, _ = blobs()
    rng = np.random.default_rng(3)
    sources = rng.choice(len(X), 5, replace=False)
    copies = X[sources] + rng.normal(scale=0.01, size=(5, X.shape[1])).astype(np.float32)
    Y = np.concatenate([X, copies])
    index, distance, likely = near_duplicates(nearest_neighbours(Y, 5))
    planted = np.arange(len(X), len(Y))
    assert set(np.flatnonzero(likely)) == set(planted) | set(sources)
    np.testing.assert_array_equal(index[planted], sources)
    assert distance[planted].max() < 0.05
    res = quality_control(Y, k=5)
    assert {tuple(p) for p in res.duplicate_pairs()} == {(int(s), int(c)) for s, c in zip(sources, planted, strict=True)}
    assert res.summary()["duplicate_pairs"] == 5


def test_outlier_score_puts_far_images_on_top_even_a_small_group_of_them():
    X, _ = blobs()
    far = np.full((6, X.shape[1]), 8.0, dtype=np.float32)
    far[:3] += np.random.default_rng(4).normal(scale=0.05, size=(3, X.shape[1]))  # three near each other
    far[3:, 0] = -8.0 + np.arange(3)
    Y = np.concatenate([X, far])
    score, likely = outlier_scores(nearest_neighbours(Y, 10))
    planted = set(range(len(X), len(Y)))
    assert set(np.argsort(-score)[:6]) == planted
    assert set(np.flatnonzero(likely)) == planted
    assert np.median(score) == pytest.approx(0.0, abs=1e-9)  # robust z-score: 0 is typical


def test_quality_control_without_labels_scores_the_rest():
    X, _ = blobs()
    res = quality_control(X, k=5)
    assert np.isnan(res.label_issue_score).all() and (res.suggested_label == -1).all()
    assert not res.likely_label_error.any() and res.summary()["label_errors"] == 0
    assert len(res.outlier_score) == len(X) and res.duplicate_index.shape == (len(X),)
    with pytest.raises(MedcneError, match="at least 3 images"):
        quality_control(X[:2])
    # a search already made stands for the points (qc lets the points go before the thumbnails)
    again = quality_control(None, k=5, neighbours=nearest_neighbours(X, 5))
    np.testing.assert_array_equal(again.outlier_score, res.outlier_score)
    np.testing.assert_array_equal(again.duplicate_index, res.duplicate_index)
    with pytest.raises(MedcneError, match="give the points X, or the neighbours"):
        quality_control(None)


def rings(n=300, seed=0):
    """Two concentric rings: nearest annotated points mislead, the graph does not."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(labels == 0, 1.0, 2.0) + rng.normal(scale=0.05, size=n)
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)].astype(np.float32), labels, angle


def test_spreading_follows_the_clusters_where_the_nearest_annotations_mislead():
    X, true, angle = rings()
    given = np.full(len(X), -1)
    inner = np.flatnonzero(true == 0)[np.argmin(np.abs(angle[true == 0] - 0.0))]
    outer = np.flatnonzero(true == 1)[np.argmin(np.abs(angle[true == 1] - np.pi))]
    given[[inner, outer]] = [0, 1]
    spread, conf = propagate_labels(X, given, k=8)
    knn, _ = propagate_labels(X, given, method="knn", k=8)
    assert (spread == true).mean() > 0.98
    assert (knn == true).mean() < 0.8  # half of each ring is nearer the other ring's annotation
    assert spread[inner] == 0 and spread[outer] == 1 and conf[[inner, outer]].tolist() == [1.0, 1.0]
    assert ((conf >= 0.5) & (conf <= 1)).all()


def test_propagation_reaches_a_group_without_annotations_and_rejects_bad_input():
    X, true = blobs(n_per=30, n_classes=3)
    X[true == 2, 1] += 100  # its own component of the 5-NN graph, nearer class 1 than class 0
    given = np.full(len(X), -1)
    given[[0, 30]] = [0, 1]
    pred, conf = propagate_labels(X, given, k=5)
    np.testing.assert_array_equal(pred[true < 2], true[true < 2])
    assert (pred[true == 2] == 1).all() and (conf > 0.5).all()  # the nearest annotations fill it
    with pytest.raises(MedcneError, match="at least two classes"):
        propagate_labels(X, np.where(np.arange(len(X)) < 3, 0, -1))
    with pytest.raises(MedcneError, match="`method` must be one of"):
        propagate_labels(X, given, method="lp")


def test_curate_takes_arrays_and_imports_nothing_above_it():
    from test_structure import GRAPH

    allowed = ("medcne.curate", "medcne.errors", "medcne.defaults", "medcne.device")
    for name, targets in GRAPH.items():
        if name.startswith("medcne.curate"):
            assert {t for t in targets if not t.startswith(allowed)} == set(), name


def blocky_images(n, seed=0):
    """Random 14 x 14 colour patterns blown up to 28 x 28: sharp edges, distinct colours."""
    rng = np.random.default_rng(seed)
    return np.repeat(np.repeat(rng.integers(0, 256, (n, 14, 14, 3), dtype=np.uint8), 2, 1), 2, 2)


def test_image_checks_thumbnails_and_sharpness():
    from PIL import Image, ImageFilter

    imgs = blocky_images(5)
    imgs[1] = 200  # blank
    imgs[2] = np.asarray(Image.fromarray(imgs[0]).filter(ImageFilter.GaussianBlur(2)))
    checks = image_checks(imgs, chunk_mb=0.005)  # two images per chunk
    assert checks.thumbnails.shape == (5, 7, 7, 3)
    np.testing.assert_allclose(checks.thumbnails[1], 200 / 255, rtol=1e-6)
    np.testing.assert_allclose(checks.thumbnails[0, 0, 0], imgs[0, :4, :4].reshape(-1, 3).mean(0) / 255, rtol=1e-5)
    assert checks.sharpness[1] == 0 and checks.sharpness[2] < checks.sharpness[0] / 5
    faint = (128 + (imgs[0].astype(np.int16) - 128) // 5).astype(np.uint8)  # a fifth of the contrast, as sharp
    assert image_checks(faint[None]).sharpness[0] == pytest.approx(checks.sharpness[0], rel=0.05)
    np.testing.assert_allclose(image_checks(imgs).sharpness, checks.sharpness, rtol=1e-9)  # chunks change nothing
    assert image_checks(imgs[..., 0]).thumbnails.shape == (5, 7, 7, 1)  # one channel
    with pytest.raises(MedcneError, match="H, W >= 3"):
        image_checks(np.zeros((2, 2, 2, 3), dtype=np.uint8))


def test_aligned_distance_forgives_turns_and_flips_only():
    imgs = blocky_images(3)
    imgs[1] = np.rot90(imgs[0], 1)
    imgs[2] = imgs[0][:, ::-1]
    thumbs = image_checks(imgs).thumbnails
    d = aligned_distances(thumbs, np.array([[1, 2], [0, 2], [0, 1]]))
    np.testing.assert_allclose(d, 0, atol=1e-6)
    other = image_checks(blocky_images(1, seed=5)).thumbnails
    assert aligned_distances(np.concatenate([thumbs[:1], other]), np.array([[1], [0]])).min() > 0.05


def test_image_checks_confirm_turned_copies_and_catch_what_the_space_ignores():
    from PIL import Image, ImageFilter

    imgs = blocky_images(80)
    imgs[60] = np.rot90(imgs[5])
    imgs[61] = imgs[9][::-1]
    imgs[70] = np.asarray(Image.fromarray(imgs[70]).filter(ImageFilter.GaussianBlur(2)))
    imgs[71] = np.clip(imgs[71] * 0.2, 0, 255).astype(np.uint8)  # under-exposed
    X = np.random.default_rng(1).normal(size=(80, 4)).astype(np.float32)  # a space blind to all of it
    X[60], X[61] = X[5] + 0.2, X[9] - 0.2
    nb = nearest_neighbours(X, 10)
    assert {5, 9} <= set(nb.indices[60]) | set(nb.indices[61])
    plain = quality_control(X, neighbours=nb)
    checked = quality_control(X, checks=image_checks(imgs), neighbours=nb)
    assert {tuple(p) for p in checked.duplicate_pairs()} == {(5, 60), (9, 61)}
    assert {tuple(p) for p in plain.duplicate_pairs()} != {(5, 60), (9, 61)}
    assert checked.duplicate_distance[60] < 1e-6
    assert set(np.argsort(-checked.outlier_score)[:2]) == {70, 71} and set(np.flatnonzero(checked.likely_outlier)) == {70, 71}
    assert not {70, 71} & set(np.argsort(-plain.outlier_score)[:2])
    with pytest.raises(MedcneError, match="checks are for 79 images"):
        quality_control(X, checks=image_checks(imgs[:79]))


def test_turned_copies_the_space_keeps_apart_are_found_by_their_upright_thumbnails():
    # A short training may not put a turned copy among its original's k nearest: the upright thumbnails
    # (one fixed orientation for all 8 turns and flips) still make them candidates, and the colour
    # thumbnails confirm them.
    from medcne.curate.images import upright

    imgs = blocky_images(80)
    turns = {60: np.rot90(imgs[5]), 61: imgs[9][::-1], 62: np.rot90(imgs[12], 2), 63: np.rot90(imgs[20][:, ::-1])}
    for i, img in turns.items():
        imgs[i] = img
    checks = image_checks(imgs)
    rows = upright(checks.thumbnails)
    assert rows.shape == (80, 49)
    for copy, original in zip(turns, (5, 9, 12, 20), strict=True):
        np.testing.assert_allclose(rows[copy], rows[original], atol=1e-6)
    X = np.random.default_rng(1).normal(size=(80, 4)).astype(np.float32)  # a space blind to the copies
    nb = nearest_neighbours(X, 5)
    assert not any(original in nb.indices[copy] for copy, original in zip(turns, (5, 9, 12, 20), strict=True))
    result = quality_control(X, checks=checks, neighbours=nb)
    assert {tuple(p) for p in result.duplicate_pairs()} == {(5, 60), (9, 61), (12, 62), (20, 63)}
    assert result.duplicate_distance[[60, 61, 62, 63]].max() < 1e-6


def test_too_few_classes_for_the_labels_is_one_line_naming_n_classes():
    X = np.random.default_rng(0).normal(size=(30, 5))
    with pytest.raises(MedcneError, match=r"^`n_classes` is 2, but the labels hold class 2; give the number"):
        quality_control(X, np.repeat([0, 1, 2], 10), k=5, n_classes=2)
