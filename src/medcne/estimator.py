"""`TSimCNE`: the scikit-learn style estimator.

>>> from medcne import TSimCNE, load_sample
>>> data = load_sample()
>>> est = TSimCNE(epochs=(20, 2, 10), batch_size=256, width=16, random_state=0)
>>> Z = est.fit_transform(data)            # (2000, 2) float32
>>> Z_new = est.transform(other_images)    # same map, deterministic
>>> H = est.features(data)                 # (2000, 512 * width / 64) backbone features
>>> est.save("model.pt"); est2 = TSimCNE.load("model.pt")

``__init__`` only stores parameters; :meth:`fit` validates them and resolves
``'auto'`` values into attributes ending in ``_``. ``fit`` reads as the method:
resolve, build (model, views, data on the device), train (:mod:`medcne.train`),
embed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from .datasets import ImageSet, as_imageset
from .defaults import CHECKPOINT_MINUTES, DIM, HEAD_INIT, PAPER, PRESET
from .device import amp_dtype, resolve_device, resolve_precision
from .errors import MedcneError
from .losses import get_loss
from .models import TSimCNENet, embed
from .resolve import resolve
from .train import checkpoint as ckpt
from .train import distributed
from .train.duration import (
    RESERVE_SECONDS,
    RESERVE_SHARE,
    BudgetPlan,
    budget_stages,
    duration_message,
    embedding_seconds,
    expected_seconds,
    schedule_message,
    time_step,
)
from .train.loop import compile_backbone, steps_per_epoch, train
from .train.monitor import Monitor
from .train.rng import Generators, as_rng
from .train.stages import Stage, parse_epochs
from .train.store import make_store

QUICK_HINT = "`medcne fit ... --quick`"


def _rank0(obj):
    """Rank 0's ``obj`` on every process (itself with one process)."""
    return distributed.gather_objects(obj)[0]


