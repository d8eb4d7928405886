"""A sweep refuses bad command-line input up front: one line naming the option, exit 2, nothing written.

Before, a sweep made from options named Python parameters (`budget`), ran
cells that could only fail (no epochs, a DICOM window on an npz) after making
its folder, ignored --methods in the shorthand, and said "got None" of --seeds.
"""

from __future__ import annotations

import pytest

from medcne.cli import main
from medcne.datasets import SAMPLE_PATH
from medcne.errors import MedcneError
from medcne.params import for_cli
from medcne.sweep import cells, shorthand
from sweephelpers import fake_cells

S = str(SAMPLE_PATH)


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Cells a sweep would run are fake finished runs: a refusal that is missing fails fast, not after training."""
    return fake_cells(monkeypatch)


def refused(tmp_path, capsys, *options) -> str:
    """Run ``medcne sweep`` into tmp_path/sw; it must exit 2, print one line and write nothing."""
    assert main(["sweep", *options, "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no lock file left
    return err


def test_a_shorthand_cell_error_names_the_option_not_the_parameter():
    config = shorthand(S, {}, ["simclr"], [], 1)
    with pytest.raises(MedcneError) as info:
        cells(config, {"budget": "5x"})
    # Not a config file's error: the command line turns its names into options.
    assert not getattr(info.value, "names_are_keys", False)
    assert for_cli(str(info.value)).startswith("simclr on bloodmnist_sample: --budget must be a duration")


@pytest.mark.parametrize("target", [[S], ["quick", "--data", S]])
def test_a_bad_budget_names_the_option(tmp_path, capsys, target):
    for options in (["--list"], []):
        err = refused(tmp_path, capsys, *target, "--budget", "5x", *options)
        assert "--budget must be a duration" in err and "`" not in err


@pytest.mark.parametrize("target", [[S, "--presets", "none"], ["quick", "--data", S]])
def test_no_epochs_at_all_is_refused_before_the_sweep_folder_is_made(tmp_path, capsys, target):
    err = refused(tmp_path, capsys, *target, "--epochs", "0,0,0")
    assert "epochs are 0 in every stage" in err


@pytest.mark.parametrize("target", [[S, "--presets", "none"], ["quick", "--data", S]])
def test_no_epoch_at_the_maps_dimensions_is_refused_before_the_sweep_folder_is_made(tmp_path, capsys, target):
    # 1,0,0 trains the 128-D stage only: the map would come from the 2-D layer as freshly drawn.
    err = refused(tmp_path, capsys, *target, "--epochs", "1,0,0")
    assert "--epochs 1,0,0 train no stage at the map's 2 dimensions" in err and "e.g. --epochs 1,0,1" in err


def test_a_config_cell_broken_by_a_command_line_value_names_the_option(tmp_path, capsys):
    # One epoch count is good for an annealed run, not for the quick config's three stages: the value
    # is the command line's, so the option is named, not the config key.
    err = refused(tmp_path, capsys, "quick", "--data", S, "--epochs", "0")
    assert "--epochs must be 3 non-negative integers" in err and "`" not in err


def test_a_split_on_data_without_splits_is_refused_before_the_sweep_folder_is_made(tmp_path, capsys):
    from PIL import Image

    for c in "ab":
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "out").mkdir()
    err = refused(tmp_path / "out", capsys, str(tmp_path / "imgs"), "--presets", "none", "--baselines",
                  "tsne-pixels", "--split", "train")
    assert "--split applies only to data that record splits" in err and "`" not in err


@pytest.mark.parametrize("options, said", [
    (["--window", "lung"], "--window applies to DICOM and NIfTI data only"),
    (["--size", "foo"], "--size must be"),
    (["--labels-map", "/no/such/map.csv"], "--labels-map /no/such/map.csv: no such file"),
    (["--merge-rare", "0"], "--merge-rare must be a positive integer"),
])
@pytest.mark.parametrize("target", [[S, "--presets", "none"], ["quick", "--data", S]])
def test_data_options_that_would_fail_every_cell_are_refused_up_front(tmp_path, capsys, target, options, said):
    err = refused(tmp_path, capsys, *target, *options)
    assert said in err and "`" not in err


def test_a_config_files_data_options_are_checked_up_front_and_name_its_keys(tmp_path):
    from medcne.sweep import parse_config

    raw = {"datasets": {"blood": {"path": S, "merge_rare": -3}}, "methods": {"a": {"method": "tsne-pixels"}}}
    config = parse_config(raw, source="my.toml", base=tmp_path)
    with pytest.raises(MedcneError, match=r"my.toml: datasets.blood: `merge_rare` must be") as info:
        cells(config)
    assert info.value.names_are_keys


def test_unknown_methods_or_datasets_are_refused_in_the_shorthand(tmp_path, capsys):
    err = refused(tmp_path, capsys, S, "--methods", "foo")
    assert "--methods: no method 'foo'" in err and "simclr, rot90, rotate" in err
    err = refused(tmp_path, capsys, S, "--datasets", "foo")
    assert "--datasets: no dataset 'foo'" in err and "bloodmnist_sample" in err
    assert "--methods: give names" in refused(tmp_path, capsys, S, "--methods", ",")


def test_methods_pick_some_of_the_shorthands(tmp_path, capsys):
    assert main(["sweep", S, "--methods", "rotate,simclr", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["bloodmnist_sample/rotate/seed0", "bloodmnist_sample/simclr/seed0"]


@pytest.mark.parametrize("target", [[S], ["quick", "--data", S]])
def test_bad_seeds_are_quoted_as_given(tmp_path, capsys, target):
    err = refused(tmp_path, capsys, *target, "--seeds", "x")
    assert "--seeds must be a count N" in err and "got 'x'" in err


def test_a_data_dir_that_is_not_a_folder_is_refused_naming_the_option(tmp_path, capsys):
    err = refused(tmp_path, capsys, "quick", "--data-dir", str(tmp_path / "nowhere"))
    assert "--data-dir" in err and "no such folder" in err


@pytest.mark.parametrize("place", ["DATA/sw", "DATA"])
def test_a_sweep_into_its_dataset_folder_is_refused_before_anything_is_written(tmp_path, capsys, place):
    """A user probe: `sweep DATA --out DATA/sub` wrote sweep.json, cells.csv and the report into the
    dataset folder (each cell was refused) and ended with status 1."""
    import numpy as np
    from PIL import Image

    data = tmp_path / "images"
    for cls in ("a", "b"):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(data / cls / f"{i}.png")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    out = data / "sw" if place == "DATA/sw" else data
    assert main(["sweep", str(data), "--presets", "none", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"--out {out}" in err and "an input of this command" in err, err
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # no lock file, no sweep file
