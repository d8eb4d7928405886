"""Docs that cannot drift: the runnable command blocks of README.md and docs/ run, and quoted figures match.

Conventions (stated for users in docs/index.md):

- a fenced ``bash`` or ``python`` block preceded by ``<!-- run -->`` is executed
  on the bundled sample, page by page, its blocks in order in one fresh folder;
  ``<!-- run: OLD => NEW; OLD2 => NEW2 -->`` replaces text first (tiny settings);
- a figure preceded by ``<!-- fig KEY.PATH -->`` must equal that entry of
  docs/results.json (written by bench/docs_results.py).

The folder each page runs in holds ``src`` (a link to the package's sources, so
the sample's path in the pages works), ``my_images/`` (a few sample images as
PNG files in class folders, one class at another size so that ``--size`` is
needed, as it is for real folders) and a ``medcne`` command on the PATH.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = ROOT / "docs" / "results.json"
VIEWER_BUNDLE = ROOT / "src" / "medcne" / "viewer" / "static" / "medcne-viewer.js"

MARKER = re.compile(r"<!--\s*run(?::(?P<subs>.*?))?\s*-->\s*\n```(?P<lang>bash|python)\n(?P<code>.*?)\n```", re.S)
FIGURE = re.compile(r"<!--\s*fig\s+(?P<key>[\w.]+)\s*-->\s*(?P<value>-?[0-9][0-9,]*(?:\.[0-9]+)?)")


def runnable_blocks(text: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(language, code with substitutions applied, the substitutions) of every marked block, in order."""
    blocks = []
    for m in MARKER.finditer(text):
        subs = []
        for part in (m["subs"] or "").split(";"):
            if part.strip():
                old, sep, new = part.partition("=>")
                if not sep:
                    raise ValueError(f"a run marker's substitution needs 'OLD => NEW': {part!r}")
                subs.append((old.strip(), new.strip()))
        code = m["code"]
        for old, new in subs:
            code = code.replace(old, new)
        blocks.append((m["lang"], code, subs))
    return blocks


def quoted_figures(text: str) -> list[tuple[str, str]]:
    return [(m["key"], m["value"]) for m in FIGURE.finditer(text)]


def lookup(results: dict, key: str):
    value = results
    for part in key.split("."):
        value = value[part]
    return value


def pages_with_blocks() -> list[Path]:
    return [p for p in PAGES if runnable_blocks(p.read_text(encoding="utf-8"))]


def test_the_parser_finds_blocks_and_applies_substitutions():
    text = (
        "intro\n<!-- run -->\n```bash\nmedcne info x\n```\n\n```bash\nnot marked\n```\n"
        "<!-- run: --quick => --epochs 1,1,1; --open => -->\n\n```bash\nmedcne fit a --quick\nmedcne view r --open\n```\n"
        "<!-- run -->\n```python\nprint(1)\n```\n"
    )
    blocks = runnable_blocks(text)
    assert [lang for lang, _, _ in blocks] == ["bash", "bash", "python"]
    assert blocks[0][1] == "medcne info x"
    assert blocks[1][1] == "medcne fit a --epochs 1,1,1\nmedcne view r "
    assert quoted_figures("kNN <!-- fig demo.knn -->69.5% and <!--fig a.b-->1,234") == [
        ("demo.knn", "69.5"), ("a.b", "1,234")]


def test_the_readme_and_the_pages_have_runnable_blocks():
    assert len(runnable_blocks((ROOT / "README.md").read_text(encoding="utf-8"))) >= 3
    names = {p.name for p in pages_with_blocks()}
    assert {"README.md", "getting-started.md", "data.md", "cpu.md", "evaluate.md", "curation.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_substitution_finds_its_text(page):
    """A substitution whose text left the block would silently run the full-size command."""
    for m in MARKER.finditer(page.read_text(encoding="utf-8")):
        for _lang, _, subs in runnable_blocks(m.group(0)):
            for old, _new in subs:
                assert old in m["code"], f"{page.name}: '{old}' is not in the block it should shorten"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_figures_match_the_results_file(page):
    results = json.loads(RESULTS.read_text())
    for key, quoted in quoted_figures(page.read_text(encoding="utf-8")):
        try:
            value = lookup(results, key)
        except (KeyError, TypeError):
            pytest.fail(f"{page.name}: figure {key} is not in docs/results.json")
        assert float(quoted.replace(",", "")) == pytest.approx(float(value), abs=1e-9), (
            f"{page.name}: {key} is quoted as {quoted}, docs/results.json says {value}")


def test_the_results_file_says_how_it_was_measured():
    results = json.loads(RESULTS.read_text())
    assert results["machine"] and results["measured"]
    assert set(results["commands"]) >= {"demo", "tsne_pixels", "qc"}
    assert all(results["commands"][k].startswith("medcne ") for k in results["commands"])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert {key for key, _ in quoted_figures(readme)} >= {"demo.knn_accuracy", "demo.silhouette"}


def make_workspace(folder: Path) -> dict:
    """The folder a page's blocks run in, and their environment."""
    (folder / "src").symlink_to(ROOT / "src")
    sample = np.load(ROOT / "src" / "medcne" / "datasets" / "data" / "bloodmnist_sample.npz")
    images, labels = sample["images"], sample["labels"]
    for cls in range(4):
        (folder / "my_images" / f"class{cls}").mkdir(parents=True)
        for i in np.flatnonzero(labels == cls)[:24]:
            img = Image.fromarray(images[i])
            # One class at 32x32: a real folder often mixes sizes, which is what --size is for.
            (img.resize((32, 32)) if cls == 3 else img).save(folder / "my_images" / f"class{cls}" / f"{i}.png")
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    script = bin_dir / "medcne"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m medcne "$@"\n')
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}


