"""The training stages as data, and the learning rate as a pure function of the step.

t-SimCNE (docs/design.md, "The method") trains in three stages: (1) everything, output
128-D; (2) a fresh last Linear with output ``dim`` (2 for a map), trained alone;
(3) everything again at a thousandth of the learning rate. Each stage is one
frozen :class:`Stage`; :func:`medcne.train.loop.train` runs any tuple of them.
The newer single stage of the reference (:func:`anneal_stages`) is one Stage
with an :class:`~.anneal.AnnealSpec`: the dimension its loss sees goes down
from 128 to the map's over the stage (:mod:`medcne.train.anneal`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..defaults import (
    DIM,
    HEAD_INIT,
    HEAD_INITS,
    LR_PER_256,
    PAPER,
    PAPER_EPOCHS,
    PAPER_WARMUP,
    PRETRAIN_DIM,
    SIMCLR_EPOCHS,
    STAGE3_LR_FACTOR,
)
from ..errors import MedcneError
from ..params import parse_epochs
from .anneal import AnnealSpec, parse_schedule


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
    anneal : AnnealSpec or None
        Dimension annealing: the loss sees the first ``d`` of the ``out_dim``
        outputs, ``d`` a function of the share of the stage done; Student-t
        kernel; gradients clipped by value. None: the loss of the run, all outputs.
    """

    name: str
    epochs: int
    lr: float
    warmup_epochs: int = 0
    out_dim: int = PRETRAIN_DIM
    new_head: bool = False
    train: str = "all"
    head_init: str = HEAD_INIT
    anneal: AnnealSpec | None = None

    def __post_init__(self):
        if isinstance(self.anneal, dict):  # read back from a record (params.json, checkpoints)
            object.__setattr__(self, "anneal", AnnealSpec(**self.anneal))
        if self.epochs < 0:
            raise MedcneError(f"epochs of stage {self.name!r} must be >= 0; got {self.epochs}")
        if not self.lr > 0:
            raise MedcneError(f"lr of stage {self.name!r} must be positive; got {self.lr}")
        if self.head_init not in HEAD_INITS:
            raise MedcneError(f"`head_init` must be one of {', '.join(map(repr, HEAD_INITS))}; got {self.head_init!r}")
        if self.train not in ("all", "last"):
            raise MedcneError(f"train of stage {self.name!r} must be 'all' or 'last'; got {self.train!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def default_lr(batch_size: int) -> float:
    """The paper's rule: 0.03 * batch_size / 256 (0.12 for a batch of 1024)."""
    return LR_PER_256 * batch_size / 256


PAPER_LR = default_lr(PAPER["batch_size"])  # 0.12


def tsimcne_stages(
    epochs=PAPER_EPOCHS,
    lr: float = PAPER_LR,
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


def simclr_stages(epochs: int = SIMCLR_EPOCHS, lr: float = PAPER_LR, warmup: int = PAPER_WARMUP[0],
                  dim: int = PRETRAIN_DIM) -> tuple[Stage]:
    """The SimCLR baseline: one stage, 128-D output, all parameters."""
    return (Stage("simclr", int(epochs), lr, int(warmup), dim),)


def anneal_stages(epochs: int, lr: float, warmup: int, spec: AnnealSpec) -> tuple[Stage]:
    """The reference's single stage: all parameters, ``spec.start_dim`` outputs, annealed to ``spec.end_dim``."""
    return (Stage("anneal", int(epochs), lr, int(warmup), spec.start_dim, anneal=spec),)


def first_epochs(value, name: str = "epochs") -> int:
    """One stage's epochs from ``value``: one number (``20``, ``'20'``) or the first of three
    (``'1000,50,450'``: the three-stage form, as the SimCLR baseline reads it)."""
    if isinstance(value, str) and "," not in value or isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            e = int(value)
        except (TypeError, ValueError):
            e = -1
        if e < 0 or (isinstance(value, float) and e != value):
            raise MedcneError(f"{name} must be a non-negative integer, or three separated by commas; got {value!r}")
        return e
    if isinstance(value, (tuple, list)) and len(value) == 1:
        return first_epochs(value[0], name)
    return parse_epochs(value, name=name)[0]


def epochs_record(value, name: str = "epochs") -> list[int]:
    """``value`` as the JSON list a record keeps: three numbers, or one (an annealed run's)."""
    if isinstance(value, (tuple, list)) and len(value) == 1 or isinstance(value, (int, float)) \
            or isinstance(value, str) and "," not in value:
        return [first_epochs(value, name)]
    return list(parse_epochs(value, name=name))


def annealed_schedule(schedule, epochs, warmup, lr: float, dim: int, loss: str) -> tuple[Stage] | None:
    """The stages of ``schedule`` when it is 'anneal' (None for 'stages').

    The annealed stage trains for ``epochs`` (one number, or the first of three)
    with ``warmup`` epochs of warm-up (likewise), output 128-D annealed to ``dim``.
    """
    spec = parse_schedule(schedule, end_dim=min(dim, PRETRAIN_DIM), start_dim=PRETRAIN_DIM)
    if spec is None:
        return None
    if dim > PRETRAIN_DIM:
        raise MedcneError(f"`dim` must be at most {PRETRAIN_DIM} with `schedule` {schedule!r}: the output descends "
                          f"from {PRETRAIN_DIM} dimensions to `dim`; got {dim}")
    if loss != "cauchy":
        raise MedcneError(f"schedule {schedule!r} trains t-SimCNE's own loss: use loss='cauchy' (got {loss!r}), "
                          "or `schedule` 'stages'")
    return anneal_stages(first_epochs(epochs), lr, first_epochs(warmup, "warmup"), spec)


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


def check_trains(stages) -> None:
    """Refuse a schedule that leaves the map's layer untrained: no epoch at all (the map would be the
    untrained network's), or none from the stage that draws the output layer afresh on (``epochs``
    1,0,0: the map would be a freshly drawn layer's projection). The estimator allows both, for
    features or as a baseline; a run and a sweep cell refuse them."""
    if sum(s.epochs for s in stages) == 0:
        raise MedcneError("epochs are 0 in every stage, so the map would be the untrained network's; "
                          "give at least one epoch, e.g. `epochs` 12,1,6")
    last_new = max((i for i, s in enumerate(stages) if s.new_head), default=0)
    if sum(s.epochs for s in stages[last_new:]) == 0:
        given = ",".join(str(s.epochs) for s in stages)
        raise MedcneError(f"`epochs` {given} train no stage at the map's {stages[last_new].out_dim} dimensions, so "
                          "the map would be a freshly drawn, untrained layer's; give stage 2 or 3 at least one "
                          "epoch, e.g. `epochs` " + ",".join(map(str, (stages[0].epochs, 0, 1))))
