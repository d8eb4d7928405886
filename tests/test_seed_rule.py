"""One rule for seeds, from 0 to 2**32 - 1: the estimator, the readers, the baselines, the metrics, the
sweep and the command line all hold a seed to it, so a seed that one of them takes is never refused (or
crashed on, as numpy's RandomState under openTSNE did) by another."""

from __future__ import annotations

import numpy as np
import pytest

from medcne import TSimCNE
from medcne.baselines import embed_baseline, tsne
from medcne.baselines.pca import chunked_pca
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH, from_array, load_dataset
from medcne.errors import SEED_MAX, MedcneError, check_seed, seed_ok
from medcne.metrics import knn_accuracy, knn_accuracy_splits, neighbour_preservation
from medcne.sweep.config import parse_seeds

TOO_BIG = SEED_MAX + 1
POINTS = np.random.default_rng(0).normal(size=(40, 2))
LABELS = np.arange(40) % 2


def test_the_largest_seed_is_one_numpy_randomstate_takes():
    np.random.RandomState(SEED_MAX)  # what openTSNE and UMAP seed with
    with pytest.raises(ValueError):
        np.random.RandomState(TOO_BIG)
    assert seed_ok(0) and seed_ok(SEED_MAX) and not seed_ok(TOO_BIG) and not seed_ok(-1)
    assert not seed_ok(True) and not seed_ok(1.0)


@pytest.mark.parametrize("give", [
    lambda seed: TSimCNE(random_state=seed).validate(np.zeros((4, 8, 8, 3), np.uint8)),
    lambda seed: load_dataset(SAMPLE_PATH, subset=10, seed=seed),
    lambda seed: embed_baseline(from_array(np.zeros((4, 8, 8, 3), np.uint8)), "tsne-pixels", seed=seed),
    lambda seed: parse_seeds([0, seed]),
    lambda seed: check_seed(seed, "random_state"),
    lambda seed: load_dataset(SAMPLE_PATH).subset(10, seed=seed),
    lambda seed: knn_accuracy(POINTS, LABELS, seed=seed),
    lambda seed: knn_accuracy_splits(POINTS, LABELS, seed=seed),
    lambda seed: neighbour_preservation(POINTS, POINTS, k=3, n_queries=10, seed=seed),
    lambda seed: tsne(POINTS, seed=seed),
    lambda seed: chunked_pca(from_array(np.zeros((4, 8, 8, 3), np.uint8)), 2, seed=seed),
])
def test_every_entry_refuses_a_seed_past_the_largest_with_one_rule(give):
    with pytest.raises(MedcneError, match="4294967295"):
        give(TOO_BIG)
    with pytest.raises(MedcneError):
        give(-1)


def test_the_largest_seed_is_taken_by_the_readers_the_metrics_and_the_sweep():
    assert len(load_dataset(SAMPLE_PATH, subset=10, seed=SEED_MAX)) == 10
    assert parse_seeds([0, SEED_MAX]) == (0, SEED_MAX)
    # the splits after the first count on from 0 (seed + 1 would be past what scikit-learn takes)
    assert len(knn_accuracy_splits(POINTS, LABELS, seed=SEED_MAX)) == 5
    assert 0 <= neighbour_preservation(POINTS, POINTS, k=3, n_queries=10, seed=SEED_MAX) <= 1


@pytest.mark.parametrize("count", [4294967296, 1001, 0, "1099511627776"])
def test_a_count_of_seeds_is_held_to_a_sweep_s_size_not_built(count):
    with pytest.raises(MedcneError, match="a count N from 1 to 1000"):
        parse_seeds(count)  # tuple(range(2**32)) ran out of memory


def test_the_command_line_names_its_option(capsys):
    assert main(["info", str(SAMPLE_PATH), "--subset", "10", f"--seed={TOO_BIG}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seed must be an integer from 0 to 4294967295" in err[0], err
