"""Every source of randomness of a run, derived from one seed (STYLE.md habit 2)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import MedcneError

NAMES = ("init", "batch", "augment")


def as_rng(random_state) -> np.random.Generator:
    """``random_state`` (None, an int or a numpy Generator) as a numpy Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


@dataclass
class Generators:
    """The torch generators of a run.

    ``init`` draws weights (also of the stage-2 head) on the CPU, so a seed
    gives the same network on any device; ``batch`` draws the order of the
    images and ``augment`` the augmentations, both on the training device, where
    they are used (a GPU never waits for numbers drawn on the host).

    With several processes (``world`` > 1) ``init`` and ``batch`` are the same on
    every rank (same weights, same order of the images) and ``augment`` is the
    rank's own stream: rank 0's is the one-process stream, rank r's is derived
    from the run's seed and r.
    """

    init: torch.Generator
    batch: torch.Generator
    augment: torch.Generator
    rank: int = 0
    world: int = 1

    @classmethod
    def from_rng(cls, rng: np.random.Generator, device: torch.device, rank: int = 0,
                 world: int = 1) -> Generators:
        seeds = rng.integers(0, 2**62, size=3)
        gens = [torch.Generator("cpu"), torch.Generator(device), torch.Generator(device)]
        for g, s in zip(gens, seeds, strict=True):
            g.manual_seed(int(s))
        if rank:
            gens[2].manual_seed(rank_seed(int(seeds[2]).to_bytes(8, "little"), rank))
        return cls(*gens, rank=rank, world=world)

    def state_dict(self) -> dict:
        state = {name: getattr(self, name).get_state() for name in NAMES}
        state["devices"] = {name: getattr(self, name).device.type for name in NAMES}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore the streams; a checkpoint made on another kind of device cannot continue them."""
        saved = state.get("devices", {})
        for name in NAMES:
            here = getattr(self, name).device.type
            if saved.get(name, here) != here:
                raise MedcneError(
                    f"the checkpoint was made on {saved[name]}, and its random streams cannot continue on "
                    f"{here}; resume with `device` {saved[name]}, or start the run again"
                )
            try:
                getattr(self, name).set_state(state[name].cpu())
            except RuntimeError:  # a state of another generator type (older checkpoints name no devices)
                raise MedcneError(
                    f"the checkpoint's random state {name!r} does not fit a {here} generator (made on another "
                    "device?); resume on the device it was made on, or start the run again"
                ) from None
        self._continue_rank_stream(state)

    def _continue_rank_stream(self, state: dict) -> None:
        """Rank r continues the augmentation stream of rank r of the checkpoint (``augment_ranks``,
        saved by runs of several processes), so a run resumed on as many processes continues
        exactly. A rank the checkpoint did not have (resuming on more processes) starts a
        stream derived from rank 0's saved state and r."""
        ranks = state.get("augment_ranks")
        if ranks is not None and self.rank < len(ranks):
            self.augment.set_state(ranks[self.rank].cpu())
        elif self.rank > 0:
            self.augment.manual_seed(rank_seed(bytes(state["augment"].cpu().numpy()), self.rank))


def rank_seed(base: bytes, rank: int) -> int:
    """The seed of rank ``rank``'s augmentation stream, from ``base`` (a seed or a saved state):
    distinct per rank, the same on every run."""
    digest = hashlib.sha256(base + int(rank).to_bytes(4, "little")).digest()
    return int.from_bytes(digest[:8], "little") % 2**62
