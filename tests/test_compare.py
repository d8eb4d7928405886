import csv
import json
import shutil

import numpy as np
import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.datasets import SAMPLE_PATH
from medcne.errors import MedcneError
from medcne.metrics import knn_accuracy
from medcne.runs import read_run
from medcne.runs.compare import collect, compare, short_names, to_markdown


@pytest.fixture
def two_datasets(tmp_path):
    other = tmp_path / "data" / "other.npz"
    other.parent.mkdir()
    shutil.copy(SAMPLE_PATH, other)
    runs = [
        make_run(tmp_path / "a", n=150, method="tsne-pixels"),
        make_run(tmp_path / "b", n=150, method="tsimcne", noise=0.5),
        make_run(tmp_path / "c", n=150, method="tsne-pixels", data_path=other),
    ]
    (runs[0] / "metrics.json").write_text(json.dumps({"knn_accuracy": 12.5, "silhouette": 0.25,
                                                      "neighbour_preservation": 0.5}))
    return runs


def test_rows_use_metrics_json_and_compute_what_is_missing(two_datasets):
    rows = collect([read_run(r) for r in two_datasets])
    assert [r.method for r in rows] == ["tsne-pixels", "tsimcne", "tsne-pixels"]
    assert rows[0].metrics == {"knn_accuracy": 12.5, "silhouette": 0.25, "neighbour_preservation": 0.5}
    b = read_run(two_datasets[1])
    assert rows[1].metrics["knn_accuracy"] == knn_accuracy(b.embedding, b.labels)
    assert "neighbour_preservation" not in rows[1].metrics
    assert rows[0].dataset != rows[2].dataset


