"""`medcne plot RUN --placed FILE`: the images `medcne embed` placed into a map, drawn over it."""

import numpy as np
import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.embedfile import read_placed, save_embedding_file
from medcne.plot import class_colors, new_figure, plot_map, plot_placed
from medcne.runs import read_run, write_embedding


@pytest.fixture
def run(tmp_path):
    return read_run(make_run(tmp_path / "run", n=120))


def placed_file(path, run, n=10, labels=True):
    """What `medcne embed` writes for ``n`` images placed near the map's first ones (same classes)."""
    Z = np.asarray(run.embedding)[:n] + 0.5
    ids = np.array([f"new{i}" for i in range(n)])
    return save_embedding_file(path, Z, ids, run.labels[:n] if labels else None,
                               run.class_names if labels else None)


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_placed_points_are_read_with_their_class_names(tmp_path, run, suffix):
    Z, names, _ = read_placed(placed_file(tmp_path / f"new{suffix}", run))
    assert Z.shape == (10, 2) and np.allclose(Z, np.asarray(run.embedding)[:10] + 0.5, atol=1e-4)
    assert list(names) == [run.class_names[k] for k in run.labels[:10]]
    assert read_placed(placed_file(tmp_path / f"bare{suffix}", run, labels=False))[1] is None


def test_placed_points_are_drawn_over_the_map_in_their_class_colours(tmp_path, run):
    Z, names, _ = read_placed(placed_file(tmp_path / "new.csv", run))
    ax = plot_map(np.asarray(run.embedding), run.labels, run.class_names, ax=new_figure(6, 5).add_subplot())
    plot_placed(ax, Z, names, run.class_names)
    drawn = ax.collections[-1]
    assert np.allclose(drawn.get_offsets(), Z)
    colours = class_colors(len(run.class_names))[run.labels[:10]]
    assert np.allclose(drawn.get_facecolors(), colours) and np.allclose(drawn.get_edgecolors()[:, :3], 0)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[-1] == "placed images (10)" and len(texts) == len(np.unique(run.labels)) + 1


def test_plot_placed_writes_the_figure(tmp_path, run, capsys):
    for name in ("new.csv", "new.npz"):
        placed = placed_file(tmp_path / name, run)
        out = tmp_path / f"{name}.png"
        assert main(["plot", str(run.path), "--placed", str(placed), "--out", str(out)]) == 0
        assert out.stat().st_size > 1000 and f"wrote {out}" in capsys.readouterr().out


@pytest.mark.parametrize("case, match", [
    ("thumbnails", "--placed draws over --kind map only"),
    ("missing", "no such file"),
    ("3d", "its points have 3 dimensions, the map of"),
    ("text", "line 3: x, y must be numbers"),
    ("nan", "1 points are not finite"),
    ("nocolumns", "needs the columns x and y"),
    ("txt", "ends in .csv or .npz"),
    ("short", "line 3 has 2 values but the header has 4 columns"),
    ("latin1", "new.csv"),
])
def test_bad_placed_files_are_one_line_and_nothing_is_written(tmp_path, run, capsys, case, match):
    path = tmp_path / "new.csv"
    rows = {"3d": "x,y,z,label,id\n1,2,3,,a\n", "text": "x,y,label,id\n1,2,,a\none,2,,b\n",
            "nan": "x,y,label,id\n1,nan,,a\n2,2,,b\n", "nocolumns": "a,b\n1,2\n",
            "short": "x,y,label,id\n1,2,basophil,a\n3,4\n"}
    if case in rows:
        path.write_text(rows[case])
    elif case == "latin1":
        path.write_bytes("x,y,label,id\n1,2,\u00e9,a\n".encode("latin-1"))
    elif case == "thumbnails":
        placed_file(path, run)
    elif case == "txt":
        path = tmp_path / "new.txt"
        path.write_text("x,y\n1,2\n")
    argv = ["plot", str(run.path), "--placed", str(path), "--out", str(tmp_path / "fig.png")]
    assert main(argv + (["--kind", "thumbnails"] if case == "thumbnails" else [])) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "fig.png").exists()


