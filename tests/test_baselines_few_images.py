"""t-SNE and UMAP refuse too few images with one line, in the library and on the command line."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import random_images
from medcne.baselines import embed_baseline, tsne, umap
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH, from_array
from medcne.errors import MedcneError


@pytest.mark.parametrize("method, n, least", [("tsne-pixels", 1, 2), ("tsne-resnet18", 1, 2),
                                              ("tsne-simclr", 1, 2), ("umap-pixels", 3, 4)])
def test_every_method_refuses_fewer_images_than_its_reducer_maps(method, n, least):
    with pytest.raises(MedcneError, match=rf"needs at least {least} images; got {n}"):
        embed_baseline(from_array(random_images(n)), method, weights=None)


def test_the_reducers_refuse_too_few_points():
    with pytest.raises(MedcneError, match="t-SNE needs at least 2"):
        tsne(np.zeros((1, 5), np.float32))
    with pytest.raises(MedcneError, match="UMAP needs at least 5"):
        umap(np.zeros((4, 5), np.float32), n_components=3)


def test_cli_baseline_of_one_image_is_one_line(tmp_path, capsys):
    out = tmp_path / "b1"
    assert main(["baseline", str(SAMPLE_PATH), "--method", "tsne-pixels", "--subset", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t-SNE needs at least 2 images; got 1" in err[0] and "--subset" in err[0], err
    assert not out.exists()


def test_tsne_of_identical_points_is_one_line_not_a_map_of_nan():
    from medcne.baselines import tsne
    from medcne.errors import MedcneError

    with pytest.raises(MedcneError, match="no finite map of these 50 points"):
        tsne(np.ones((50, 10), np.float32), n_iter=50, n_jobs=1)


def test_a_map_of_too_few_labeled_images_for_knn_is_written_with_a_note(tmp_path, capsys):
    # 12 images of 2 classes: too few for k = 15. The map was trained and then refused with a message
    # naming --k (an option baseline and fit lack), leaving an unfinished run that no command finished.
    data = tmp_path / "few.npz"
    np.savez(data, images=random_images(12), labels=np.repeat([0, 1], 6))
    out = tmp_path / "run"
    assert main(["baseline", str(data), "--method", "tsne-pixels", "--out", str(out)]) == 0, capsys.readouterr().err
    from medcne.runs import read_run

    metrics = read_run(out).metrics  # finished
    assert "knn_accuracy" not in metrics and np.isfinite(metrics["silhouette"]) and metrics["n_labeled"] == 12
    assert any(n.startswith("kNN accuracy skipped: k=15 needs at least 15 training points") for n in metrics["notes"])


def test_evaluate_keeps_refusing_a_k_that_is_not_a_positive_integer(tmp_path):
    from medcne.runs import evaluate_run, make_baseline

    data = tmp_path / "few.npz"
    np.savez(data, images=random_images(12), labels=np.repeat([0, 1], 6))
    run = make_baseline(data, "tsne-pixels", tmp_path / "run")
    assert "knn_accuracy" in evaluate_run(run, k=3)
    for bad in (0, 2.5, True):
        with pytest.raises(MedcneError, match="`k` must be a positive integer"):
            evaluate_run(run, k=bad)
