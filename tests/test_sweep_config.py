"""Sweep configurations: shipped configs, the grid of cells, settings precedence, bad configs -> one line, exit 2."""

from __future__ import annotations

import json

import pytest

from medcne.cli import main
from medcne.datasets import SAMPLE_PATH
from medcne.errors import MedcneError
from medcne.sweep import cells, load_config, parse_config, shipped, shorthand
from medcne.sweep.config import DATA_ENV
from sweephelpers import TINY_SWEEP

TRAINING = {"epochs": [1, 1, 1], "warmup": [0, 0, 0], "width": 4, "batch_size": 16, "device": "cpu"}


def config_text(**extra) -> str:
    return TINY_SWEEP + "".join(extra.values())


def write(tmp_path, text: str):
    path = tmp_path / "sweep.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_configs_are_there_and_load():
    assert {"paper", "quick", "head_init"} <= set(shipped())
    paper = load_config("paper")
    assert list(paper.datasets) == ["leukemia", "bloodmnist", "dermamnist", "pathmnist", "pcam", "cifar10"]
    assert paper.seeds == (0, 1, 2) and len(paper.methods) == 12
    assert paper.datasets["leukemia"].load == {"size": 28, "merge_rare": 100}
    assert paper.datasets["dermamnist"].load["labels_map"].endswith("dermamnist_binary.csv")
    assert paper.datasets["pcam"].training == {"batch_size": 512}
    ablations = {n: m.options for n, m in paper.methods.items() if n.startswith("rotate-no-")}
    assert ablations == {"rotate-no-crop": {"preset": "rotate", "crop": False},
                         "rotate-no-jitter": {"preset": "rotate", "jitter": False},
                         "rotate-no-grayscale": {"preset": "rotate", "grayscale": False}}
    head = load_config("head_init")
    assert {n: m.options["head_init"] for n, m in head.methods.items()} == {"normal": "normal", "uniform": "uniform"}


def test_paper_grid_on_the_data_here(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # a user's folder: the shipped config's labels map lies elsewhere, in medcne
    (tmp_path / "bloodmnist28.npz").write_bytes(SAMPLE_PATH.read_bytes())
    grid = cells(load_config("paper", data_dir=tmp_path), {"device": "cpu"})
    assert len(grid) == 6 * 12 * 3
    # Seed-major: every cell of seed 0 before any of seed 1.
    assert [c.seed for c in grid] == sorted(c.seed for c in grid)
    present = {c.dataset for c in grid if c.data_path is not None}
    assert present == {"bloodmnist"} and grid[12].data_path == tmp_path / "bloodmnist28.npz"
    missing = {c.missing for c in grid if c.missing}
    assert len(missing) == 5 and all("\n" not in m for m in missing)
    assert any(f"medcne fetch dermamnist --root {tmp_path}" in m for m in missing)
    # The paper's schedule for t-SimCNE; SimCLR trains for stage 1's epochs (the paper's 1000).
    cell = next(c for c in grid if c.name == "bloodmnist/rotate/seed2")
    assert cell.options["epochs"] == (1000, 50, 450) and cell.options["random_state"] == 2
    simclr = next(c for c in grid if c.name == "bloodmnist/tsne-simclr-rotate/seed1")
    assert simclr.options["seed"] == 1 and simclr.options["simclr"]["epochs"] == 1000
    assert simclr.options["simclr"]["preset"] == "rotate" and simclr.options["simclr"]["batch_size"] == 1024
    assert next(c for c in grid if c.name == "pcam/simclr/seed0").options["batch_size"] == 512


def test_settings_precedence_command_line_over_method_over_training_over_quick(tmp_path):
    text = config_text(m="\n[methods.uniform]\nmethod = 'tsimcne'\nhead_init = 'uniform'\nwidth = 8\n")
    config = load_config(write(tmp_path, text.replace("width = 4\n", "width = 4\nquick = true\n")))
    by = {c.name: c for c in cells(config)}
    assert by["sample/uniform/seed0"].options["width"] == 8
    assert by["sample/simclr/seed1"].options["width"] == 4
    assert by["sample/simclr/seed1"].options["lr"] == 0.06  # from --quick, not given in the file
    over = {c.name: c for c in cells(config, {"width": 2, "epochs": "2,1,1"})}
    assert over["sample/uniform/seed0"].options["width"] == 2
    assert over["sample/uniform/seed0"].options["epochs"] == (2, 1, 1)
    assert over["sample/uniform/seed0"].options["head_init"] == "uniform"


def test_dataset_paths_resolve_under_data_dir_then_env_then_config_folder(tmp_path, monkeypatch):
    text = "[datasets.d]\npath = ['a.npz', 'b.npz']\n[methods.p]\nmethod = 'tsne-pixels'\n"
    for folder in ("x", "y", "z"):
        (tmp_path / folder).mkdir()
    (tmp_path / "x" / "b.npz").write_bytes(b"")
    (tmp_path / "y" / "a.npz").write_bytes(b"")
    path = tmp_path / "z" / "c.toml"
    path.write_text(text)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "y"))
    config = load_config(path, data_dir=tmp_path / "x")
    assert config.dataset_path(config.datasets["d"]) == tmp_path / "x" / "b.npz"
    config = load_config(path)
    assert config.dataset_path(config.datasets["d"]) == tmp_path / "y" / "a.npz"
    monkeypatch.delenv(DATA_ENV)
    config = load_config(path)
    assert config.dataset_path(config.datasets["d"]) is None and config.data_dir == tmp_path / "z"