def test_report_files_group_datasets_as_columns(two_datasets, tmp_path, capsys):
    assert main(["compare", *map(str, two_datasets), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report.md").read_text()
    with open(tmp_path / "report.csv", newline="") as fh:
        table = list(csv.reader(fh))
    header = table[0]
    assert header[0] == "method" and len(header) == 1 + 2 * 4  # two datasets x (three metrics, labels)
    assert [row[0] for row in table[1:]] == ["tsne-pixels", "tsimcne"]
    assert float(table[1][1]) == 12.5 and table[1][3] == "0.5"
    assert table[2][4] == "" and table[2][5:] == ["", "", "", ""]  # own labels; no run on the second dataset
    assert "| tsne-pixels | 12.5 | 0.250 | 0.500 |" in md and "–" in md
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().out


def test_one_dataset_table_and_twin_methods(tmp_path):
    a = make_run(tmp_path / "seed0", n=150, method="tsimcne")
    b = make_run(tmp_path / "seed1", n=150, method="tsimcne", noise=1.0)
    paths = compare([a, b], tmp_path / "r.md")
    md = paths["md"].read_text()
    assert md.startswith("Dataset: bloodmnist_sample [subset 150, seed 0] (150 images)")
    assert "| method | kNN accuracy (%) | silhouette | neighbourhood preservation |" in md
    assert "tsimcne (seed0)" in md and "tsimcne (seed1)" in md
    assert sorted(p.name for p in tmp_path.glob("r.*")) == ["r.csv", "r.md", "r.png"]


def test_runs_named_alike_keep_a_row_each_named_by_the_end_of_their_paths(tmp_path):
    """A user probe: the cells of a sweep all end in seedS, so `compare SWEEP/DATA/*/seed0` kept one row of
    two t-SimCNE cells (the last won) and titled the panels alike; and one run given twice is refused."""
    a = make_run(tmp_path / "sw" / "simclr" / "seed0", n=150, method="tsimcne")
    b = make_run(tmp_path / "sw" / "rotate" / "seed0", n=150, method="tsimcne", noise=1.0)
    c = make_run(tmp_path / "old" / "rotate" / "seed0", n=150, method="tsimcne", noise=2.0)
    rows = collect([read_run(r) for r in (a, b, c)])
    assert [r.method for r in rows] == ["tsimcne (simclr/seed0)", "tsimcne (sw/rotate/seed0)",
                                        "tsimcne (old/rotate/seed0)"]
    md = compare([a, b, c], tmp_path / "r.md")["md"].read_text()
    assert all(name in md for name in ("| tsimcne (simclr/seed0) |", "| tsimcne (sw/rotate/seed0) |"))
    with pytest.raises(MedcneError, match="given twice"):
        collect([read_run(a), read_run(tmp_path / "sw" / "simclr" / ".." / "simclr" / "seed0")])


def test_short_names_disambiguate():
    names = short_names(["/x/a/data.npz", "/x/b/data.npz", "/y/other.npz"])
    assert list(names.values()) == ["a/data", "b/data", "other"]


def test_markdown_with_unlabeled_run(tmp_path):
    rows = collect([read_run(make_run(tmp_path / "u", n=120, labeled=False))])
    assert "| fake | – | – | – |" in to_markdown(rows)


def test_errors(tmp_path, capsys):
    with pytest.raises(MedcneError):
        collect([])
    assert main(["compare", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "no such run folder" in capsys.readouterr().err


# -- medcne plot ---------------------------------------------------------------------

def test_cli_plot_kinds(tmp_path, two_datasets):
    run = two_datasets[1]
    for kind, name in [("map", "m.png"), ("thumbnails", "t.svg"), ("compare", "c.pdf")]:
        runs = map(str, two_datasets) if kind == "compare" else [str(run)]
        assert main(["plot", *runs, "--kind", kind, "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).stat().st_size > 1000
    assert main(["plot", str(run), str(run), "--out", str(tmp_path / "x.png")]) == 2


def test_cli_plot_color_by_csv_column(tmp_path, capsys):
    from medcne.cli import plot as plot_cli

    run = make_run(tmp_path / "run", n=100)
    r = read_run(run)
    (tmp_path / "meta.csv").write_text("id,site,score\n" + "".join(
        f"{i},{'AB'[n % 2]},{n / 10}\n" for n, i in enumerate(r.ids[:90])))
    site = plot_cli.read_values(r, "site", tmp_path / "meta.csv")
    assert site.dtype.kind == "U" and list(site[:3]) == ["A", "B", "A"] and site[95] == ""
    score = plot_cli.read_values(r, "score", tmp_path / "meta.csv")
    assert score[10] == 1.0 and np.isnan(score[95])
    assert plot_cli.read_values(r, "label", None)[0] == r.class_names[r.labels[0]]  # embedding.csv
    assert main(["plot", str(run), "--color-by", "score", "--values", str(tmp_path / "meta.csv"),
                 "--out", str(tmp_path / "s.png")]) == 0
    assert main(["plot", str(run), "--color-by", "age", "--values", str(tmp_path / "meta.csv"),
                 "--out", str(tmp_path / "s.png"), "--overwrite"]) == 2
    assert "'age'" in capsys.readouterr().err


def test_a_run_evaluated_on_other_labels_says_so_in_metrics_and_in_the_report(tmp_path, capsys):
    """`medcne evaluate --labels-map` rewrites the run's metrics.json: the file and a later compare say
    which labels scored it, so 2-class and 8-class scores are not read side by side unawares."""
    a = make_run(tmp_path / "a", n=150, method="tsne-pixels")
    b = make_run(tmp_path / "b", n=150, method="tsimcne")
    two = tmp_path / "two.csv"
    two.write_text("old,new\nbasophil,basophil\n*,other\n")
    assert main(["evaluate", str(b), "--labels-map", str(two), "--no-preservation"]) == 0
    labels = json.loads((b / "metrics.json").read_text())["labels"]
    assert labels == {"classes": 2, "changed": ["labels mapped: 8 classes -> 2"]}
    paths = compare([a, b], tmp_path / "r")
    md = paths["md"].read_text()
    assert "Scored on other labels than the runs' own" in md
    assert "- tsimcne: 2 classes (labels mapped: 8 classes -> 2)" in md and "- tsne-pixels" not in md
    import csv

    table = {row["method"]: row for row in csv.DictReader(paths["csv"].open())}  # the CSV alone says it too
    labels = next(k for k in table["tsimcne"] if k.endswith(":labels"))
    assert table["tsimcne"][labels] == "2 classes (labels mapped: 8 classes -> 2)" and table["tsne-pixels"][labels] == ""
    # evaluated again on its own labels: the record goes
    assert main(["evaluate", str(b), "--no-preservation"]) == 0
    assert "labels" not in json.loads((b / "metrics.json").read_text())
    assert "Scored on other labels" not in compare([a, b], tmp_path / "r", overwrite=True)["md"].read_text()


def test_a_labels_map_name_the_run_lacks_is_noted_when_scoring(tmp_path):
    from medcne.runs.evaluate import evaluate_run

    run = read_run(make_run(tmp_path / "a", n=150, method="tsimcne"))
    m = evaluate_run(run, labels_map={"basophil": "b", "melanoma": "m", "*": "other"}, preservation=False)
    assert "labels map: 1 name(s) are not classes of this run, left unused: 'melanoma'" in m["notes"]


def test_a_metric_its_evaluation_skipped_stays_empty_and_is_not_scored_on_the_own_labels(tmp_path):
    # Evaluated with every class merged into one: kNN and silhouette skipped (the notes say why).
    # compare used to score them on the run's own labels and print them under "scored on other labels".
    run = make_run(tmp_path / "a", n=150, method="tsne-pixels")
    (run / "metrics.json").write_text(json.dumps({"n_points": 150, "neighbour_preservation": 0.5, "labels": {
        "classes": 1, "changed": ["merged 3 classes"]}, "notes": ["kNN accuracy and silhouette skipped: one class"]}))
    rows = collect([read_run(run)])
    assert rows[0].metrics == {"neighbour_preservation": 0.5}
    never = make_run(tmp_path / "b", n=150, method="tsne-pixels")  # never evaluated: scored here
    assert "knn_accuracy" in collect([read_run(never)])[0].metrics


@pytest.mark.parametrize("value", ["abc", None, [1], True])
def test_a_hand_edited_metric_that_is_not_a_number_is_one_line(tmp_path, capsys, value):
    run = make_run(tmp_path / "a", n=150, method="tsne-pixels")
    (run / "metrics.json").write_text(json.dumps({"knn_accuracy": 12.5, "silhouette": value}))
    code = main(["compare", str(run), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    if value is None:  # JSON null: not computed
        assert code == 0
        return
    assert code == 2 and len(err) == 1 and "metrics.json: damaged (silhouette is" in err[0], err
    assert "medcne evaluate" in err[0] and not list(tmp_path.glob("r.*"))


@pytest.mark.parametrize("out", ["", ".", "/", "..", "x/.."])
def test_a_report_path_without_a_name_is_one_line(tmp_path, capsys, out, monkeypatch):
    run = make_run(tmp_path / "a", n=150, method="tsne-pixels")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(run), "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names no file; give a name such as REPORT" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_panel_titles_fit_their_panels_and_name_differing_presets(tmp_path, monkeypatch):
    """A user probe: with several datasets of long names each title said its dataset and ran into its
    neighbours', and t-SimCNE runs with presets 'none' and 'rotate' were titled alike. Each dataset is
    now named once, left of its row; titles are wrapped to their column; no two texts or panels meet."""
    import medcne.plot

    runs = []
    for name in ("bloodmnist_224_full_resolution_training_split", "dermamnist_binary_melanoma_vs_nevus"):
        data = tmp_path / "data" / f"{name}.npz"
        data.parent.mkdir(exist_ok=True)
        shutil.copy(SAMPLE_PATH, data)
        for preset in ("none", "rotate"):
            run = make_run(tmp_path / name / f"{preset}-augmentations", n=120, method="tsimcne", data_path=data)
            params = json.loads((run / "params.json").read_text())
            (run / "params.json").write_text(json.dumps({**params, "estimator": {"preset": preset}}))
            runs.append(run)
        runs.append(make_run(tmp_path / name / "px", n=120, method="tsne-pixels", data_path=data))
    figures = []
    real = medcne.plot.save_figure
    monkeypatch.setattr(medcne.plot, "save_figure", lambda fig, path: figures.append(fig) or real(fig, path))
    assert main(["plot", *map(str, runs), "--kind", "compare", "--out", str(tmp_path / "c.png")]) == 0
    fig = figures[0]
    axes = fig.axes
    titles = [ax.get_title() for ax in axes]
    assert [" ".join(t.split("\n")[:-1]) for t in titles[:2]] == [  # wrapped: the score on the last line
        "tsimcne (none-augmentations), preset none", "tsimcne (rotate-augmentations), preset rotate"]
    assert titles[2].startswith("tsne-pixels\nkNN") and "bloodmnist" not in "".join(titles)
    label = "bloodmnist_224_full_resolution_training_split [subset 120, seed 0]"
    assert "\n" in axes[0].get_ylabel() and axes[0].get_ylabel().split() != label.split()  # wrapped
    assert "".join(axes[0].get_ylabel().split()) == "".join(label.split()) and not axes[1].get_ylabel()
    fig.canvas.draw()  # where the texts are as drawn (a y label is placed at drawing)
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in axes for t in (ax.title, ax.yaxis.label) if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    panels = [ax.get_window_extent(renderer) for ax in axes]
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for other in boxes[i + 1:]), texts[i].get_text()
        assert not any(box.overlaps(p) for p in panels), texts[i].get_text()


def test_t_simcne_panels_of_one_preset_are_titled_without_it(tmp_path):
    from medcne.runs.compare import panel_maps

    runs = []
    for name in ("a", "b"):
        run = make_run(tmp_path / name, n=120, method="tsimcne")
        params = json.loads((run / "params.json").read_text())
        (run / "params.json").write_text(json.dumps({**params, "estimator": {"preset": "rotate"}}))
        runs.append(run)
    assert [m["title"].split("\n")[0] for m in panel_maps(collect([read_run(r) for r in runs]))] == [
        "tsimcne (a)", "tsimcne (b)"]
