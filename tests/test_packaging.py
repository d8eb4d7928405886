"""What pip users get: the wheel and the sdist, the viewer bundle's licence notices, the extras.

The builds run on a copy of the files git would commit (tracked and new, not ignored) in
tmp_path, with ``--no-build-isolation`` (nothing downloaded): the wheel must ship the viewer's
JavaScript bundle (git-ignored, built by ``make viewer-assets``) and refuse to be built without
it; the sdist must hold what rebuilds the bundle and runs the tests. The bundle must carry the
licence notices of every npm package inside it (checked against package-lock.json, the packages'
LICENSE files and, with Node.js, esbuild's metafile).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import medcne.viewer.build as build_mod
from medcne.cli import main
from medcne.errors import MedcneError
from medcne.viewer import check_bundle

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "medcne"
JS = PACKAGE / "viewer" / "js"
BUNDLE = Path("src/medcne/viewer/static/medcne-viewer.js")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NO_BUNDLE = "src/medcne/viewer/static/medcne-viewer.js is missing: run `make viewer-assets`"


def commit_files() -> list[str]:
    """The files a commit of the working tree would hold (tracked, and new ones not ignored)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout of medcne (an sdist has no .git)")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def copy_tree(dest: Path, *, bundle: bool) -> Path:
    """A clean clone of the working tree at ``dest``, with the viewer bundle or without it."""
    for name in commit_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    if bundle:  # the real one when `make viewer-assets` ran here; what the wheel holds is the point
        (dest / BUNDLE).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / BUNDLE).is_file():
            shutil.copy2(ROOT / BUNDLE, dest / BUNDLE)
        else:
            (dest / BUNDLE).write_text("/*! a stand-in for the viewer bundle */\n")
    assert (dest / BUNDLE).is_file() == bundle
    return dest


def build(tree: Path, what: str, out: Path) -> subprocess.CompletedProcess:
    """Build a wheel (pip, as users do), an sdist or an editable wheel (the PEP 517 hooks) of ``tree``."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    if what == "wheel":
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "-q", "-w", str(out), str(tree)]
    else:
        hook = {"sdist": "build_sdist", "editable": "build_editable"}[what]
        cmd = [sys.executable, "-c", f"from setuptools import build_meta; build_meta.{hook}({str(out)!r})"]
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def built(result: subprocess.CompletedProcess, out: Path, pattern: str) -> Path:
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob(pattern)
    return path


def test_wheel_ships_the_viewer_bundle_and_the_package_data(tmp_path):
    tree = copy_tree(tmp_path / "tree", bundle=True)
    wheel = built(build(tree, "wheel", tmp_path / "dist"), tmp_path / "dist", "medcne-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("medcne/viewer/static/medcne-viewer.js") == (tree / BUNDLE).read_bytes()
    configs = {f"medcne/sweep/configs/{p.name}" for p in (PACKAGE / "sweep" / "configs").iterdir()
               if p.suffix in (".toml", ".csv")}
    wanted = {"medcne/viewer/static/medcne-viewer.js", "medcne/datasets/data/bloodmnist_sample.npz",
              "medcne/viewer/templates/index.html", "medcne/py.typed", *configs}
    assert configs and wanted <= names, sorted(wanted - names)
    # Package data only: the JavaScript sources stay in the sdist.
    assert not [n for n in names if "/viewer/js/" in n or n.startswith("tests/")]


@pytest.mark.parametrize("what", ["wheel", "sdist"])
def test_no_wheel_or_sdist_without_the_viewer_bundle(tmp_path, what):
    tree = copy_tree(tmp_path / "tree", bundle=False)
    result = build(tree, what, tmp_path / "dist")
    assert result.returncode != 0
    assert NO_BUNDLE in result.stdout + result.stderr
    assert not list((tmp_path / "dist").iterdir())


def test_editable_install_needs_no_bundle(tmp_path):
    """`make install` (pip install -e) runs before `make viewer-assets`."""
    tree = copy_tree(tmp_path / "tree", bundle=False)
    built(build(tree, "editable", tmp_path / "dist"), tmp_path / "dist", "medcne-*.editable-*.whl")


def test_sdist_rebuilds_the_viewer_runs_the_tests_and_makes_a_wheel_with_the_bundle(tmp_path):
    tree = copy_tree(tmp_path / "tree", bundle=True)
    junk = tree / "src/medcne/viewer/js/node_modules/some-package"  # as after `npm ci`
    junk.mkdir(parents=True)
    (junk / "index.js").write_text("module.exports = 1;\n")
    (junk / "package.json").write_text('{"name": "some-package", "version": "1.0.0"}\n')
    sdist = built(build(tree, "sdist", tmp_path / "dist"), tmp_path / "dist", "medcne-*.tar.gz")
    with tarfile.open(sdist) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path / "unpacked", **safe)
    (top,) = (tmp_path / "unpacked").iterdir()
    names = {p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()}
    assert not [n for n in names if "node_modules" in n]
    js = {f"src/medcne/viewer/js/{p.name}" for p in JS.iterdir()
          if p.suffix == ".js" or p.name in ("package.json", "package-lock.json")}
    tests = {name for name in commit_files() if name.startswith("tests/")}
    wanted = {*js, *tests, BUNDLE.as_posix(), "tests/conftest.py", "Makefile", "CITATION.cff",
              "LICENSE", "README.md", "setup.py", "pyproject.toml", "docs/index.md",
              "src/medcne/py.typed", "bench/RESULTS.md"}
    if (ROOT / "mkdocs.yml").is_file():
        wanted.add("mkdocs.yml")
    assert any(n.endswith("helpers.py") for n in tests)
    assert wanted <= names, sorted(wanted - names)
    # A wheel built from the sdist (as pip does for an sdist) has the viewer too.
    wheel = built(build(top, "wheel", tmp_path / "wheel"), tmp_path / "wheel", "medcne-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert "medcne/viewer/static/medcne-viewer.js" in z.namelist()


# --- the licence notices at the top of the bundle


def bundle_header() -> str:
    if not (ROOT / BUNDLE).is_file():
        pytest.skip("no viewer bundle here (`make viewer-assets`)")
    text = (ROOT / BUNDLE).read_text(encoding="utf-8")
    assert text.startswith("/*!"), "the bundle starts with its licence notices, one preserved comment"
    return text[: text.index("*/") + 2]


def locked_packages() -> dict[str, tuple[str, str]]:
    """package-lock.json's runtime packages: their folder in node_modules -> (name, version)."""
    lock = json.loads((JS / "package-lock.json").read_text(encoding="utf-8"))
    found = {}
    for key, info in lock["packages"].items():
        if key and not info.get("dev"):
            found[key] = (key.rsplit("node_modules/", 1)[1], info["version"])
    return found


