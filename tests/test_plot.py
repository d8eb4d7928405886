import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

from medcne.errors import MedcneError  # noqa: E402
from medcne.plot import class_colors, plot_map, point_style, save_map  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def scatters(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_map_draws_every_point_once_with_class_legend(ax):
    rng = np.random.default_rng(0)
    Z, y = rng.normal(size=(300, 2)), rng.integers(0, 3, 300)
    out = plot_map(Z, y, ["basophil", "eosinophil", "platelet"], ax=ax, title="blood")
    assert out is ax
    (coll,) = scatters(ax)
    assert len(coll.get_offsets()) == 300
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["basophil", "eosinophil", "platelet"]
    assert ax.get_title() == "blood"
    # Each point keeps its class colour although the drawing order is shuffled.
    offsets, colors = np.asarray(coll.get_offsets()), coll.get_facecolors()
    i = int(np.flatnonzero((offsets == Z[5]).all(1))[0])
    np.testing.assert_allclose(colors[i][:3], class_colors(3)[y[5]][:3])


def test_map_legend_lists_only_present_classes(ax):
    Z = np.zeros((4, 2))
    plot_map(Z, np.array([0, 0, 2, 2]), ["a", "b", "c"], ax=ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "c"]


def test_map_numeric_values_get_a_colorbar(ax):
    Z = np.random.default_rng(1).normal(size=(50, 2))
    plot_map(Z, values=np.arange(50.0), ax=ax)
    (coll,) = scatters(ax)
    assert coll.get_array() is not None and len(coll.get_array()) == 50
    assert len(ax.figure.axes) == 2  # map + colour bar
    assert ax.get_legend() is None


def test_map_string_values_are_categories(ax):
    Z = np.random.default_rng(1).normal(size=(6, 2))
    plot_map(Z, values=np.array(["x", "y", "x", "z", "z", "z"]), ax=ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "y", "z"]


def test_unlabeled_map_and_new_figure():
    ax = plot_map(np.random.default_rng(2).normal(size=(20, 2)))
    assert len(scatters(ax)[0].get_offsets()) == 20 and ax.get_legend() is None
    plt.close(ax.figure)


def test_point_style_shrinks_with_n():
    small, large = point_style(1_000), point_style(300_000)
    assert small[0] > 10 * large[0] and small[1] > large[1]
    assert 0 < large[0] and 0.1 < large[1] <= 1


def test_colors_are_distinct():
    for n in (3, 12, 30):
        c = class_colors(n)
        assert c.shape == (n, 4) and len(np.unique(c, axis=0)) == n


@pytest.mark.parametrize("ext", ["png", "pdf", "svg"])
def test_save_map_writes_file_atomically(tmp_path, ext):
    Z, y = np.random.default_rng(0).normal(size=(100, 2)), np.arange(100) % 4
    n_figs = len(plt.get_fignums())
    out = save_map(tmp_path / f"map.{ext}", Z, y, list("abcd"), title="t")
    assert out.exists() and out.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == [f"map.{ext}"]  # no temporary left
    assert len(plt.get_fignums()) == n_figs  # nothing left open in pyplot
    if ext == "png":
        assert out.read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs(tmp_path, ax):
    with pytest.raises(MedcneError, match="N x 2"):
        plot_map(np.zeros((5, 3)), ax=ax)
    with pytest.raises(MedcneError, match="png"):
        save_map(tmp_path / "map.jpg", np.zeros((5, 2)))
    with pytest.raises(MedcneError, match="0..1"):
        plot_map(np.zeros((3, 2)), np.array([0, 1, 2]), ["a", "b"], ax=ax)
