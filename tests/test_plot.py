import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

from medcne.errors import MedcneError  # noqa: E402
from medcne.plot import (  # noqa: E402
    class_colors,
    count_thumbnails,
    plot_map,
    plot_thumbnails,
    point_style,
    save_map,
    thumbnail_grid,
)


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


# -- thumbnails ----------------------------------------------------------------

def test_thumbnail_grid_picks_point_nearest_each_cell_centre():
    Z = np.array([[0.0, 0.0], [0.9, 0.9], [0.5, 0.5], [10.0, 10.0], [9.9, 0.1]])
    cells, chosen, (x0, y_top, cell) = thumbnail_grid(Z, grid=2)
    assert cell == 5.0 and (x0, y_top) == (0.0, 10.0)
    got = {tuple(c): int(i) for c, i in zip(cells, chosen, strict=True)}
    # Bottom-left cell (row 1, col 0) holds points 0, 1, 2; its centre (2.5, 2.5) is nearest point 1.
    assert got == {(1, 0): 1, (0, 1): 3, (1, 1): 4}


def test_thumbnails_draw_one_image_per_occupied_cell(ax):
    rng = np.random.default_rng(0)
    Z = np.r_[rng.normal(size=(300, 2)), rng.normal(size=(100, 2)) + [8, 8]]
    imgs = rng.integers(0, 255, (400, 12, 12, 1), dtype=np.uint8)
    cells, chosen, _ = thumbnail_grid(Z, grid=10)
    out = plot_thumbnails(Z, imgs, np.arange(400) % 3, ["a", "b", "c"], grid=10, ax=ax)
    assert out is ax and len(ax.images) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    assert count_thumbnails(ax, side=12) == len(chosen) < 100  # empty cells stay transparent
    canvas = np.asarray(ax.images[0].get_array())
    r, c = cells[0]
    inner = canvas[r * 12 + 1 : r * 12 + 11, c * 12 + 1 : c * 12 + 11, 0]
    np.testing.assert_array_equal(inner, imgs[chosen[0], 1:11, 1:11, 0])  # the image itself, inside its border
    np.testing.assert_array_equal(canvas[r * 12, c * 12, :3], (class_colors(3)[chosen[0] % 3][:3] * 255).astype(np.uint8))


def test_thumbnails_resize_and_errors(ax):
    Z = np.random.default_rng(1).normal(size=(50, 2))
    imgs = np.zeros((50, 96, 96, 3), np.uint8)
    plot_thumbnails(Z, imgs, grid=5, ax=ax)
    assert np.asarray(ax.images[0].get_array()).shape[0] % 64 == 0  # 96 px thumbnails drawn at 64
    with pytest.raises(MedcneError, match="one image per point"):
        plot_thumbnails(Z, imgs[:10], ax=ax)
    with pytest.raises(MedcneError, match="grid"):
        thumbnail_grid(Z, grid=0)


# -- panels ----------------------------------------------------------------------

def test_panels_share_class_colours():
    from medcne.plot import new_figure, plot_panels

    rng = np.random.default_rng(0)
    a = dict(Z=rng.normal(size=(30, 2)), labels=np.zeros(30, int), class_names=["x"], title="A")
    b = dict(Z=rng.normal(size=(20, 2)), labels=np.r_[np.zeros(10, int), np.ones(10, int)],
             class_names=["y", "x"], title="B")
    fig = new_figure(6, 3)
    axes = plot_panels([a, b], fig)
    assert [ax.get_title() for ax in axes] == ["A", "B"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["x", "y"]
    ca = scatters(axes[0])[0].get_facecolors()
    cb = scatters(axes[1])[0].get_facecolors()
    offsets_b = np.asarray(scatters(axes[1])[0].get_offsets())
    is_x_in_b = np.isin(offsets_b[:, 0], b["Z"][10:, 0])  # class "x" is label 1 in map B
    np.testing.assert_allclose(cb[is_x_in_b][0], ca[0])
    assert not np.allclose(cb[~is_x_in_b][0], ca[0])


def test_3d_map_is_three_titled_pairs_of_axes():
    from medcne.plot.maps import new_figure, plot_map_pairs

    rng = np.random.default_rng(0)
    Z, y = rng.normal(size=(120, 3)), rng.integers(0, 2, 120)
    fig = new_figure(16, 6)
    axes = plot_map_pairs(Z, y, ["a", "b"], fig=fig, title="blood")
    assert [ax.get_title() for ax in axes] == ["x / y", "x / z", "y / z"]
    assert fig._suptitle.get_text() == "blood: 3-D map, shown as three pairs of axes"
    for ax, (a, b) in zip(axes, [(0, 1), (0, 2), (1, 2)], strict=True):
        (coll,) = scatters(ax)
        drawn = coll.get_offsets()
        assert len(drawn) == 120
        # Each panel shows its own pair of coordinates (in shuffled drawing order).
        assert sorted(map(tuple, np.asarray(drawn))) == sorted(map(tuple, Z[:, [a, b]]))
    # One legend for the figure's last panel, not three.
    assert [ax.get_legend() is not None for ax in axes] == [False, False, True]


def test_save_map_of_a_3d_map_writes_the_panels(tmp_path):
    Z = np.random.default_rng(1).normal(size=(50, 3))
    out = save_map(tmp_path / "map.png", Z, title="t")
    from PIL import Image

    width, height = Image.open(out).size
    assert width > 2 * height  # three panels side by side, not one square scatter


def test_a_map_of_4_columns_is_refused():
    from medcne.plot.maps import plot_map_pairs

    with pytest.raises(MedcneError, match="N x 3"):
        plot_map_pairs(np.zeros((5, 4)))


@pytest.mark.slow
def test_fit_dim_3_writes_a_3d_map_png(tmp_path):
    """`medcne fit --dim 3` end to end: its map.png is the three titled panels, not a flat scatter."""
    from PIL import Image

    from medcne.cli import main
    from safetyhelpers import TINY, make_data

    data = make_data(tmp_path / "data.npz", n=32)
    assert main(["fit", str(data), "--out", str(tmp_path / "run"), *TINY, "--dim", "3"]) == 0
    width, height = Image.open(tmp_path / "run" / "map.png").size
    assert width > 2 * height
    assert np.load(tmp_path / "run" / "embedding.npz")["embedding"].shape == (32, 3)


def test_characters_the_font_lacks_are_one_note_not_a_warning_each(tmp_path, capsys, recwarn):
    """A user probe: CJK class names printed matplotlib's UserWarning, with a source line, per character."""
    import numpy as np

    from medcne.plot.maps import save_map

    out = save_map(tmp_path / "m.png", np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2,
                   ["中文", "b"])
    assert out.is_file()
    said = capsys.readouterr()
    assert not [w for w in recwarn if "Glyph" in str(w.message)]
    assert said.out.count("note:") == 1 and "has no glyph for '中文'" in said.out, said