def test_blank_lines_and_spaces_around_labels_are_read_as_evaluate_reads_them(tmp_path, run):
    name = run.class_names[run.labels[0]]
    (tmp_path / "new.csv").write_text(f"x,y,label,id\n\n1,2, {name} ,a\n\n")
    Z, names, _ = read_placed(tmp_path / "new.csv")
    ax = plot_map(np.asarray(run.embedding), run.labels, run.class_names, ax=new_figure(6, 5).add_subplot())
    plot_placed(ax, Z, names, run.class_names)
    assert len(Z) == 1 and np.allclose(ax.collections[-1].get_facecolors(), class_colors(len(run.class_names))[run.labels[0]])


@pytest.fixture
def drawn(monkeypatch):
    """The figure `medcne plot` saves (written as usual)."""
    import medcne.plot

    seen, save = {}, medcne.plot.save_figure

    def spy(fig, path):
        seen["fig"] = fig
        return save(fig, path)

    monkeypatch.setattr(medcne.plot, "save_figure", spy)
    return seen


def test_placed_points_take_the_colours_of_the_categories_the_map_is_coloured_by(tmp_path, run, drawn):
    placed = placed_file(tmp_path / "new.csv", run)
    assert main(["plot", str(run.path), "--placed", str(placed), "--color-by", "label",
                 "--out", str(tmp_path / "f.png")]) == 0
    ax = drawn["fig"].axes[0]
    cats = sorted(set(run.class_names[k] for k in run.labels))
    colours = class_colors(len(cats))[[cats.index(run.class_names[k]) for k in run.labels[:10]]]
    assert np.allclose(ax.collections[-1].get_facecolors(), colours)


def test_a_3d_map_is_drawn_as_three_panels_with_the_placed_points_in_each(tmp_path, run, drawn):
    Z3 = np.c_[np.asarray(run.embedding), np.arange(len(run.ids), dtype=float)]
    write_embedding(run.path, Z3, run.ids, run.labels, run.class_names)
    placed = save_embedding_file(tmp_path / "new.csv", Z3[:4] + 0.5, ["n0", "n1", "n2", "n3"])
    assert main(["plot", str(run.path), "--placed", str(placed), "--out", str(tmp_path / "f.png")]) == 0
    panels = [ax for ax in drawn["fig"].axes if ax.collections]
    assert len(panels) == 3
    for ax, (a, b) in zip(panels, ((0, 1), (0, 2), (1, 2)), strict=True):
        assert np.allclose(ax.collections[-1].get_offsets(), Z3[:4][:, [a, b]] + 0.5, atol=1e-4)
    assert "3-D map" in drawn["fig"]._suptitle.get_text()
    two_d = placed_file(tmp_path / "two.csv", read_run(make_run(tmp_path / "flat", n=50)))
    assert main(["plot", str(run.path), "--placed", str(two_d), "--out", str(tmp_path / "g.png")]) == 2


def test_an_npz_placed_into_another_map_is_refused(tmp_path, capsys):
    S = make_run.__globals__["SAMPLE_PATH"]
    a = tmp_path / "a"
    assert main(["fit", str(S), "--out", str(a), "--subset", "40", "--size", "16", "--epochs", "1,0,1", "--warmup",
                 "0,0,0", "--width", "4", "--batch-size", "16", "--device", "cpu"]) == 0
    new = tmp_path / "new.npz"
    assert main(["embed", str(a), str(S), "--subset", "20", "--seed", "3", "--out", str(new)]) == 0
    assert read_placed(new)[2]["placed_into"] == str(a.resolve())
    assert main(["plot", str(a), "--placed", str(new), "--out", str(tmp_path / "a.png")]) == 0
    capsys.readouterr()
    b = make_run(tmp_path / "b", n=40)
    assert main(["plot", str(b), "--placed", str(new), "--out", str(tmp_path / "b.png")]) == 2
    assert f"placed into the map of {a.resolve()}" in capsys.readouterr().err
    r = read_run(a)  # the run made again: another map
    write_embedding(a, np.asarray(r.embedding) + 1, r.ids, r.labels, r.class_names)
    assert main(["plot", str(a), "--placed", str(new), "--out", str(tmp_path / "c.png")]) == 2
    assert "was made again since" in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists() and not (tmp_path / "c.png").exists()


def test_a_provenance_column_named_z_is_no_coordinate_of_a_2d_map(tmp_path, run):
    Z = np.asarray(run.embedding)[:5]
    path = save_embedding_file(tmp_path / "new.csv", Z, [f"n{i}" for i in range(5)],
                               provenance={"z": np.arange(5.0)})
    assert read_placed(path)[0].shape == (5, 2)
