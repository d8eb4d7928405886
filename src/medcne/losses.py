"""Contrastive losses as pure functions of the outputs ``z`` (docs/design.md, "The method").

Layout of ``z``: shape (2B, d), the first view of every image in rows 0..B-1 and
the second view in rows B..2B-1, so that rows ``i`` and ``i + B`` are partners.
For every anchor ``i`` with partner ``p(i)``::

    loss_i = -log( s(z_i, z_p(i)) / sum_{k != i} s(z_i, z_k) )

and the loss is the mean over the 2B anchors. The sum runs over all 2B - 1 other
views (the partner included). Both losses are computed in float32 whatever the
autocast mode, since the log-sum over a large batch loses too much in bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import MedcneError


def infonce_from_logsim(logsim: torch.Tensor) -> torch.Tensor:
    """InfoNCE from a (2B, 2B) matrix of log-similarities; rows i, i+B are partners."""
    n = logsim.shape[0]
    b = n // 2
    eye = torch.eye(n, dtype=torch.bool, device=logsim.device)
    logsim = logsim.masked_fill(eye, float("-inf"))
    # Made on the device: no index tensor copied from host memory in a training step.
    partner = torch.arange(n, device=logsim.device).add_(b).remainder_(n)
    # cross_entropy(row, partner) = -logsim[i, p(i)] + logsumexp_{k != i} logsim[i, k]
    return F.cross_entropy(logsim, partner)


def _fp32(loss):
    """Run ``loss`` with autocast off, so its matmuls stay float32 inside an autocast region."""
    import functools

    @functools.wraps(loss)
    def wrapper(z: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):
            return loss(z, *args, **kwargs)

    return wrapper


def _check(z: torch.Tensor) -> torch.Tensor:
    if z.ndim != 2 or z.shape[0] % 2 or z.shape[0] < 4:
        raise MedcneError(
            f"z must have shape (2B, d) with B >= 2 (two views per image); got {tuple(z.shape)}"
        )
    return z.float()


@_fp32
def cauchy_infonce(z: torch.Tensor) -> torch.Tensor:
    """t-SimCNE loss with the Cauchy similarity ``1 / (1 + ||z_i - z_k||^2)``.

    Parameters
    ----------
    z : Tensor, shape (2B, d)
        Rows i and i + B are the two views of image i.

    Returns
    -------
    Tensor, shape ()
        Mean loss over the 2B anchors, float32.
    """
    z = _check(z)
    sq = (z * z).sum(1)
    # ||x - y||^2 via norms: O(B^2) memory instead of O(B^2 d); clamp the
    # rounding error that can make it slightly negative.
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)).clamp_min(0.0)
    return infonce_from_logsim(-torch.log1p(d2))


@_fp32
def student_t_infonce(z: torch.Tensor, dof: float | torch.Tensor = 1.0, mask: torch.Tensor | None = None,
                      temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """InfoNCE with the Student-t similarity ``(1 + t ||z_i - z_k||^2 / dof) ** (-(dof + 1) / 2)``.

    ``dof = 1`` and ``temperature`` ``t = 1`` is :func:`cauchy_infonce`. The
    reference package writes the kernel ``(1 + T ||.||^2 / (dof / 2))`` with its
    temperature ``T``, 0.5 by default: the same kernel, ``t = 2 T``.

    Parameters
    ----------
    z : Tensor, shape (2B, d)
        Rows i and i + B are the two views of image i.
    dof : float or Tensor
        Degrees of freedom (> 0); large values approach a Gaussian kernel. A
        scalar tensor (a learned dof) keeps its gradient.
    mask : Tensor, shape (d,), optional
        Multiplies every row first: 0 drops an output dimension from the
        distances (and from the gradients) while all shapes stay the same,
        which is how dimension annealing shows the loss only the first dims.
    temperature : float or Tensor
        Multiplies the squared distances (> 0); a scalar tensor (a learned
        temperature) keeps its gradient.

    Returns
    -------
    Tensor, shape ()
        Mean loss over the 2B anchors, float32.
    """
    z = _check(z)
    if mask is not None:
        z = z * mask.to(z.dtype)
    sq = (z * z).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)).clamp_min(0.0)
    if isinstance(temperature, torch.Tensor) or temperature != 1.0:
        d2 = d2 * temperature
    return infonce_from_logsim(torch.log1p(d2 / dof) * (-0.5 * (dof + 1.0)))


@_fp32
def cosine_infonce(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR loss (NT-Xent) with similarity ``exp(cos(z_i, z_k) / temperature)``.

    Parameters
    ----------
    z : Tensor, shape (2B, d)
        Rows i and i + B are the two views of image i.
    temperature : float
        0.5 in the paper's SimCLR baseline.

    Returns
    -------
    Tensor, shape ()
        Mean loss over the 2B anchors, float32.
    """
    if temperature <= 0:
        raise MedcneError(f"temperature must be positive; got {temperature}")
    z = F.normalize(_check(z), dim=1)
    return infonce_from_logsim(z @ z.T / temperature)


LOSSES = {"cauchy": cauchy_infonce, "cosine": cosine_infonce}


def get_loss(name: str):
    """The loss function called ``name`` ('cauchy' or 'cosine')."""
    if name not in LOSSES:
        raise MedcneError(f"loss must be one of 'cauchy', 'cosine'; got {name!r}")
    return LOSSES[name]
