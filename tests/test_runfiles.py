"""The run's file names live in one leaf module that every reader and writer uses."""

from __future__ import annotations

import ast
import inspect

import medcne.runfiles as runfiles
from medcne.datasets.files import medcne_output_kind
from medcne.runs import folder, staging


def test_runfiles_imports_nothing_of_medcne():
    tree = ast.parse(inspect.getsource(runfiles))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith(("medcne", "."))] and imported == ["__future__"]


def test_the_run_folder_and_the_dataset_reader_use_its_names(tmp_path):
    assert folder.RUN_FILES == runfiles.RUN_FILES and folder.PARAMS == runfiles.PARAMS
    assert folder.staging_path(tmp_path / "R").name == ".R.medcne-new" == runfiles.staging_name("R")
    staging.mark(tmp_path, [])  # a run folder medcne began: the dataset reader skips it, before any run file
    assert medcne_output_kind(tmp_path) == "run"


def test_the_lock_name_sits_beside_the_output():
    assert runfiles.lock_name("map.png") == ".map.png.medcne-lock"
