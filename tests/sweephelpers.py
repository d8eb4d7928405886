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