def test_shorthand_builds_presets_and_baselines():
    config = shorthand(SAMPLE_PATH, {"subset": 48, "split": None}, ["simclr", "rot90"], ["tsne-pixels"], "3")
    assert list(config.methods) == ["simclr", "rot90", "tsne-pixels"] and config.seeds == (0, 1, 2)
    assert list(config.datasets) == ["bloodmnist_sample"]
    assert config.datasets["bloodmnist_sample"].load == {"subset": 48}


@pytest.mark.parametrize("edit, key", [
    (lambda t: t + "\n[methods.x]\nmethod = 'tsimcne'\npresett = 'rotate'\n", "methods.x.presett: unknown key"),
    (lambda t: t + "\n[methods.x]\nmethod = 'tsne-foo'\n", "methods.x.method: unknown method 'tsne-foo'"),
    (lambda t: t + "\n[methods.x]\nmethod = 'tsimcne'\ndatasets = ['blood']\n", "methods.x.datasets: no dataset 'blood'"),
    (lambda t: t.replace("seeds = 2", "seeds = 2\ndatasets = ['blood']"), "sweep.datasets: no dataset 'blood'"),
    (lambda t: t.replace("seeds = 2", "seeds = 2\nmethods = ['rot']"), "sweep.methods: no method 'rot'"),
    (lambda t: t.replace("seeds = 2", "seeds = 'many'"), "sweep.seeds must be"),
    (lambda t: t.replace("seeds = 2", "seeds = [-1, 2]"), "sweep.seeds must be"),
    (lambda t: t.replace("seeds = 2", "seeds = [0, 4294967296]"), "sweep.seeds must be"),
    (lambda t: t.replace("[training]", "[training]\nepoch = 3"), "training.epoch: unknown key"),
    (lambda t: t.replace("subset = 48", "subset = 48\nlabels = 'x'"), "datasets.sample.labels: unknown key"),
    (lambda t: t.replace('preset = "rotate"', 'preset = "rotation"'), "methods.rotate on sample: `preset` must be"),
    (lambda t: t.replace("width = 4", "width = -4"), "methods.simclr on sample: "),
    (lambda t: t + "\n[colours]\n", "colours: unknown key"),
    (lambda t: t + "\n[methods.'a b']\nmethod = 'tsne-pixels'\n", "methods.a b: a name may hold"),
    (lambda t: t.replace("[methods.simclr]", "[methods.simclr]\nmethod = 'tsimcne'\n"), "not valid TOML"),
])
def test_bad_configs_name_the_key_exit_2_and_run_nothing(tmp_path, capsys, edit, key):
    path = write(tmp_path, edit(config_text()))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err
    assert not out.exists()


def test_a_method_without_method_key_and_a_dataset_without_path(tmp_path):
    with pytest.raises(MedcneError, match="methods.x.method: missing"):
        parse_config({"methods": {"x": {"preset": "rotate"}}}, "c", tmp_path)
    with pytest.raises(MedcneError, match="datasets.d.path: needs a path"):
        parse_config({"datasets": {"d": {"size": 28}}, "methods": {"x": {"method": "tsne-pixels"}}}, "c", tmp_path)


