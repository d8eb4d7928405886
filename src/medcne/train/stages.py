"""The training stages as data, and the learning rate as a pure function of the step.

t-SimCNE (docs/design.md, "The method") trains in three stages: (1) everything, output
128-D; (2) a fresh last Linear with output ``dim`` (2 for a map), trained alone;
(3) everything again at a thousandth of the learning rate. Each stage is one
frozen :class:`Stage`; :func:`medcne.train.loop.train` runs any tuple of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..defaults import (
    DIM,
    HEAD_INIT,
    HEAD_INITS,
    LR_PER_256,
    PAPER_EPOCHS,
    PAPER_WARMUP,
    PRETRAIN_DIM,
    SIMCLR_EPOCHS,
    STAGE3_LR_FACTOR,
)
from ..errors import MedcneError


@dataclass(frozen=True)
class Stage:
    """One stage of training.

    Attributes
    ----------
    name : str
        Shown in the progress bar and ``history.csv``.
    epochs : int
        Passes over the data.
    lr : float
        Peak learning rate (after warm-up).
    warmup_epochs : int
        Linear warm-up from ~0 to ``lr``; cosine annealing to 0 afterwards.
    out_dim : int
        Width of the output z during this stage.
    new_head : bool
        Replace the last Linear by a fresh one with ``out_dim`` outputs first.
    head_init : {'normal', 'uniform'}
        How that fresh layer's weights are drawn (see
        :meth:`medcne.models.TSimCNENet.replace_last`).
    train : {'all', 'last'}
        Which parameters the (fresh) optimiser updates.
    """

    name: str
    epochs: int
    lr: float
    warmup_epochs: int = 0
    out_dim: int = PRETRAIN_DIM
    new_head: bool = False
    train: str = "all"
    head_init: str = HEAD_INIT

    def __post_init__(self):
        if self.epochs < 0:
            raise MedcneError(f"epochs of stage {self.name!r} must be >= 0; got {self.epochs}")
        if not self.lr > 0:
            raise MedcneError(f"lr of stage {self.name!r} must be positive; got {self.lr}")
        if self.head_init not in HEAD_INITS:
            raise MedcneError(f"head_init must be one of {', '.join(map(repr, HEAD_INITS))}; got {self.head_init!r}")
        if self.train not in ("all", "last"):
            raise MedcneError(f"train of stage {self.name!r} must be 'all' or 'last'; got {self.train!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def default_lr(batch_size: int) -> float:
    """The paper's rule: 0.03 * batch_size / 256 (0.12 for a batch of 1024)."""
    return LR_PER_256 * batch_size / 256


def parse_epochs(epochs, n: int = 3, name: str = "epochs") -> tuple[int, ...]:
    """``'1000,50,450'`` or a sequence -> a tuple of ``n`` non-negative ints; ``name`` is the parameter in messages."""
    example = ",".join(map(str, (PAPER_EPOCHS if name == "epochs" else PAPER_WARMUP)[:n]))
    if isinstance(epochs, str):
        try:
            epochs = [int(e) for e in epochs.split(",")]
        except ValueError:
            raise MedcneError(
                f"{name} must be {n} integers separated by commas, e.g. {example}; got {epochs!r}"
            ) from None
    try:
        epochs = tuple(int(e) for e in epochs)
    except (TypeError, ValueError):
        raise MedcneError(f"{name} must be {n} non-negative integers, e.g. {example}; got {epochs!r}") from None
    if len(epochs) != n or any(e < 0 for e in epochs):
        raise MedcneError(
            f"{name} must be {n} non-negative integers (one per stage), e.g. "
            f"{example}; got {','.join(map(str, epochs))}"
        )
    return epochs


def tsimcne_stages(
    epochs=PAPER_EPOCHS,
    lr: float = 0.12,
    dim: int = DIM,
    warmup=PAPER_WARMUP,
    stage3_lr_factor: float = STAGE3_LR_FACTOR,
    pretrain_dim: int = PRETRAIN_DIM,
    head_init: str = HEAD_INIT,
) -> tuple[Stage, Stage, Stage]:
    """The three stages of t-SimCNE."""
    e1, e2, e3 = parse_epochs(epochs)
    w1, w2, w3 = parse_epochs(warmup)
    return (
        Stage("pretrain", e1, lr, w1, pretrain_dim),
        Stage("head", e2, lr, w2, dim, new_head=True, train="last", head_init=head_init),
        Stage("finetune", e3, lr * stage3_lr_factor, w3, dim),
    )


def simclr_stages(epochs: int = SIMCLR_EPOCHS, lr: float = 0.12, warmup: int = PAPER_WARMUP[0],
                  dim: int = PRETRAIN_DIM) -> tuple[Stage]:
    """The SimCLR baseline: one stage, 128-D output, all parameters."""
    return (Stage("simclr", int(epochs), lr, int(warmup), dim),)


def lr_at(stage: Stage, step: int, steps_per_epoch: int) -> float:
    """Learning rate at ``step`` (0-based, counted within the stage).

    Linear warm-up over ``warmup_epochs`` (capped at the stage length), reaching
    ``lr`` at its last step, then half a cosine from ``lr`` down to 0 at the end.
    """
    total = stage.epochs * steps_per_epoch
    warm = min(stage.warmup_epochs, stage.epochs) * steps_per_epoch
    if step < warm:
        return stage.lr * (step + 1) / warm
    rest = max(total - warm, 1)
    return stage.lr * 0.5 * (1.0 + math.cos(math.pi * (step - warm) / rest))
