"""Dimension annealing: one training stage whose loss sees fewer and fewer output dimensions.

The newer schedule of the t-SimCNE authors (tsimcne 0.4): the head keeps its
128 outputs throughout; the loss sees only the first ``d`` of them, ``d`` going
from ``start_dim`` (128) down to ``end_dim`` (2) over training; the kernel is a
Student t with ``dof`` degrees of freedom (1: the Cauchy kernel of the paper);
gradients are clipped by value. At the end the head keeps only its first
``end_dim`` outputs (:func:`keep_first`), which is the map. The kernel's
temperature (a scale of the squared distances) and ``dof`` may be learned
(:class:`~medcne.models.LearnedKernel`): scalar parameters of the model, trained with it.

Everything here is a pure function of the share of the planned training that
is done, so a resumed run sees the same dimension at the same step, and a time
budget that re-plans the length moves the end of the annealing, not its shape.
The unused dimensions are multiplied by 0 (a mask of fixed shape), never sliced
off, so that the shapes of a step never change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn

from ..errors import MedcneError
from ..losses import student_t_infonce
from ..models import LearnedKernel

SHAPES = ("cosine", "linear", "piecewise-cosine", "piecewise-linear")
# The reference's piecewise schedules: 2/3 of the epochs at full width, 1/8 going down, the rest at end_dim.
PIECEWISE_HOLD = 2 / 3
PIECEWISE_END = 1 - 2 / 3 - 1 / 8
DEFAULT_CLIP = 4.0
SCHEDULES = ("stages", "anneal")
LEARNED = "learned"
KEYS = ("shape", "hold_share", "end_share", "dof", "dof_end", "temperature", "clip")
# The learned scalars' share of the learning rate (the reference gives its loss's parameters lr / 100).
KERNEL_LR_SCALE = 0.01


@dataclass(frozen=True)
class AnnealSpec:
    """How the dimension seen by the loss goes down, and the kernel and clipping of that stage.

    Attributes
    ----------
    shape : {'cosine', 'linear', 'piecewise-cosine', 'piecewise-linear'}
        The curve from ``start_dim`` to ``end_dim``. The piecewise ones hold
        ``start_dim`` for the first ``hold_share`` of training (2/3 by default).
    start_dim, end_dim : int
        Output dimensions seen at the start (the head's width) and at the end (the map).
    hold_share : float or None
        Share of training at ``start_dim`` before the descent; None: 0 for
        'cosine' and 'linear', 2/3 for the piecewise shapes (the reference's).
    end_share : float or None
        Share of training at ``end_dim`` after the descent; None: 0 for
        'cosine' and 'linear', 5/24 for the piecewise shapes (the reference's).
    dof : float or 'learned'
        Degrees of freedom of the Student-t kernel at the start (1: Cauchy);
        'learned': a parameter of the model from 1 on (:class:`~medcne.models.LearnedKernel`).
    dof_end : float or None
        If given, ``dof`` goes to ``dof_end`` along a half cosine over training.
    temperature : float or 'learned'
        Multiplies the squared distances in the kernel (1: the kernel of the three
        stages, the reference's temperature 0.5); 'learned': a parameter from 1 on.
    clip : float
        Gradients are clipped to ``[-clip, clip]`` element-wise (0: off).
    """

    shape: str = "cosine"
    start_dim: int = 128
    end_dim: int = 2
    hold_share: float | None = None
    end_share: float | None = None
    dof: float | str = 1.0
    dof_end: float | None = None
    clip: float = DEFAULT_CLIP
    temperature: float | str = 1.0

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise MedcneError(f"anneal shape must be one of {', '.join(map(repr, SHAPES))}; got {self.shape!r}")
        if not (isinstance(self.end_dim, int) and 1 <= self.end_dim <= self.start_dim):
            raise MedcneError(f"anneal end_dim must be an integer from 1 to start_dim ({self.start_dim}); "
                              f"got {self.end_dim!r}")
        hold, end = self.shares
        if not (0 <= hold and 0 <= end and hold + end < 1):
            raise MedcneError(f"anneal hold_share and end_share must be >= 0 and leave some training for the "
                              f"descent (sum < 1); got {hold:g} and {end:g}")
        for name, what in (("dof", "degrees of freedom of the t kernel"), ("dof_end", "degrees of freedom at "
                           "the end"), ("temperature", "scale of the squared distances in the kernel")):
            value = getattr(self, name)
            learnable = name != "dof_end"
            if value is None and not learnable or value == LEARNED and learnable:
                continue
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf):
                raise MedcneError(f"anneal {name} ({what}) must be a positive number"
                                  f"{' or ' + repr(LEARNED) if learnable else ''}; got {value!r}")
        if self.dof == LEARNED and self.dof_end is not None:
            raise MedcneError(f"anneal dof='learned' and dof_end={self.dof_end!r} do not go together: "
                              "a learned dof follows its gradient, not a schedule; drop one")
        if not (isinstance(self.clip, (int, float)) and 0 <= self.clip < math.inf):
            raise MedcneError(f"anneal clip must be a number >= 0 (0: no clipping); got {self.clip!r}")

    @property
    def shares(self) -> tuple[float, float]:
        """(hold_share, end_share) with the shape's defaults filled in."""
        piecewise = self.shape.startswith("piecewise")
        hold = self.hold_share if self.hold_share is not None else (PIECEWISE_HOLD if piecewise else 0.0)
        end = self.end_share if self.end_share is not None else (PIECEWISE_END if piecewise else 0.0)
        return float(hold), float(end)

    @property
    def learned(self) -> tuple[str, ...]:
        """Names of the kernel's learned values ('temperature', 'dof'), in that order."""
        return tuple(n for n in ("temperature", "dof") if getattr(self, n) == LEARNED)

    def to_dict(self) -> dict:
        return asdict(self)


def dim_at(spec: AnnealSpec, share: float) -> int:
    """Dimensions the loss sees once ``share`` (0..1] of the planned training is done.

    With ``share = (step + 1) / steps``, the first step sees ``start_dim`` (as the
    reference's first epoch) and the last step ``end_dim``. The curve is the
    reference's: ``floor(end + (start + 1 - end) * f)`` with ``f`` going from 1 to
    0 (half a cosine, or a line), clipped to ``[end_dim, start_dim]``.
    """
    hold, end = spec.shares
    t = (share - hold) / (1.0 - hold - end)
    t = min(max(t, 0.0), 1.0)
    f = 0.5 * (1.0 + math.cos(math.pi * t)) if spec.shape.endswith("cosine") else 1.0 - t
    d = math.floor(spec.end_dim + (spec.start_dim + 1 - spec.end_dim) * f)
    return min(max(d, spec.end_dim), spec.start_dim)


def dof_at(spec: AnnealSpec, share: float) -> float:
    """Degrees of freedom of the kernel at ``share`` of training: fixed, or half a cosine to ``dof_end``."""
    if spec.dof_end is None:
        return float(spec.dof)
    s = min(max(share, 0.0), 1.0)
    return spec.dof_end + 0.5 * (spec.dof - spec.dof_end) * (1.0 + math.cos(math.pi * s))


def share_of(step: int, epochs: int, steps_per_epoch: int) -> float:
    """Share of a stage of ``epochs`` done after its step ``step`` (0-based) is taken."""
    return (step + 1) / max(epochs * steps_per_epoch, 1)


_MASKS: dict = {}


def dim_mask(start_dim: int, d: int, device: torch.device) -> torch.Tensor:
    """Float mask of shape (start_dim,), 1 on the first ``d`` entries: same shape at every ``d``.

    Kept per (device, size, d): at most ``start_dim`` small tensors, and no copy
    from host memory inside a training step once made.
    """
    key = (str(device), start_dim, d)
    mask = _MASKS.get(key)
    if mask is None:
        mask = _MASKS[key] = (torch.arange(start_dim, device=device) < d).float()
    return mask


def param_groups(model: nn.Module, params: list) -> list:
    """``params`` as optimiser groups: the model's learned kernel scalars in a group of their own
    at ``KERNEL_LR_SCALE`` of the learning rate (``lr_scale``); just ``params`` without them."""
    kernel = getattr(model, "kernel", None)
    if kernel is None:
        return params
    ids = set(map(id, kernel.parameters()))
    scalars = [p for p in params if id(p) in ids]
    rest = [p for p in params if id(p) not in ids]
    return [{"params": rest}] + ([{"params": scalars, "lr_scale": KERNEL_LR_SCALE}] if scalars else [])


def kernel_values(model: nn.Module) -> dict[str, float]:
    """The learned kernel's values for the epoch's history row ({} without one): read by the host,
    so only once per epoch, after the epoch's loss has been read."""
    kernel = getattr(model, "kernel", None)
    if kernel is None:
        return {}
    with torch.no_grad():
        return {name: float(v) for name, v in kernel.values().items()}


def step_loss(spec: AnnealSpec, share: float, device: torch.device, kernel: LearnedKernel | None = None):
    """The loss of a step at ``share`` of training: Student-t InfoNCE on the first ``dim_at`` outputs
    (with the learned temperature and dof of ``kernel`` where the spec asks for them)."""
    if spec.learned and kernel is None:
        raise MedcneError(f"anneal {' and '.join(spec.learned)}='learned' needs the model's learned kernel "
                          "(TSimCNENet(..., learned=spec.learned))")
    mask = dim_mask(spec.start_dim, dim_at(spec, share), device)
    learned = kernel.values() if spec.learned else {}
    dof = learned["dof"] if "dof" in learned else dof_at(spec, share)
    temperature = learned["temperature"] if "temperature" in learned else float(spec.temperature)
    return partial(student_t_infonce, dof=dof, mask=mask, temperature=temperature)


def parse_schedule(text, end_dim: int = 2, start_dim: int = 128) -> AnnealSpec | None:
    """``'stages'`` -> None; ``'anneal'`` or ``'anneal:shape=piecewise-cosine,dof=2,end_share=0.1'`` -> a spec.

    Keys after ``anneal:`` are the fields of :class:`AnnealSpec` except the
    dimensions (which come from the head and the map's ``dim``).
    """
    if not isinstance(text, str):
        raise MedcneError(f"`schedule` must be 'stages' or 'anneal' (optionally 'anneal:key=value,...'); got {text!r}")
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in SCHEDULES or (name == "stages" and rest):
        raise MedcneError(f"`schedule` must be 'stages' or 'anneal' (optionally 'anneal:key=value,...'); got {text!r}")
    if name == "stages":
        return None
    kwargs: dict = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or key not in KEYS:
            raise MedcneError(f"`schedule` {text!r}: each setting must be key=value with key one of "
                              f"{', '.join(KEYS)}; got {item!r}")
        learnable = key in ("dof", "temperature") and value == LEARNED
        kwargs[key] = value if key == "shape" or learnable else _number(text, key, value)
    return AnnealSpec(start_dim=start_dim, end_dim=end_dim, **kwargs)


def _number(text: str, key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        learnable = f" or {LEARNED!r}" if key in ("dof", "temperature") else ""
        raise MedcneError(f"`schedule` {text!r}: {key} must be a number{learnable}; got {value!r}") from None


def keep_first(model, d: int) -> None:
    """Cut the model's last Linear to its first ``d`` outputs: the map the annealed loss saw at the end.

    Output ``k`` of the cut layer is output ``k`` of the full one (same weights and bias).
    """
    last = model.last_layer
    if last.out_features == d:
        return
    with torch.no_grad():
        weight, bias = last.weight[:d].clone(), last.bias[:d].clone()
        new = model.replace_last(d)
        new.weight.copy_(weight)
        new.bias.copy_(bias)


def loss_of_step(loss_fn, stage, step: int, steps_per_epoch: int, device: torch.device,
                 kernel: LearnedKernel | None = None):
    """(loss, dimension seen) of step ``step`` (0-based, within ``stage``): the run's
    ``loss_fn`` and None for a stage without annealing. ``kernel``: the model's learned
    kernel scalars, if any."""
    spec = stage.anneal
    if spec is None:
        return loss_fn, None
    share = share_of(step, stage.epochs, steps_per_epoch)
    return step_loss(spec, share, device, kernel), dim_at(spec, share)


def clip_gradients(optimizer: torch.optim.Optimizer, stage) -> None:
    """Clip the gradients of the optimiser's parameters by value, as the annealed stage asks
    (no-op otherwise); element-wise on the device, so the host never waits."""
    if stage.anneal is None or not stage.anneal.clip:
        return
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    torch.nn.utils.clip_grad_value_(params, stage.anneal.clip)


def finish_schedule(model, stages) -> None:
    """After training: an annealed last stage leaves the map in the first ``end_dim`` outputs;
    keep only those (:func:`keep_first`), so that the model outputs the map. Else nothing."""
    if stages and stages[-1].anneal is not None:
        keep_first(model, stages[-1].anneal.end_dim)
