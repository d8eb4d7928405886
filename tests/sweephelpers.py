"""A tiny sweep config for the sweep tests: 2 presets x 2 seeds, one epoch per stage, 48 images of 16x16."""

from __future__ import annotations

from medcne.datasets import SAMPLE_PATH

TINY_SWEEP = f"""
[sweep]
seeds = 2

[training]
epochs = [1, 1, 1]
warmup = [0, 0, 0]
width = 4
batch_size = 16
device = "cpu"

[datasets.sample]
path = "{SAMPLE_PATH}"
subset = 48
size = 16

[methods.simclr]
method = "tsimcne"
preset = "simclr"

[methods.rotate]
method = "tsimcne"
preset = "rotate"
"""


def fake_run(folder, knn: float, sil: float, seed: int) -> dict:
    """A finished run folder (params, embedding, metrics) without training; returns its metrics."""
    import numpy as np

    from medcne.io import write_json
    from medcne.runs import write_embedding

    rng = np.random.default_rng(seed)
    write_json(folder / "params.json", {"method": "fake"})
    write_embedding(folder, rng.normal(size=(48, 2)), [str(i) for i in range(48)], rng.integers(0, 3, 48),
                    ["a", "b", "c"])
    metrics = {"knn_accuracy": knn, "silhouette": sil, "n_points": 48, "seconds": 60.0}
    write_json(folder / "metrics.json", metrics)
    return metrics


def fake_cells(monkeypatch, fail=(), interrupt=()) -> list[str]:
    """Make the sweep's cells fake finished runs (no training); cells named in ``fail`` raise, those in
    ``interrupt`` are interrupted (Ctrl-C). Returns the names of the cells run, in order."""
    from types import SimpleNamespace

    import medcne.sweep.run as sweep_run

    ran = []

    def run_cell(cell, folder, verbose=True):
        ran.append(cell.name)
        if cell.name in fail:
            raise RuntimeError("planned failure")
        if cell.name in interrupt:
            raise KeyboardInterrupt
        folder.mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(metrics=fake_run(folder, 60.0 + cell.seed, 0.1, cell.seed))

    monkeypatch.setattr(sweep_run, "run_cell", run_cell)
    return ran