class TSimCNE(BaseEstimator):
    """t-SimCNE: contrastive learning straight to a 2D map.

    Parameters
    ----------
    dim : int
        Output dimension of the map (2; 3 for a 3D map).
    epochs : tuple of 3 ints or str
        Epochs of the three stages (paper: 1000, 50, 450). With ``loss='cosine'``
        only the first number is used.
    batch_size : int
        Images per batch (2 views each); capped at the dataset size.
    lr : float or 'auto'
        Peak learning rate; 'auto' is 0.03 * batch_size / 256.
    stage3_lr_factor : float
        Learning rate of stage 3 relative to ``lr`` (paper: 1/1000).
    warmup : tuple of 3 ints
        Warm-up epochs per stage (paper: 10, 0, 10).
    head_init : {'normal', 'uniform'}
        Weights of stage 2's fresh 2D layer: N(0, 1) as the reference code, or
        PyTorch's default U(±1/sqrt(1024)) (about 55x smaller).
    loss : {'cauchy', 'cosine'}
        'cauchy' is t-SimCNE; 'cosine' is the SimCLR baseline (one stage,
        128-D output, temperature 0.5; use :meth:`features` for its map).
    preset : {'simclr', 'rot90', 'rotate'}
        Augmentations (see :class:`medcne.augment.Augmenter`).
    crop, jitter, grayscale : bool
        Ablations of the augmentations.
    backbone : {'resnet18', 'resnet34', 'resnet50'}
    width : int
        Base channels of the backbone (64 in the paper; 16 or 32 on a CPU).
    small_stem : 'auto' or bool
        3x3 stem without max-pool; 'auto' uses it for images up to 32 px.
    device : {'auto', 'cpu', 'cuda'}
    precision : {'auto', 'fp32', 'bf16'}
        Arithmetic of the backbone: 'auto' is bf16 autocast where the device
        computes bf16 natively (CUDA GPUs; CPUs with AVX512-BF16 or AMX), else
        float32. The head, the loss and the map are float32 in every case.
    budget : float, str or None
        A time budget for the fit (seconds, or e.g. '15m'): a few timed steps
        choose the epochs of the three stages, in the proportions of ``epochs``,
        so that training and placing the images end within it (a small share
        is kept for writing and evaluating a run). None: ``epochs`` as given.
    compile : bool
        ``torch.compile`` the model (faster on GPUs for long runs).
    knn_every : int
        When labels are known, kNN accuracy of the current output every this many
        epochs in ``history_`` (0: off).
    checkpoint : str or Path, optional
        Where to write checkpoints: at the end of each stage, and at the end of
        the first epoch after ``checkpoint_minutes`` have passed (0: every epoch).
    checkpoint_minutes : float
    random_state : int, numpy Generator or None
    verbose : bool
        Progress bar and the expected duration.
    sync_bn : 'auto' or bool
        With several processes (torchrun), BatchNorm over the global batch
        (:func:`medcne.train.distributed.convert_sync_batchnorm` says why);
        'auto': on whenever there is more than one process. No effect with one.
    stream : 'auto' or bool
        Read training batches from the dataset's store in the background instead
        of holding all images in memory (:class:`medcne.train.store.StreamingStore`):
        'auto' streams a lazily read dataset (an on-disk store, PCam) that does not
        fit in memory. Same batches, same result either way.

    Attributes
    ----------
    stages_ : tuple of Stage
    batch_size_, lr_ : resolved values
    device_ : torch.device
    precision_ : {'bf16', 'fp32'}
    budget_ : float or None
        The budget in seconds.
    small_stem_ : bool
    image_shape_ : (H, W, C)
    fill_ : tuple of float or None
        Colour of the corners rotations uncover (the dataset's border colour).
    model_ : TSimCNENet
    history_ : list of dict
        One row per epoch: stage, epoch, loss, lr, views_per_s (and knn).
    fit_seconds_ : float
        Training time, including the time before a resume.
    embedding_ : ndarray (N, dim)
        The map of the training images.
    world_ : medcne.train.distributed.World
        This process among those of the run (rank, size); one process unless started
        by torchrun. ``batch_size`` is then the global batch, ``rank_batch_size_`` each
        process's share of it, and ``lr`` 'auto' follows the global batch.
    """

    def __init__(
        self,
        dim: int = DIM,
        epochs=PAPER["epochs"],
        batch_size: int = PAPER["batch_size"],
        lr=PAPER["lr"],
        stage3_lr_factor: float = PAPER["stage3_lr_factor"],
        warmup=PAPER["warmup"],
        head_init: str = HEAD_INIT,
        loss: str = "cauchy",
        preset: str = PRESET,
        crop: bool = True,
        jitter: bool = True,
        grayscale: bool = True,
        backbone: str = PAPER["backbone"],
        width: int = PAPER["width"],
        small_stem="auto",
        device: str = "auto",
        precision: str = "auto",
        budget=None,
        compile: bool = False,
        knn_every: int = 0,
        checkpoint=None,
        checkpoint_minutes: float = CHECKPOINT_MINUTES,
        random_state=None,
        verbose: bool = True,
        sync_bn="auto",
        stream="auto",
    ):
        self.dim = dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.stage3_lr_factor = stage3_lr_factor
        self.warmup = warmup
        self.head_init = head_init
        self.loss = loss
        self.preset = preset
        self.crop = crop
        self.jitter = jitter
        self.grayscale = grayscale
        self.backbone = backbone
        self.width = width
        self.small_stem = small_stem
        self.device = device
        self.precision = precision
        self.budget = budget
        self.compile = compile
        self.knn_every = knn_every
        self.checkpoint = checkpoint
        self.checkpoint_minutes = checkpoint_minutes
        self.random_state = random_state
        self.verbose = verbose
        self.sync_bn = sync_bn
        self.stream = stream

    # -- fitting -----------------------------------------------------------
    def fit(self, X, y=None, *, resume_from=None, callback=None, new_lr: bool = False) -> TSimCNE:
        """Train on images ``X`` (ImageSet, uint8 array N x H x W x C, or torch Dataset).

        Parameters
        ----------
        resume_from : path, optional
            A checkpoint of an interrupted fit with the same parameters and data;
            training continues where it stopped, giving the same result.
        callback : callable, optional
            Called with a :class:`medcne.train.EpochEnd` after every epoch.
        new_lr : bool
            With ``resume_from``: the learning rate may differ from the
            checkpoint's (to continue a run that diverged, with a lower one).
        """
        from .augment import augmenter_for

        started = time.monotonic()
        data = as_imageset(X)
        self._resolve(data)
        augment = augmenter_for(data.images, self.preset, **self._switches())
        self.fill_ = augment.config.fill
        world = self.world_
        gens = Generators.from_rng(as_rng(self.random_state), self.device_, world.rank, world.size)
        self.model_ = self._new_model(self.stages_[0].out_dim, gens.init)
        self.model_.amp_dtype = amp_dtype(self.precision_)
        position, opt_state, elapsed = None, None, 0.0
        if resume_from is not None:
            position, opt_state, elapsed = self._resume(resume_from, gens, len(data), new_lr)
        if self.sync_bn_:
            self.model_ = distributed.convert_sync_batchnorm(self.model_, self.device_.type)
        store = make_store(data, self.device_, self.stream)
        loss_fn = get_loss(self.loss)
        backbone = compile_backbone(self.model_, not self.sync_bn_) if self.compile else None  # one compile per run
        plan = None
        if position is None and (self.verbose or self.budget_ is not None):
            # Every rank times: synced BatchNorm steps are collective.
            timing = time_step(self.model_, store, self.rank_batch_size_, augment, loss_fn, backbone)
            if self.budget_ is not None:
                plan = self._fit_budget(timing, len(data), started)
            secs = expected_seconds(timing, self.stages_, len(data), self.batch_size_)
            if self.verbose and world.is_main:
                print(duration_message(secs, self.device_, QUICK_HINT, timing.warmup if self.compile else 0.0),
                      flush=True)
        monitor = Monitor(data, self.device_, gens, self.record(), knn_every=self.knn_every,
                          checkpoint=self.checkpoint, checkpoint_minutes=self.checkpoint_minutes,
                          elapsed_before=elapsed, callback=callback, world=world)
        pos = train(
            self.model_, store, self.stages_, batch_size=self.batch_size_, augment=augment, loss_fn=loss_fn,
            generators=gens, position=position, optimizer_state=opt_state, on_epoch=monitor,
            backbone=backbone, progress=self.verbose, deadline=plan and plan.deadline, replan=plan,
            **distributed.training_arguments(self.world_, self.sync_bn_),
        )
        if pos.stages is not None and pos.stages != self.stages_:
            self.stages_ = pos.stages
            if self.verbose and world.is_main:
                print(f"at the speed measured in training, the {schedule_message(self.stages_, self.budget_)}",
                      flush=True)
        self.history_ = pos.history
        self.fit_seconds_ = monitor.seconds()
        self.embedding_, self.model_ = distributed.final_embedding(self.model_, data.images, self.device_,
                                                                   self.world_)
        return self

    def _resume(self, path, gens: Generators, n: int, new_lr: bool = False):
        saved = ckpt.load_checkpoint(path)
        if self.budget_ is not None:
            # The budget chose the schedule when the run started: keep it, do not choose again.
            stages = tuple(Stage(**d) for d in saved["record"]["resolved"]["stages"])
            self.stages_ = tuple(replace(s, lr=new.lr) for s, new in zip(stages, self.stages_, strict=True)) \
                if new_lr else stages
        ckpt.check_resume(saved, self.record(), n, ignore_lr=new_lr)
        position, opt_state = ckpt.restore(saved, self.model_, gens, self.stages_)
        note = distributed.resume_note(saved, self.world_, self.batch_size_)
        if note and self.verbose:
            print(note, flush=True)
        return position, opt_state, saved.get("elapsed", 0.0)

    def _fit_budget(self, timing, n: int, started: float) -> BudgetPlan:
        """Choose the epochs that fit the budget from the timed steps; the plan that keeps
        training on time from the speed measured at each epoch's end."""
        reserve = RESERVE_SECONDS + RESERVE_SHARE * self.budget_ + embedding_seconds(timing, n, self.batch_size_)
        seconds = self.budget_ - reserve - (time.monotonic() - started)
        # Each process timed its own steps: all of them follow rank 0's choice.
        self.stages_ = _rank0(budget_stages(self.stages_, timing, n, self.batch_size_, seconds))
        if self.verbose and self.world_.is_main:
            print(schedule_message(self.stages_, self.budget_), flush=True)
        return BudgetPlan(self.stages_, time.monotonic() + seconds, steps_per_epoch(n, self.batch_size_),
                          2 * self.batch_size_, agree=_rank0)

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        """``fit(X)`` then the map of ``X``: (N, dim) float32."""
        return self.fit(X, **fit_params).embedding_

    def validate(self, X) -> TSimCNE:
        """Check the parameters against images ``X`` and resolve 'auto' values, without training.

        Raises :class:`~medcne.errors.MedcneError` naming the bad parameter; used
        by the CLI so that bad input fails before anything is written.
        """
        self._resolve(as_imageset(X))
        return self

    def _resolve(self, data: ImageSet) -> None:
        for name, value in resolve(self, data).items():
            setattr(self, name, value)

    def _switches(self) -> dict:
        return dict(crop=self.crop, jitter=self.jitter, grayscale=self.grayscale)

    def _new_model(self, out_dim: int, generator=None) -> TSimCNENet:
        return TSimCNENet(self.backbone, self.image_shape_[2], int(self.width), self.small_stem_, out_dim, generator)

    # -- the record: parameters and resolved values as JSON ----------------------
    def resolved_params(self) -> dict:
        """The resolved values (after :meth:`validate` or :meth:`fit`) as plain JSON values."""
        return {
            "batch_size": self.batch_size_, "lr": self.lr_, "device": str(self.device_),
            "precision": self.precision_, "budget_seconds": self.budget_,
            "small_stem": self.small_stem_, "image_shape": list(self.image_shape_),
            "stages": [s.to_dict() for s in self.stages_],
            "world_size": getattr(self, "world_", distributed.World()).size,
            "rank_batch_size": getattr(self, "rank_batch_size_", self.batch_size_),
            "sync_bn": getattr(self, "sync_bn_", False),
            # Known once fit has looked at the images (the dataset's border colour).
            "fill": None if getattr(self, "fill_", None) is None else list(self.fill_),
        }

    def record(self) -> dict:
        """``{"params": ..., "resolved": ...}``: what params.json, checkpoints and model files store.

        :meth:`from_record` turns it back into an estimator.
        """
        params = self.get_params()
        params["random_state"] = params["random_state"] if isinstance(params["random_state"], int) else None
        params["checkpoint"] = None if params["checkpoint"] is None else str(params["checkpoint"])
        params["epochs"] = list(parse_epochs(self.epochs))
        params["warmup"] = list(parse_epochs(self.warmup))
        return {"params": params, "resolved": self.resolved_params()}

    @classmethod
    def from_record(cls, record: dict, device: str = "auto") -> TSimCNE:
        """An estimator with the parameters and resolved values of ``record`` (no model)."""
        params = dict(record["params"])
        params["epochs"], params["warmup"] = tuple(params["epochs"]), tuple(params["warmup"])
        est = cls(**{**params, "device": device})
        r = record["resolved"]
        est.batch_size_, est.lr_, est.small_stem_ = r["batch_size"], r["lr"], r["small_stem"]
        est.image_shape_ = tuple(r["image_shape"])
        est.stages_ = tuple(Stage(**d) for d in r["stages"])
        est.fill_ = None if r.get("fill") is None else tuple(r["fill"])
        est.device_ = resolve_device(device)
        # Placing images needs no bit-exact arithmetic: a bf16 model runs in float32 where bf16 is slow.
        est.precision_ = resolve_precision("auto" if est.precision == "bf16" else est.precision, est.device_)
        est.budget_ = r.get("budget_seconds")
        return est

    # -- using a fitted model ----------------------------------------------
    def transform(self, X) -> np.ndarray:
        """The map of images ``X``: (N, dim) float32; deterministic, no augmentation."""
        return self._apply("forward", X)

    def features(self, X) -> np.ndarray:
        """Backbone features h of ``X``: (N, num_features) float32 (512 for ResNet18 at width 64)."""
        return self._apply("forward_features", X)

    def _apply(self, method: str, X) -> np.ndarray:
        self._check_fitted()
        data = as_imageset(X)
        if data.image_shape != tuple(self.image_shape_):
            raise MedcneError(
                f"images must be {self.image_shape_} (H, W, C) like the training images; got {data.image_shape}; "
                "resize with size= / --size and channels= / --channels"
            )
        self.model_.eval()
        return embed(getattr(self.model_, method), data.images, self.device_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise MedcneError("this TSimCNE is not fitted yet; call fit(X) or TSimCNE.load(path) first")

    # -- persistence -------------------------------------------------------
    def save(self, path) -> Path:
        """Write the fitted model: a plain dict (record, state dict, history), atomically."""
        self._check_fitted()
        return ckpt.save_model(path, self.model_, self.record(), self.history_)

    @classmethod
    def load(cls, path, device: str = "auto") -> TSimCNE:
        """Read a model written by :meth:`save` (``weights_only=True``: no code runs)."""
        state = ckpt.load_model(path)
        est = cls.from_record(state["record"], device)
        est.model_ = est._new_model(state["out_dim"])
        est.model_.load_state_dict(state["state_dict"])
        est.model_.amp_dtype = amp_dtype(est.precision_)
        est.model_.to(est.device_).eval()
        est.history_ = list(state["history"])
        return est
