"""What happens at the end of each epoch of a fit: periodic kNN accuracy and checkpoints.

:class:`Monitor` is the ``on_epoch`` callback of :func:`~.loop.train`. It adds
the kNN accuracy of the current output on a fixed sample of labelled images to
the history row every ``knn_every`` epochs, writes a checkpoint at the end of
each stage and at the end of the first epoch after ``checkpoint_minutes``, and
then calls the user's callback. With several processes only rank 0 scores and
writes; all ranks take part in a checkpoint (rank 0 decides when, and saves the
augmentation streams of all ranks) and all call the user's callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..defaults import CHECKPOINT_MINUTES
from ..errors import DivergedError
from ..metrics import knn_accuracy
from ..models import embed
from . import distributed
from .checkpoint import make_checkpoint, save_checkpoint
from .loop import EpochEnd
from .rng import Generators

# Images scored by the periodic kNN accuracy: enough for a stable figure, few
# enough that scoring costs a small share of an epoch.
KNN_POINTS = 5000


class Monitor:
    """The per-epoch callback of a fit.

    Parameters
    ----------
    data : ImageSet
        The training images (for the periodic kNN accuracy).
    device : torch.device
    generators : Generators
        Saved in checkpoints.
    record : dict
        The estimator's parameters and resolved values, saved in checkpoints.
    knn_every : int
        Epochs between kNN scores (0: never; also never without labels).
    checkpoint : path, optional
        Where to write checkpoints (None: never).
    checkpoint_minutes : float
        Time between checkpoints inside a stage (0: every epoch).
    elapsed_before : float
        Seconds of training before a resume (kept in checkpoints).
    callback : callable, optional
        The user's callback, called last with the :class:`EpochEnd`.
    world : distributed.World, optional
        This process among those of the run (default: one process).
    """

    def __init__(self, data, device: torch.device, generators: Generators, record: dict, *,
                 knn_every: int = 0, checkpoint=None, checkpoint_minutes: float = CHECKPOINT_MINUTES,
                 elapsed_before: float = 0.0, callback: Callable[[EpochEnd], None] | None = None,
                 world: distributed.World | None = None):
        self.world = world or distributed.World()
        self.device = device
        self.generators = generators
        self.record = record
        self.n_images = len(data)
        # Saved with each checkpoint, so that a resume on other images is refused (64 images read, once).
        self.data_fingerprint = data.fingerprint(sampled=None) if checkpoint is not None and self.world.is_main else None
        labels, labelled = labelled_images(data)
        self.knn_every = knn_every if len(labelled) and self.world.is_main else 0
        if self.knn_every:
            idx = np.sort(labelled[np.random.default_rng(0).permutation(len(labelled))[:KNN_POINTS]])
            self.knn_images, self.knn_labels = np.asarray(data.images[idx]), labels[idx]
        self.checkpoint = checkpoint
        self.seconds_between = 60.0 * checkpoint_minutes
        self.callback = callback
        self.started = time.monotonic() - elapsed_before
        self.last_save = time.monotonic()

    def __call__(self, end: EpochEnd) -> None:
        if self.knn_every and end.row and end.position.epoch % self.knn_every == 0:
            end.row["knn"] = self.knn(end.model, end.row.get("dim"))
        due = time.monotonic() - self.last_save >= self.seconds_between
        save = self.checkpoint is not None and (end.stage_done or due)
        if self.world.active and self.checkpoint is not None:
            save = distributed.agree(save, self.world)  # each process has its own clock
        if save:
            check_finite_model(end.model, end.position)  # a good checkpoint is never replaced by a bad one
            streams = self._rank_streams()
            if self.world.is_main:
                ck = make_checkpoint(end.model, end.optimizer, end.position, self.generators, self._record(end),
                                     self.n_images, self.seconds(), self.data_fingerprint)
                if streams is not None:
                    ck["rng"]["augment_ranks"] = streams
                save_checkpoint(self.checkpoint, ck)
            self.last_save = time.monotonic()
        if self.callback is not None:
            self.callback(end)

    def _record(self, end: EpochEnd) -> dict:
        """The run's record with the stages being trained (a time budget may have re-chosen them)."""
        if "resolved" not in self.record:
            return self.record
        return {**self.record, "resolved": {**self.record["resolved"], "stages": [s.to_dict() for s in end.stages]}}

    def _rank_streams(self) -> list | None:
        """The augmentation stream of every rank (None with one process): a resume continues them."""
        if not self.world.active:
            return None
        return distributed.gather_objects(self.generators.augment.get_state(), self.world)

    def seconds(self) -> float:
        """Training time so far, including the time before a resume."""
        return time.monotonic() - self.started

    def knn(self, model: torch.nn.Module, dim: int | None = None) -> float:
        """kNN accuracy (%) of the current output on the fixed sample; of its first ``dim``
        outputs when given (dimension annealing: the ones the loss sees now)."""
        was_training = model.training
        model.eval()
        z = embed(model, self.knn_images, self.device, chunk=512)
        model.train(was_training)
        z = z if dim is None else z[:, :dim]
        return float(knn_accuracy(z, self.knn_labels))


def labelled_images(data) -> tuple[np.ndarray | None, np.ndarray]:
    """The class index of each image of ``data`` (-1: no label, as for the class ``unlabelled``) and
    the positions of the labelled ones, which the kNN accuracy scores: none when fewer than two
    classes are labelled (one class would score 100%)."""
    labels = data.known_labels()
    if labels is None:
        return None, np.empty(0, dtype=np.int64)
    labelled = np.flatnonzero(labels >= 0)
    return labels, labelled if len(np.unique(labels[labelled])) >= 2 else labelled[:0]


def check_finite_model(model: torch.nn.Module, position) -> None:
    """Raise :class:`DivergedError` when a weight or buffer is NaN or infinite."""
    finite = all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())
    if not finite:
        raise DivergedError(
            f"the model holds NaN or infinite weights after stage {position.stage + 1}, epoch {position.epoch}; "
            "lower the learning rate (`lr`) and start again (the last checkpoint is kept)"
        )
