"""What the API reference (docs/api.md, the docstrings it shows) tells a Python user is there and holds:
the functions of run folders it lists, a run read back that gives its model, and the seeding
that ``random_state`` and docs/promises.md describe."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest

from medcne import TSimCNE
from medcne.datasets import from_array

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api.md"


def documented() -> list[str]:
    """The objects api.md renders (its ``::: module.name`` lines)."""
    return re.findall(r"^::: ([\w.]+)\s*$", API.read_text(encoding="utf-8"), re.M)


def test_the_reference_lists_every_function_of_run_folders_a_user_calls():
    listed = {name.rsplit(".", 1)[-1] for name in documented()}
    assert {"fit_run", "resume_run", "read_run", "Run", "load_run_model", "make_baseline", "evaluate_run",
            "evaluate_and_write"} <= listed
    for name in documented():  # each resolves, and to what medcne.runs exports under that name
        module, _, attr = name.rpartition(".")
        try:
            obj = importlib.import_module(name)  # a module itself (::: medcne.plot)
        except ModuleNotFoundError:
            obj = getattr(importlib.import_module(module), attr)
        if module.startswith("medcne.runs."):
            assert getattr(importlib.import_module("medcne.runs"), attr) is obj


def test_a_run_read_back_gives_its_model(tmp_path):
    from medcne.runs import load_run_model, read_run
    from safetyhelpers import make_data, make_run

    run = read_run(make_run(tmp_path / "run", make_data(tmp_path / "data.npz", n=20)))
    est = load_run_model(run)  # the Run itself, as read_run gives it, or its folder
    assert load_run_model(run.path).get_params() == est.get_params()
    np.testing.assert_allclose(est.transform(run.load_images()), run.embedding, atol=1e-5)


def tiny_images(n=20):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    return from_array((rng.integers(0, 120, (n, 8, 8, 3)) + 100 * labels[:, None, None, None]).astype(np.uint8),
                      labels)


@pytest.mark.usefixtures("one_torch_thread")
def test_one_generator_object_gives_two_fits_two_maps():
    def fit(random_state):
        return TSimCNE(epochs=(1, 0, 1), warmup=(0, 0, 0), batch_size=10, width=2, device="cpu", verbose=False,
                       random_state=random_state).fit_transform(tiny_images())

    rng = np.random.default_rng(5)
    first, second = fit(rng), fit(rng)  # its state is used: the second fit draws on from where the first left it
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, fit(np.random.default_rng(5)))  # made alike: the same map
    np.testing.assert_array_equal(fit(7), fit(7))  # an int seeds every fit alike


def test_random_state_says_how_it_seeds_and_what_else_must_be_the_same():
    doc = " ".join(TSimCNE.__doc__.split("random_state :")[1].split("verbose :")[0].split())
    for words in ("np.random.Generator", "the same object passed to two fits", "two different maps",
                  "number of torch threads", "``precision``"):
        assert words in doc, words
