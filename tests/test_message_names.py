"""Library errors name Python parameters (`out`); the command line shows them as its options (--out).

A message raised outside ``medcne.cli`` that printed ``--overwrite`` told a
Python user about an option they do not have. The library writes the
parameter in backticks and :func:`medcne.params.for_cli` turns it into the
option on the command line. Commands quoted whole in backticks
(```medcne fit --resume RUN```) are what to run in a shell, for either user.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from medcne.cli import main
from medcne.errors import MedcneError
from medcne.params import flag, for_cli
from medcne.runs import staging

SRC = Path(__file__).resolve().parents[1] / "src" / "medcne"
SAMPLE = SRC / "datasets" / "data" / "bloodmnist_sample.npz"
# torchrun's own options, in the messages of joining its process group: no medcne parameter sets them.
LAUNCHER_OPTIONS = ("--nproc-per-node", "--rdzv-endpoint")
BARE_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def raised_messages(source: str) -> list[tuple[int, str]]:
    """(line, the string parts of the exception) of each ``raise`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            parts = [n.value for n in ast.walk(node.exc) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            found.append((node.lineno, "".join(parts)))
    return found


def bare_flags(message: str) -> list[str]:
    """The options a message names outside a command quoted in backticks."""
    outside = re.sub(r"`[^`]*`", "", message)
    return [f for f in BARE_FLAG.findall(outside) if f not in LAUNCHER_OPTIONS]


def test_library_errors_name_parameters_not_options():
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {flags}"
        for path in sorted(SRC.rglob("*.py")) if "cli" not in path.relative_to(SRC).parts
        for line, message in raised_messages(path.read_text(encoding="utf-8"))
        if (flags := bare_flags(message))
    ]
    assert not offenders, "\n".join(offenders)


UNQUOTED = re.compile(r"(?<![`\w.(])([a-z][a-z0-9_]*)(?: must\b|=)")
# Words that are also the name of an option but mean something else in these messages.
OTHER_MEANING = {
    ("curate/qc.py", "labels"), ("datasets/imageset.py", "labels"), ("plot/maps.py", "labels"),  # arrays
    ("plot/maps.py", "values"),  # an array, not the --values CSV of `medcne plot`
    ("datasets/window.py", "width"),  # the intensity window's width, not the network's
    ("viewer/sprites.py", "size"),  # a thumbnail's size in pixels, not the images' --size
}


def unquoted_parameters(message: str) -> list[str]:
    """Parameters with an option that a message names without backticks ("subset must", "size=")."""
    outside = re.sub(r"`[^`]*`", "", message)
    return [m.group(1) for m in UNQUOTED.finditer(outside) if flag(m.group(1))]


def test_library_errors_quote_the_parameters_the_command_line_has_options_for():
    # Unquoted, the command line cannot show its option: "subset must be ..." instead of "--subset must be ...".
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {names}"
        for path in sorted(SRC.rglob("*.py")) if "cli" not in path.relative_to(SRC).parts
        for line, message in raised_messages(path.read_text(encoding="utf-8"))
        if (names := [n for n in unquoted_parameters(message)
                      if (str(path.relative_to(SRC)), n) not in OTHER_MEANING])
    ]
    assert not offenders, "\n".join(offenders)


def test_the_check_finds_an_option_in_a_library_error():
    # The check itself, on the kind of line it guards against (planted as it was before).
    planted = 'raise MedcneError(f"--out {out} exists; pass --overwrite to replace it")'
    assert bare_flags(raised_messages(planted)[0][1]) == ["--out", "--overwrite"]
    assert bare_flags("continue with `medcne fit --resume RUN`") == []
    assert unquoted_parameters("subset=5 is larger; subset must be positive; `size` must be") == ["subset", "subset"]
    assert unquoted_parameters("torch.Generator(device=x); `generator` must be") == []


def test_each_parameter_a_library_error_names_has_its_option():
    # Any backticked parameter of a message that has an option is shown as that option; a name without
    # one (a Python-only argument such as `generator`) stays as it is.
    assert for_cli("`out` x exists; pass `overwrite` to replace it") == "--out x exists; pass --overwrite to replace it"
    assert for_cli("pass `force`; lower `min_tissue`; `tile_size` 96; `label_csv` f") == \
        "pass --force; lower --min-tissue; --tile-size 96; --label-csv f"
    assert for_cli("`generator` must be a torch.Generator") == "`generator` must be a torch.Generator"
    for name in ("out", "overwrite", "force", "skip_bad", "window", "split", "nproc", "presets", "data_dir"):
        assert flag(name) == "--" + name.replace("_", "-"), name


# Parameters that library errors name and that no command sets: the command line never reaches
# these messages, so they keep the Python name. A new name here must be one no option sets.
PYTHON_ONLY = {
    "batch": "a batch of images handed to the augmenter",
    "engine": "the augmenter's kernel choice",
    "generator": "a torch.Generator of the augmenter",
    "data_spec": "make_baseline's reading options (the command line sets each by its own option)",
    "fit_run": "the Python call that a Python user's hint names (the command line's names the command)",
    "images": "the array handed to border_colour",
    "indices": "ImageSet.take's positions or mask",
    "n_classes": "curate.quality_control's number of classes (qc takes the run's)",
    "store_parts": "load_dataset's parts of a store, which a run records and no option sets",
    "test_size": "metrics.knn_accuracy's split",
}


