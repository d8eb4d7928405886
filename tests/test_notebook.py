"""The example notebook docs/examples/quickstart.ipynb runs from top to bottom and shows what it promises.

Executed with nbclient in a fresh kernel (ipykernel), as a user would run it:
no cell may fail, the map and the selection are drawn inline (PNG outputs),
the selection cell prints the ids it got back, the map is well above chance and
training reports its progress without a warning.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "examples" / "quickstart.ipynb"


def test_the_notebook_has_no_stored_outputs():
    """Outputs are made by running it; stored ones would be figures nobody re-made."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


@pytest.mark.slow
def test_the_notebook_runs_and_draws_the_map_and_the_selection(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2  # the map, then the selection with its images
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    counts = re.findall(r"(\d+) in the (rectangle|lasso), e\.g\. \[", text)
    assert [kind for _, kind in counts] == ["rectangle", "lasso"]
    assert all(int(n) > 0 for n, _ in counts), text
    assert "id,label" in text
    # Settings that train in so few epochs: the paper's warm-up and learning rate left the map at chance (12.5%).
    knn = re.search(r"kNN accuracy ([\d.]+)%", text)
    assert knn and float(knn[1]) >= 25, text
    # Progress in plain lines, without tqdm's notebook bar and its "IProgress not found" warning (or any other).
    assert re.search(r"stage 3/3 finetune ep 1/1: 100% of training", text), text
    warned = "".join(out.get("text", "") for out in outputs if out.output_type == "stream" and out.name == "stderr")
    assert "Warning" not in warned, warned
