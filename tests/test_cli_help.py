"""Help and errors of the command line: every option explained, required ones marked, `--version`.

Walks the parsers `medcne.cli.build_parser` builds, so a new option without
help text fails here rather than in a user's terminal. Also the one error that
this page of the contract names: a folder of mixed image sizes names a file of
each size.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from medcne import __version__
from medcne.cli import build_parser, main
from medcne.datasets import load_dataset
from medcne.errors import MixedSizeError

# Options a command cannot run without: argparse must say so in the usage (no brackets) and refuse a
# command line without them.
REQUIRED = {
    "embed": ["--out"], "baseline": ["--method", "--out"], "compare": ["--out"], "plot": ["--out"],
    "propagate": ["--labels"],
}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    return [
        (action.option_strings or [action.dest])[-1]
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]


def test_the_walk_sees_every_command_and_would_catch_a_missing_help():
    commands = subcommands()
    assert {"info", "fit", "view", "sweep", "qc", "propagate"} <= set(commands)
    bare = argparse.ArgumentParser()
    bare.add_argument("--thing")
    assert options_without_help(bare) == ["--thing"]


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_of_every_command_has_help(command):
    assert options_without_help(subcommands()[command]) == []


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_required_options_are_marked_required(command, capsys):
    parser = subcommands()[command]
    usage = parser.format_usage()
    for option in REQUIRED[command]:
        action = next(a for a in parser._actions if option in a.option_strings)
        assert action.required, option
        assert f"[{option}" not in usage, usage


def test_fit_out_is_shown_as_required():
    # --out RUN or --resume RUN: one of them, and the usage says so.
    usage = subcommands()["fit"].format_usage()
    assert "(--out RUN | --resume RUN)" in usage and "[--out" not in usage


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"medcne {__version__}"
    assert main(["--version"]) == 0


def test_mixed_size_folder_names_a_file_of_each_size(tmp_path):
    for name, side in (("a/one.png", 28), ("a/two.png", 28), ("b/big.png", 32), ("b/huge.png", 40)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(tmp_path / name)
    with pytest.raises(MixedSizeError) as exc:
        load_dataset(tmp_path)
    message = str(exc.value)
    assert "28x28 (e.g. " in message and "32x32 (e.g. " in message and "40x40 (e.g. " in message
    assert "one.png" in message and "big.png" in message and "huge.png" in message
    assert "two.png" not in message  # one example per size, not every file
    assert "`size`" in message  # the Python parameter; the command line names --size (below)


def test_mixed_size_error_is_one_line_on_the_command_line(tmp_path, capsys):
    for name, side in (("a/one.png", 28), ("a/big.png", 32)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / name)
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "big.png" in err and "one.png" in err and "--size" in err
