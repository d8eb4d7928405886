"""Every error of the command line is one line on stderr and exit status 2, writes nothing, changes no input.

One table, one row per case of issue 12 (outputs that are inputs, diverged,
unfinished and damaged runs, bad options, paths of the wrong kind, bad CSVs).
Each row runs ``medcne`` in-process and checks: the exit status, exactly one
error line (no usage, no traceback), the words that name the problem, and that
no file under the test's folder (inputs and outputs alike) was created,
changed or removed.
"""

from __future__ import annotations

import argparse
import errno
import shlex
import shutil

import numpy as np
import pytest
import torch

from medcne.cli import main
from medcne.cli.failures import describe
from medcne.io import write_json
from medcne.runs import write_embedding
from medcne.runs.folder import FINISHED, read_json
from safetyhelpers import TINY, error_lines, make_data, make_run, snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FIT = " ".join(TINY)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A folder of inputs: a dataset, a finished run, and runs damaged in every way the table needs."""
    root = tmp_path_factory.mktemp("env")
    data = make_data(root / "data.npz")
    run = make_run(root / "run", data)
    make_data(root / "d2" / "embedding.npz")
    for cls in ("a", "b"):
        (root / "folderdata" / cls).mkdir(parents=True)
        np.save(root / "folderdata" / cls / "not-an-image.npy", np.zeros(1))
    (root / "afile").write_text("a file\n")
    (root / "dir.csv").mkdir()
    (root / "dir.png").mkdir()
    ids = list(np.load(run / "embedding.npz")["ids"][:3])
    (root / "nonutf.csv").write_bytes(b"id,label\n" + ids[0].encode() + b",\xff\xfe\n")
    (root / "ragged.csv").write_text(f"id,label\n{ids[0]},a,extra\n{ids[1]}\n")
    (root / "quote.csv").write_text(f'id,label\n{ids[0]},"unclosed\n{ids[1]},b\n')

    def copy(name):
        return shutil.copytree(run, root / name)

    unfinished = copy("unfinished")
    write_json(unfinished / "params.json", {**read_json(run / "params.json"), FINISHED: False})
    nockpt = copy("nockpt")
    write_json(nockpt / "params.json", {**read_json(run / "params.json"), FINISHED: False})
    z = dict(np.load(run / "embedding.npz"))
    z["embedding"][2, 0] = np.nan
    write_embedding(copy("nanemb"), z["embedding"], z["ids"], z["labels"], z["class_names"])
    state = torch.load(run / "model.pt", weights_only=True)
    state["state_dict"] = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v
                           for k, v in state["state_dict"].items()}
    torch.save(state, copy("nanmodel") / "model.pt")
    (copy("badmodel") / "model.pt").write_bytes(b"not a model")
    # A pickle that torch refuses with weights_only=True (its message advises weights_only=False).
    torch.save({"format": "medcne-model/2", "record": argparse.Namespace(a=1)}, copy("pickled") / "model.pt")
    (copy("badnpz") / "embedding.npz").write_bytes((run / "embedding.npz").read_bytes()[:300])
    (copy("badparams") / "params.json").write_text('{"method": "tsimcne", ')
    (copy("listparams") / "params.json").write_text("[1, 2]")
    (copy("badmetrics") / "metrics.json").write_text("{nan")
    return root


CASES = [
    # -- an output that is, or would replace, an input ------------------------------------
    ("embed-out-is-its-dataset", "embed {run} {data} --out {data} --overwrite", "would replace"),
    ("embed-out-is-a-run-file", "embed {run} {data} --out {run}/embedding.npz --overwrite", "would replace"),
    # A 1-D map trained to the end, then failed to draw, leaving a run no resume could finish.
    ("fit-dim-1", f"fit {{data}} --out {{env}}/d1 --dim 1 {FIT}", "--dim must be an integer >= 2"),
    ("fit-out-holds-its-dataset", f"fit {{env}}/d2/embedding.npz --out {{env}}/d2 --overwrite {FIT}", "would replace"),
    ("fit-out-inside-the-dataset", f"fit {{env}}/folderdata --out {{env}}/folderdata/run {FIT}", "dataset folder"),
    ("baseline-out-is-its-dataset", "baseline {data} --method tsne-pixels --out {data} --force", "data.npz"),
    ("plot-out-is-a-run-file", "plot {run} --out {run}/map.png", "would replace"),
    ("compare-out-hits-a-run-file", "compare {run} --out {run}/embedding", "would replace"),
    ("view-out-is-the-run", "view {run} --out {run}", "would replace"),
    ("view-out-holds-the-run", "view {run} --out {env}", "replaced whole"),
    # -- diverged runs ----------------------------------------------------------------------
    ("evaluate-diverged", "evaluate {env}/nanemb", "diverged"),
    ("plot-diverged", "plot {env}/nanemb --out {env}/p.png", "diverged"),
    ("compare-diverged", "compare {run} {env}/nanemb --out {env}/cmp", "diverged"),
    ("view-diverged", "view {env}/nanemb --out {env}/v", "diverged"),
    ("embed-diverged-model", "embed {env}/nanmodel {data} --out {env}/e.csv", "diverged"),
    # -- unfinished runs --------------------------------------------------------------------
    ("evaluate-unfinished", "evaluate {env}/unfinished", "not a finished run"),
    ("plot-unfinished", "plot {env}/unfinished --out {env}/p.png", "not a finished run"),
    ("embed-unfinished", "embed {env}/unfinished {data} --out {env}/e.csv", "not a finished run"),
    ("compare-unfinished", "compare {run} {env}/unfinished --out {env}/cmp", "not a finished run"),
    ("view-unfinished", "view {env}/unfinished --out {env}/v", "not a finished run"),
    ("resume-nothing-to-resume", "fit --resume {env}/nockpt", "nothing to resume"),
    ("resume-a-finished-run", "fit --resume {run}", "nothing to resume"),
    # -- damaged run files ------------------------------------------------------------------
    ("embed-corrupt-model", "embed {env}/badmodel {data} --out {env}/e.csv", "model.pt"),
    ("embed-pickled-model", "embed {env}/pickled {data} --out {env}/e.csv", "model.pt"),
    ("evaluate-corrupt-embedding", "evaluate {env}/badnpz", "embedding.npz"),
    ("plot-corrupt-params", "plot {env}/badparams --out {env}/p.png", "params.json"),
    ("evaluate-params-not-an-object", "evaluate {env}/listparams", "params.json"),
    ("compare-corrupt-metrics", "compare {env}/badmetrics --out {env}/cmp", "metrics.json"),
    ("resume-corrupt-params", "fit --resume {env}/badparams", "params.json"),
    # -- options ----------------------------------------------------------------------------
    ("fit-warmup-not-numbers", f"fit {{data}} --out {{env}}/new {FIT} --warmup x", "warmup must"),
    ("fit-stage3-factor-negative", f"fit {{data}} --out {{env}}/new {FIT} --stage3-lr-factor -1",
     "--stage3-lr-factor"),
    ("fit-epochs-negative", f"fit {{data}} --out {{env}}/new {FIT} --epochs -1,1,1", "--epochs"),
    ("fit-epochs-negative-with-equals", f"fit {{data}} --out {{env}}/new {FIT} --epochs=-1,1,1", "epochs must"),
    ("fit-preset-unknown", f"fit {{data}} --out {{env}}/new {FIT} --preset foo", "--preset"),
    ("fit-epochs-all-zero", f"fit {{data}} --out {{env}}/new {FIT} --epochs 0,0,0", "e.g. --epochs 12,1,6"),
    ("fit-epochs-no-2d-stage", f"fit {{data}} --out {{env}}/new {FIT} --epochs 1,0,0",
     "--epochs 1,0,0 train no stage at the map's 2 dimensions"),
    ("fit-checkpoint-minutes-negative", f"fit {{data}} --out {{env}}/new {FIT} --checkpoint-minutes -1",
     "--checkpoint-minutes"),
    ("fit-batch-size-not-an-integer", f"fit {{data}} --out {{env}}/new {FIT} --batch-size 1e12", "--batch-size"),
    ("fit-lr-infinite", f"fit {{data}} --out {{env}}/new {FIT} --lr inf", "--lr"),
    ("no-command", "", "COMMAND"),
    # -- paths of the wrong kind ------------------------------------------------------------
    ("fit-out-under-a-file", f"fit {{data}} --out {{env}}/afile/run {FIT}", "afile"),
    ("baseline-out-under-a-file", "baseline {data} --method tsne-pixels --out {env}/afile/run", "afile"),
    ("embed-out-under-a-file", "embed {run} {data} --out {env}/afile/e.csv", "afile"),
    ("plot-out-under-a-file", "plot {run} --out {env}/afile/p.png", "afile"),
    ("compare-out-under-a-file", "compare {run} --out {env}/afile/cmp", "afile"),
    ("fit-out-is-a-file", f"fit {{data}} --out {{env}}/afile --overwrite {FIT}", "is a file"),
    ("embed-out-is-a-folder", "embed {run} {data} --out {env}/dir.csv --overwrite", "folder"),
    ("plot-out-is-a-folder", "plot {run} --out {env}/dir.png", "folder"),
    ("plot-wrong-format", "plot {run} --out {env}/p.txt", ".png"),
    ("embed-wrong-format", "embed {run} {data} --out {env}/e.txt", ".csv"),
    ("info-wrong-format", "info {data} --format csv", ""),
    ("info-unknown-format", "info {data} --format tiff", "--format"),
    # -- CSVs of labels and values ----------------------------------------------------------
    ("evaluate-labels-not-utf8", "evaluate {run} --labels {env}/nonutf.csv --no-preservation", "UTF-8"),
    ("evaluate-labels-ragged", "evaluate {run} --labels {env}/ragged.csv --no-preservation", "values but the header"),
    ("evaluate-labels-bad-quotes", "evaluate {run} --labels {env}/quote.csv --no-preservation", "quot"),
    ("plot-values-not-utf8", "plot {run} --values {env}/nonutf.csv --color-by label --out {env}/p.png", "UTF-8"),
    ("plot-values-ragged", "plot {run} --values {env}/ragged.csv --color-by label --out {env}/p.png", "values but the header"),
    ("plot-values-bad-quotes", "plot {run} --values {env}/quote.csv --color-by label --out {env}/p.png", "quot"),
]


@pytest.mark.parametrize("command,expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_error_is_one_line_and_exit_2(env, capsys, command, expect):
    argv = shlex.split(command.format(env=env, run=env / "run", data=env / "data.npz"))
    before = snapshot(env)
    code = main(argv)
    err = capsys.readouterr().err
    if "make viewer-assets" in err:
        pytest.skip("the viewer's JavaScript bundle is not built here")
    lines = error_lines(err)
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("medcne"), err
    assert "Traceback" not in err and "weights_only" not in err
    assert expect in lines[0]
    assert snapshot(env) == before  # nothing written, nothing changed, nothing left behind


@pytest.mark.parametrize("code,where,words", [
    (errno.ENOSPC, None, "no space left"),
    (errno.EROFS, "out/x", "read-only"),
    (errno.EACCES, "out/x", "permission denied"),
    (errno.ENOTDIR, "f/x", "is a file, not a folder"),
])
def test_file_system_errors_name_the_path_and_the_fix(code, where, words):
    message, status = describe(OSError(code, "raw", where), where="given/out")
    assert status == 2 and words in message
    assert message.startswith(where or "given/out")  # the --out stands in when the error names no file


def test_temporary_names_stand_for_their_destination():
    message, _ = describe(OSError(errno.ENOSPC, "raw", "/r/.model.pt.a1b2c3d4.tmp.pt"))
    assert message.startswith("/r/model.pt:")
    message, _ = describe(OSError(errno.ENOSPC, "raw", "/r/.viewer.zz99zz99/sprites/s.png"))
    assert message.startswith("/r/viewer/sprites/s.png:")


def test_permission_error_is_one_line(env, capsys, monkeypatch):
    # As root chmod cannot make a folder unwritable, so the error is raised where the run is written.
    import medcne.runs.staging as staging

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(env / "new"))

    monkeypatch.setattr(staging, "begin", denied)
    before = snapshot(env)
    assert main(["fit", str(env / "data.npz"), "--out", str(env / "new"), *TINY]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"medcne fit: error: {env / 'new'}: permission denied; use a path you may read and write, "
                     "or change its permissions"]
    assert snapshot(env) == before


def test_a_bug_is_one_line_with_status_1_and_debug_shows_it(env, capsys, monkeypatch):
    import medcne.cli.info as info

    monkeypatch.setattr(info, "describe", lambda data: 1 / 0)
    assert main(["info", str(env / "data.npz")]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "internal error (ZeroDivisionError" in lines[0] and "--debug" in lines[0]
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "info", str(env / "data.npz")])


def test_a_home_folder_tilde_in_a_value_is_expanded_as_the_shell_would(tmp_path, monkeypatch, capsys):
    """`--out=~/views.png` reaches medcne unexpanded (the shell expands `~` only at a word's start): it
    made a folder named `~` in the current one, which `rm -rf ~` would then be one step from."""
    from medcne.datasets import SAMPLE_PATH

    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    shutil.copy(SAMPLE_PATH, home / "s.npz")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    assert main(["augment-preview", "~/s.npz", "--out=~/views.png", "--n-images", "2", "--n-views", "2"]) == 0
    assert (home / "views.png").is_file() and list(here.iterdir()) == []
    from medcne.cli import _expand_home

    args = argparse.Namespace(out="~/r", runs=["~/a", "b"], title="~", color_by="~", size=28)
    _expand_home(args)
    assert vars(args) == {"out": f"{home}/r", "runs": [f"{home}/a", "b"], "title": "~", "color_by": "~", "size": 28}


def test_every_option_that_names_a_path_is_expanded_and_no_other():
    """PATH_OPTIONS lists by hand the options that name files or folders: an option added later with a
    metavar of a path (FILE, DIR, RUN, DATA, CSV...) must be in it."""
    from medcne.cli import PATH_OPTIONS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    named = {a.dest for p in sub.choices.values() for a in p._actions
             if a.metavar and any(w in str(a.metavar) for w in ("FILE", "DIR", "RUN", "DATA", "CSV", "PATH",
                                                                 "REPORT", "FOLDER"))}
    assert named <= PATH_OPTIONS, named - PATH_OPTIONS
    assert {"title", "color_by", "label_column", "path_column", "part", "lr"}.isdisjoint(PATH_OPTIONS)


@pytest.mark.parametrize("argv, said", [
    (["info", "SAMPLE", "--sise", "28"], "medcne info: error: unrecognized arguments: --sise 28 (see `medcne info --help`)"),
    (["info", "SAMPLE", "--siz", "14"], "medcne info: error: unrecognized arguments: --siz 14"),  # no prefix matching
    (["--overwrite", "info", "SAMPLE"], "medcne: error: unrecognized arguments: --overwrite; a command's options go "
                                        "after its name (`medcne info ... --overwrite`)"),
])
def test_an_unknown_option_is_named_by_its_command_and_prefixes_are_not_options(argv, said, capsys):
    """A user probe: `medcne info DATA --sise 28` was blamed on `medcne` with its top-level help, and
    `--siz 14` was silently read as --size (a later option could make such a prefix mean another)."""
    from medcne.datasets import SAMPLE_PATH

    assert main([str(SAMPLE_PATH) if a == "SAMPLE" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(said), err


# A Ctrl-C while the command line loads (numpy, the readers, each command's module): a finder placed first
# on the import path raises it on importing `module`, as a Ctrl-C arriving just then would.
INTERRUPTED_IMPORT = """
import sys
class Stop:  # once, as one Ctrl-C
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} and self in sys.meta_path:
            sys.meta_path.remove(self)
            raise KeyboardInterrupt
sys.meta_path.insert(0, Stop())
sys.argv = ["medcne", "info", {data!r}]
from medcne.launch import main
raise SystemExit(main())
"""


@pytest.mark.parametrize("module", ["medcne.errors", "numpy", "medcne.datasets", "medcne.cli.fit"])
def test_ctrl_c_while_the_command_loads_is_one_line_and_status_130(module):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from medcne.datasets import SAMPLE_PATH

    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT.format(module=module, data=str(SAMPLE_PATH))],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(src)})
    assert (out.returncode, out.stderr, out.stdout) == (130, "medcne: interrupted\n", "")


def test_the_console_script_and_python_m_enter_through_the_guard():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    scripts = re.search(r"^\[project\.scripts\]\n(.*?)\n\n", (root / "pyproject.toml").read_text(), re.S | re.M)
    assert scripts.group(1) == 'medcne = "medcne.launch:main"'
    assert "from .launch import main" in (root / "src" / "medcne" / "__main__.py").read_text()


def test_after_a_command_the_library_speaks_to_python_again(capsys):
    from medcne.params import on_cli

    assert not on_cli()
    assert main(["info", "--help"]) == 0
    assert not on_cli()  # a notebook that ran a command still gets Python's names and warnings