def test_bundle_header_names_every_runtime_package_of_the_lock_file():
    header = bundle_header()
    packages = locked_packages()
    assert ("regl-scatterplot", "1.16.0") in packages.values()
    missing = [f"{n} {v}" for n, v in packages.values() if f"{n} {v}" not in header]
    assert not missing, f"not named in the bundle's licence header: {missing}; rebuild it (`npm run build`)"


def test_bundle_header_keeps_every_copyright_line_of_their_licences():
    header = bundle_header()
    if not (JS / "node_modules").is_dir():
        pytest.skip("no node_modules here (`npm ci` in src/medcne/viewer/js)")
    lines = {}
    for folder, (name, _) in locked_packages().items():
        (licence,) = [p for p in (JS / folder).iterdir() if re.match(r"(?i)licen[cs]e", p.name)]
        lines[name] = [ln.strip() for ln in licence.read_text(encoding="utf-8").splitlines() if "Copyright" in ln]
    assert "Copyright (c) 2018 Fritz Lekschas" in lines["regl-scatterplot"]
    missing = [ln for found in lines.values() for ln in found if ln not in header]
    assert not missing


def test_bundle_header_covers_every_package_esbuild_put_in():
    """Independent of build.js: esbuild's own metafile of the same bundle."""
    header = bundle_header()
    if shutil.which("node") is None or not (JS / "node_modules" / "esbuild").is_dir():
        pytest.skip("needs Node.js and `npm ci` in src/medcne/viewer/js")
    script = ("require('esbuild').build({entryPoints: ['viewer.js'], bundle: true, minify: true, "
              "format: 'iife', target: 'es2020', outfile: 'out.js', write: false, metafile: true})"
              ".then(r => console.log(JSON.stringify(r.metafile)))")
    meta = json.loads(subprocess.run(["node", "-e", script], cwd=JS, capture_output=True, text=True,
                                     check=True, timeout=60).stdout)
    (output,) = meta["outputs"].values()
    names = set()
    for path, info in output["inputs"].items():
        if "node_modules/" in path and info["bytesInOutput"] > 0:
            above, inside = path.rsplit("node_modules/", 1)
            parts = inside.split("/")
            name = parts[: 2 if parts[0].startswith("@") else 1]  # @scope/name or name
            pkg = json.loads((JS / above / "node_modules" / Path(*name) / "package.json").read_text(encoding="utf-8"))
            names.add(f"{pkg['name']} {pkg['version']}")
    assert "regl-scatterplot 1.16.0" in names
    assert not [n for n in names if n not in header]


