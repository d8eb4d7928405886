"""Every source of randomness of a run, derived from one seed (STYLE.md habit 2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NAMES = ("init", "batch", "augment")


def as_rng(random_state) -> np.random.Generator:
    """``random_state`` (None, an int or a numpy Generator) as a numpy Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


@dataclass
class Generators:
    """The torch generators of a run.

    ``init`` draws weights (also of the stage-2 head), ``batch`` the order of
    the images, ``augment`` the augmentations (on the training device).
    """

    init: torch.Generator
    batch: torch.Generator
    augment: torch.Generator

    @classmethod
    def from_rng(cls, rng: np.random.Generator, device: torch.device) -> Generators:
        seeds = rng.integers(0, 2**62, size=3)
        gens = [torch.Generator("cpu"), torch.Generator("cpu"), torch.Generator(device)]
        for g, s in zip(gens, seeds, strict=True):
            g.manual_seed(int(s))
        return cls(*gens)

    def state_dict(self) -> dict:
        return {name: getattr(self, name).get_state() for name in NAMES}

    def load_state_dict(self, state: dict) -> None:
        for name in NAMES:
            getattr(self, name).set_state(state[name].cpu())