def backticked_without_option() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        if "cli" in path.parts or "node_modules" in path.parts:
            continue
        for _, message in raised_messages(path.read_text(encoding="utf-8")):
            for name in re.findall(r"`([a-z][a-z0-9_]*)`", message):
                if flag(name) is None:
                    found.setdefault(name, set()).add(str(path.relative_to(SRC)))
    return found


def test_every_parameter_a_library_error_names_has_an_option_or_is_python_only():
    # `fill` was missing: augment-preview printed "`fill` must be ..." to a command-line user.
    unknown = {k: v for k, v in backticked_without_option().items() if k not in PYTHON_ONLY}
    assert not unknown, f"give these an option in params.OTHER_FLAGS, or list them as Python-only: {unknown}"


def test_a_python_caller_is_told_the_parameter_and_the_command_line_its_option(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(MedcneError, match=r"^`out` .*mine holds files medcne did not write .* even with `overwrite`"):
        staging.check(out, True, option="overwrite")
    # The command line checks --out with the same function before it reads the data.
    assert main(["fit", str(tmp_path / "data.npz"), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "error: --out " in err and "even with --overwrite" in err and "`" not in err, err


@pytest.mark.parametrize("call, words", [
    (lambda: __import__("medcne.datasets").datasets.load_dataset(SAMPLE, subset=10, seed=-1),
     "`seed` must be an integer from 0 to 4294967295; got -1"),
    (lambda: __import__("medcne.datasets").datasets.load_dataset(SAMPLE, subset=10, seed=1.5),
     "`seed` must be an integer from 0 to 4294967295; got 1.5"),
    (lambda: __import__("medcne.datasets").datasets.load_dataset(SAMPLE, size=16.5),
     "`size` must be a positive integer or HxW such as 28x32 (in Python also a (height, width) pair); got 16.5"),
    (lambda: __import__("medcne.runs").runs.resume_run("no-run", lr="abc"), "`lr` of a resume must be a positive number, the new peak rate; got 'abc'"),
    (lambda: __import__("medcne").TSimCNE(epochs=(1, 1, 1.5)).validate(np.zeros((4, 8, 8, 3), np.uint8)),
     "`epochs` must be 3 non-negative integers, e.g. 1000,50,450; got (1, 1, 1.5)"),  # was cut to 1 epoch
])
def test_python_callers_get_the_parameter_named_not_numpys_error(call, words):
    # numpy's "expected non-negative integer", "'float' object is not iterable" and float("abc") named nothing.
    with pytest.raises(MedcneError) as caught:
        call()
    assert str(caught.value) == words


def test_propagate_names_its_own_parameter_for_a_missing_annotations_file(tmp_path):
    from evalhelpers import make_run
    from medcne.runs import read_run
    from medcne.runs.curate import propagate_run

    run = read_run(make_run(tmp_path / "run", n=20))
    with pytest.raises(MedcneError, match=r"^`labels_csv` .*nosuch.csv: no such file"):
        propagate_run(run, tmp_path / "nosuch.csv", tmp_path / "p.csv")
    assert for_cli("`labels_csv` x.csv: no such file") == "--labels x.csv: no such file"


def _noted(real):
    """load_dataset whose data carry a reader's note that names a parameter (as the slide reader's do)."""
    def load(*args, **kwargs):
        data = real(*args, **kwargs)
        data.notes = [*data.notes, "a.tiff: no tiles (no tissue reaches `min_tissue` 0.5)"]
        return data
    return load


def test_the_notes_fit_and_baseline_print_name_options_on_the_command_line(tmp_path, capsys, monkeypatch):
    import medcne.datasets
    from medcne.datasets import SAMPLE_PATH
    from medcne.params import speak_as_cli
    from medcne.runs import tsimcne

    monkeypatch.setattr(medcne.datasets, "load_dataset", _noted(medcne.datasets.load_dataset))
    assert main(["baseline", str(SAMPLE_PATH), "--method", "tsne-pixels", "--subset", "60",
                 "--out", str(tmp_path / "run")]) == 0
    assert "note: a.tiff: no tiles (no tissue reaches --min-tissue 0.5)" in capsys.readouterr().out
    data = medcne.datasets.load_dataset(SAMPLE_PATH, subset=20)
    speak_as_cli(False)  # the Python API names the parameter
    tsimcne._note_data(data, verbose=True)
    assert "reaches `min_tissue` 0.5" in capsys.readouterr().out
    speak_as_cli(True)
    try:
        tsimcne._note_data(data, verbose=True)
    finally:
        speak_as_cli(False)
    assert "reaches --min-tissue 0.5" in capsys.readouterr().out


@pytest.mark.parametrize("typed", ["0", "1e400", "abc", "-1"])
def test_a_resume_lr_refused_is_quoted_as_typed(tmp_path, capsys, typed):
    # the parsed value read "got 0.0" for 0 and "got inf" for 1e400
    assert main(["fit", "--resume", str(tmp_path / "run"), f"--lr={typed}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(f"--lr of a resume must be a positive number, the new peak rate; "
                                             f"got {typed}"), err
