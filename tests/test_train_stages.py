"""Stages as data and the learning-rate schedule."""

import dataclasses

import pytest

from medcne.errors import MedcneError
from medcne.train.stages import (
    Stage,
    default_lr,
    lr_at,
    parse_epochs,
    simclr_stages,
    tsimcne_stages,
)


def test_paper_defaults():
    s1, s2, s3 = tsimcne_stages(lr=default_lr(1024))
    assert [s.epochs for s in (s1, s2, s3)] == [1000, 50, 450]
    assert s1.lr == pytest.approx(0.12) and s2.lr == pytest.approx(0.12) and s3.lr == pytest.approx(1.2e-4)
    assert [s.warmup_epochs for s in (s1, s2, s3)] == [10, 0, 10]
    assert (s1.out_dim, s2.out_dim, s3.out_dim) == (128, 2, 2)
    assert (s1.new_head, s2.new_head, s3.new_head) == (False, True, False)
    assert (s1.train, s2.train, s3.train) == ("all", "last", "all")
    (only,) = simclr_stages(epochs=7, lr=0.1)
    assert only.out_dim == 128 and only.epochs == 7 and only.train == "all"


def test_stage_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        tsimcne_stages()[0].epochs = 3


def test_lr_warmup_then_cosine():
    st = Stage("s", epochs=10, lr=1.0, warmup_epochs=2)
    spe = 5
    lrs = [lr_at(st, k, spe) for k in range(10 * spe)]
    assert lrs[0] == pytest.approx(1.0 / 10)
    assert lrs[9] == pytest.approx(1.0)  # last warm-up step reaches the peak
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10], strict=False))
    after = lrs[10:]
    assert after[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))
    assert lrs[-1] < 0.01
    assert lr_at(st, 10 + 20, spe) == pytest.approx(0.5)  # halfway through the cosine


def test_no_warmup_and_warmup_longer_than_stage():
    assert lr_at(Stage("s", 4, 0.5, 0), 0, 3) == pytest.approx(0.5)
    short = Stage("s", 2, 1.0, warmup_epochs=10)
    assert lr_at(short, 3, 2) == pytest.approx(1.0)  # warm-up capped at the stage


def test_parse_epochs():
    assert parse_epochs("1000,50,450") == (1000, 50, 450)
    assert parse_epochs([1, 0, 2]) == (1, 0, 2)
    for bad in ("1,2", "a,b,c", (1, -1, 2)):
        with pytest.raises(MedcneError, match="epochs"):
            parse_epochs(bad)


def test_bad_stage():
    with pytest.raises(MedcneError, match="lr"):
        Stage("s", 1, 0.0)
    with pytest.raises(MedcneError, match="train"):
        Stage("s", 1, 0.1, train="head")