def test_cli_errors_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "out"
    cases = [
        ["sweep", "nope.toml", "--out", str(out)],
        ["sweep", str(tmp_path / "nope.npz"), "--out", str(out)],
        ["sweep", str(SAMPLE_PATH), "--presets", "simclr,rotation", "--out", str(out)],
        ["sweep", "quick", "--out", str(out)],                                  # quick needs --data
        ["sweep", "quick", "--data", str(tmp_path / "missing.npz"), "--out", str(out)],
        ["sweep", "paper", "--subset", "100", "--out", str(out)],              # data options need --data
        ["sweep", "paper", "--methods", "rotate,rot", "--out", str(out)],
        ["sweep", str(SAMPLE_PATH), "--seeds", "0,0", "--out", str(out)],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("medcne sweep: error:"), (argv, err)
    assert not out.exists()


def test_list_shows_cells_and_writes_nothing(tmp_path, capsys):
    path = write(tmp_path, config_text())
    assert main(["sweep", str(path), "--list", "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["sample/simclr/seed0", "sample/rotate/seed0",
                                                   "sample/simclr/seed1", "sample/rotate/seed1"]
    assert all(line.split()[-2:] == ["to", "run"] for line in lines)
    assert not (tmp_path / "out").exists()


def test_cell_spec_is_json_and_names_the_data():
    config = shorthand(SAMPLE_PATH, {"subset": 48}, ["rotate"], [], 1)
    (cell,) = cells(config, {"device": "cpu"})
    spec = cell.spec()
    assert json.loads(json.dumps(spec)) == spec
    assert spec["data"] == {"path": str(SAMPLE_PATH.resolve()), "subset": 48} and spec["kind"] == "tsimcne"
    assert cell.name == "bloodmnist_sample/rotate/seed0"


def test_a_method_kept_for_a_dataset_that_is_not_selected_has_no_cells(tmp_path):
    text = config_text(m="\n[datasets.other]\npath = 'other.npz'\n\n[methods.x]\nmethod = 'tsne-pixels'\n"
                         "datasets = ['other']\n").replace("seeds = 2", "seeds = 2\ndatasets = ['sample']")
    grid = cells(load_config(write(tmp_path, text)))
    assert {c.method for c in grid} == {"simclr", "rotate"} and {c.dataset for c in grid} == {"sample"}


def test_budget_and_precision_reach_every_tsimcne_cell(tmp_path):
    from medcne.defaults import BUDGET_CPU

    config = shorthand(SAMPLE_PATH, {"subset": 48}, ["simclr", "rotate"], [], 1)
    grid = cells(config, {"device": "cpu", "budget": "2m", "precision": "fp32"})
    for cell in grid:
        assert cell.options["budget"] == "2m" and cell.options["precision"] == "fp32"
        # A budget on a CPU starts from the CPU budget settings, not the paper's width 64.
        assert cell.options["width"] == BUDGET_CPU["width"] and cell.options["batch_size"] == BUDGET_CPU["batch_size"]
    text = config_text().replace("[training]", "[training]\nbudget = '90s'")
    assert all(c.options["budget"] == "90s" for c in cells(load_config(write(tmp_path, text))))
    assert main(["sweep", str(write(tmp_path, text.replace("'90s'", "'soon'"))), "--out", str(tmp_path / "o")]) == 2


def test_cpu_cells_follow_the_fit_rule(tmp_path):
    from medcne.defaults import CPU_DEFAULT_BUDGET, PAPER

    config = shorthand(SAMPLE_PATH, {"subset": 48}, ["rotate"], [], 1)
    (cell,) = cells(config, {"device": "cpu"})
    assert cell.options["budget"] == CPU_DEFAULT_BUDGET and cell.options["width"] == 16
    (cell,) = cells(config, {"device": "cpu", "epochs": "3,1,2"})
    assert "budget" not in cell.options or cell.options["budget"] is None
    assert cell.options["width"] == 16  # never the paper's width 64 on a CPU unless asked
    (cell,) = cells(config, {"device": "cpu", "paper": True})
    assert cell.options.get("budget") is None and cell.options["width"] == PAPER["width"]


@pytest.mark.parametrize("where, key, value", [("datasets.blood", "path", 5), ("datasets.blood", "path", [1]),
                                               ("sweep", "data_dir", 5), ("datasets.blood", "fetch", 5)])
def test_a_value_of_the_wrong_type_is_one_line_naming_its_key(tmp_path, where, key, value):
    from medcne.errors import ConfigError
    from medcne.sweep import parse_config

    raw = {"sweep": {}, "datasets": {"blood": {"path": "blood.npz"}}, "methods": {"a": {"method": "tsne-pixels"}}}
    table = raw["sweep"] if where == "sweep" else raw["datasets"]["blood"]
    table[key] = value  # an internal TypeError before
    with pytest.raises(ConfigError, match=rf"^my.toml: {where}.{key}"):
        parse_config(raw, source="my.toml", base=tmp_path)