# --- the messages that name what to install or build


# Where the module a `require()` imports comes from a distribution of another name.
DISTRIBUTION = {"openslide": "openslide-python", "umap": "umap-learn"}


def required_extras() -> set[tuple[str, str]]:
    """(module, extra) of every ``require("module", "extra")`` in the package."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require"
                    and len(node.args) == 2 and all(isinstance(a, ast.Constant) for a in node.args)):
                found.add((node.args[0].value, node.args[1].value))
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_missing_package_message_names_an_extra_that_installs_it():
    calls = required_extras()
    assert {("pynndescent", "ann"), ("hnswlib", "ann"), ("playwright.sync_api", "screenshot")} <= calls
    extras = PYPROJECT["project"]["optional-dependencies"]
    for module, extra in sorted(calls):
        top = module.split(".")[0]
        dist = normalise(DISTRIBUTION.get(top, top))
        assert extra in extras, f"require({module!r}, {extra!r}): pyproject has no extra {extra!r}"
        given = {normalise(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in extras[extra]}
        assert dist in given, f"`pip install 'medcne[{extra}]'` does not install {dist} (for {module})"


def test_the_package_is_typed_and_its_marker_is_package_data():
    assert (PACKAGE / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["medcne"]


def test_missing_bundle_message_suits_a_checkout_and_an_installed_package(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "BUNDLE", tmp_path / "medcne-viewer.js")
    with pytest.raises(MedcneError, match="make viewer-assets") as e:
        check_bundle()
    assert "\n" not in str(e.value)
    monkeypatch.setattr(build_mod, "JS_SOURCES", tmp_path / "js" / "package.json")  # as in a wheel
    with pytest.raises(MedcneError, match="lacks the viewer's JavaScript; reinstall medcne from a wheel "
                                          "built with it") as e:
        check_bundle()
    assert "\n" not in str(e.value)


def test_view_of_a_missing_run_says_so_before_a_missing_bundle(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "BUNDLE", tmp_path / "medcne-viewer.js")
    assert main(["view", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such run folder" in err and "bundle" not in err and "JavaScript" not in err


def real_bundle() -> Path:
    if not (ROOT / BUNDLE).is_file():
        pytest.skip("needs the viewer bundle built here (`make viewer-assets`)")
    return ROOT / BUNDLE


def test_the_bundle_records_the_digest_of_its_sources_as_python_computes_it():
    from medcne.viewer.bundlestamp import recorded_digest, sources_digest

    assert recorded_digest(real_bundle()) == sources_digest(JS)  # build.js and bundlestamp.py agree


def test_no_wheel_from_a_bundle_older_than_its_sources(tmp_path):
    real_bundle()
    tree = copy_tree(tmp_path / "tree", bundle=True)
    with open(tree / "src/medcne/viewer/js/viewer.js", "a", encoding="utf-8") as fh:
        fh.write("// edited after the bundle was built\n")
    result = build(tree, "wheel", tmp_path / "dist")
    assert result.returncode != 0
    assert f"{BUNDLE.as_posix()} is out of date (its sources have changed since it was built)" in result.stdout + result.stderr
    assert not list((tmp_path / "dist").iterdir())


def test_view_in_a_checkout_refuses_a_bundle_older_than_its_sources(tmp_path, monkeypatch):
    js = tmp_path / "js"
    shutil.copytree(JS, js, ignore=shutil.ignore_patterns("node_modules"))
    bundle = tmp_path / "static" / "medcne-viewer.js"
    bundle.parent.mkdir()
    shutil.copyfile(real_bundle(), bundle)
    monkeypatch.setattr(build_mod, "BUNDLE", bundle)
    monkeypatch.setattr(build_mod, "JS_SOURCES", js / "package.json")
    assert check_bundle() == bundle
    (js / "labels.js").write_text((js / "labels.js").read_text() + "\n// changed\n")
    with pytest.raises(MedcneError, match="bundle is out of date \\(its sources have changed since it was built\\); "
                                          "rebuild it with `make viewer-assets`"):
        check_bundle()