@pytest.mark.slow
@pytest.mark.parametrize("page", pages_with_blocks(), ids=lambda p: p.name)
def test_runnable_blocks_run(page, tmp_path):
    blocks = runnable_blocks(page.read_text(encoding="utf-8"))
    if not VIEWER_BUNDLE.exists() and any("medcne view" in code for _, code, _ in blocks):
        pytest.skip("the viewer's JavaScript is not built (make viewer-assets)")
    env = make_workspace(tmp_path)
    for lang, code, _ in blocks:
        command = (["bash", "-euo", "pipefail", "-c", code] if lang == "bash"
                   else [sys.executable, "-c", code])
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{page.name}: this block failed:\n{code}\n--- stderr:\n{done.stderr[-3000:]}"


PYTHON_BLOCK = re.compile(r"```python\n(?P<code>.*?)\n```", re.S)
NOTEBOOK = ROOT / "docs" / "examples" / "quickstart.ipynb"


def python_examples() -> list[tuple[str, str]]:
    """(where, code) of every Python block of the pages, marked or not, and of the notebook's code cells."""
    found = [(page.name, m["code"]) for page in PAGES for m in PYTHON_BLOCK.finditer(page.read_text(encoding="utf-8"))]
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return found + [(f"{NOTEBOOK.name} cell {i}", "".join(c["source"]))
                    for i, c in enumerate(cells) if c["cell_type"] == "code"]


def test_python_examples_name_the_sample_by_its_variable_not_its_place_in_the_sources():
    # "src/medcne/..." is found only from the root of a source checkout, not by a notebook elsewhere.
    offenders = [where for where, code in python_examples() if "src/medcne/" in code]
    assert not offenders, f"use medcne.datasets.SAMPLE_PATH in: {offenders}"


def literal_keywords(call: ast.Call) -> dict:
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords
            if k.arg and isinstance(k.value, (ast.Constant, ast.Tuple))}


def test_python_examples_with_a_few_epochs_give_settings_that_train_in_them():
    """The paper's warm-up (10, 0, 10) and learning rate, kept with a few epochs, never reach the peak
    rate: such a map is noise. An example that gives three epochs gives `lr` and `warmup` too, each
    stage warming up for fewer epochs than it trains."""
    from medcne.defaults import PAPER_WARMUP

    checked, offenders = 0, []
    for where, code in python_examples():
        for node in ast.walk(ast.parse(code)):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "TSimCNE"):
                continue
            kw = literal_keywords(node)
            if not isinstance(kw.get("epochs"), tuple) or kw.get("loss") == "cosine":
                continue
            checked += 1
            warmup = kw.get("warmup", PAPER_WARMUP)
            if "lr" not in kw or any(e and w >= e for e, w in zip(kw["epochs"], warmup, strict=True)):
                offenders.append(f"{where}: {ast.unparse(node)}")
    assert checked >= 3 and not offenders, "\n".join(offenders)


def test_every_check_a_page_names_is_a_test():
    named = {m for page in PAGES for m in re.findall(r"`(test_[a-z0-9_]+)`", page.read_text(encoding="utf-8"))}
    tests = {m for f in (ROOT / "tests").glob("test_*.py")
             for m in re.findall(r"^def (test_[a-z0-9_]+)\(", f.read_text(encoding="utf-8"), re.M)}
    assert named and not named - tests, sorted(named - tests)
