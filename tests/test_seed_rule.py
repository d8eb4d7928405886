"""One rule for seeds, from 0 to 2**32 - 1: the estimator, the readers, the baselines, the sweep and
the command line all hold a seed to it, so a seed that one of them takes is never refused (or
crashed on, as numpy's RandomState under openTSNE did) by another."""

from __future__ import annotations

import numpy as np
import pytest

from medcne import TSimCNE
from medcne.baselines import embed_baseline
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH, from_array, load_dataset
from medcne.datasets.seeds import SEED_MAX, check_seed, seed_ok
from medcne.errors import MedcneError
from medcne.sweep.config import parse_seeds

TOO_BIG = SEED_MAX + 1


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
])
def test_every_entry_refuses_a_seed_past_the_largest_with_one_rule(give):
    with pytest.raises(MedcneError, match="4294967295"):
        give(TOO_BIG)
    with pytest.raises(MedcneError):
        give(-1)


def test_the_largest_seed_is_taken_by_the_readers_and_the_sweep():
    assert len(load_dataset(SAMPLE_PATH, subset=10, seed=SEED_MAX)) == 10
    assert parse_seeds([0, SEED_MAX]) == (0, SEED_MAX)


def test_the_command_line_names_its_option(capsys):
    assert main(["info", str(SAMPLE_PATH), "--subset", "10", f"--seed={TOO_BIG}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seed must be an integer from 0 to 4294967295" in err[0], err
