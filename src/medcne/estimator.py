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
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from .augment import augmenter_for
from .datasets import ImageSet, as_imageset
from .defaults import CHECKPOINT_MINUTES, DIM, HEAD_INIT, PAPER, PRESET
from .errors import NotFittedError
from .models import TSimCNENet, embed
from .resolve import all_or_nothing, record_params, resolve, resolve_record
from .train import checkpoint as ckpt
from .train import session


class TSimCNE(BaseEstimator):
    """t-SimCNE: contrastive learning straight to a 2D map.

    Parameters
    ----------
    dim : int
        Output dimension of the map (2; 3 for a 3D map).
    epochs : tuple of 3 ints or str
        Epochs of the three stages (paper: 1000, 50, 450). With ``loss='cosine'``
        only the first number is used. ``(0, 0, 0)`` gives the map of the untrained
        network, a baseline (``fit_run`` and the command line refuse it).
    batch_size : int
        Images per batch (2 views each); capped at the dataset size.
    lr : float or 'auto'
        Peak learning rate; 'auto' is 0.03 * batch_size / 256.
    stage3_lr_factor : float
        Learning rate of stage 3 relative to ``lr`` (paper: 1/1000).
    warmup : tuple of 3 ints
        Warm-up epochs per stage (paper: 10, 0, 10). A warm-up as long as its stage or
        longer never lets the learning rate anneal (the paper's 10 with a few epochs):
        ``fit`` warns (a :class:`~medcne.errors.MedcneWarning`) and suggests a shorter one.
        With a ``budget`` it is a number of epochs kept shorter than each chosen stage.
    head_init : {'normal', 'uniform'}
        Weights of stage 2's fresh 2D layer: N(0, 1) as the reference code, or
        PyTorch's default U(±1/sqrt(1024)) (about 55x smaller).
    loss : {'cauchy', 'cosine'}
        'cauchy' is t-SimCNE; 'cosine' is the SimCLR baseline (one stage,
        128-D output, temperature 0.5; use :meth:`features` for its map).
    schedule : str
        How training gets down to ``dim``: 'stages', the paper's three stages;
        'anneal', the reference package's newer single stage (tsimcne 0.4): the
        head keeps 128 outputs and the loss sees the first d, d going from 128
        to ``dim`` along half a cosine over the planned training; Student-t
        kernel with 1 degree of freedom (the Cauchy kernel); gradients clipped
        at ±4 by value; it trains ``epochs`` epochs (one number, or the first of
        three: the reference's 1000) with the first ``warmup`` (10). Settings:
        'anneal:shape=piecewise-cosine,dof=2,end_share=0.1'; 'temperature=learned'
        and 'dof=learned' train those kernel values with the model (see
        :class:`medcne.train.anneal.AnnealSpec` and docs/schedules.md).
    preset : {'simclr', 'rot90', 'rotate', 'none'}
        Augmentations (see :class:`medcne.augment.Augmenter`); 'none' keeps the orientation (crops and
        colour only, no flips: a mirrored organ stays another image).
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
        ``torch.compile`` the model and the training augmentation (faster on GPUs for long runs).
    knn_every : int
        When ``X`` carries labels (an ImageSet, or a torch Dataset of (image,
        label)), kNN accuracy of the current output every this many epochs in
        ``history_`` (0: off). ``y`` of :meth:`fit` is ignored, as for any
        unsupervised scikit-learn estimator: on images without labels ``fit`` warns
        that the kNN column stays empty.
    checkpoint : str or Path, optional
        Where to write checkpoints: at the end of each stage, and at the end of
        the first epoch after ``checkpoint_minutes`` have passed (0: every epoch).
    checkpoint_minutes : float
    random_state : int, numpy Generator or None
        Seeds the fit: the initial weights (also of stage 2's new layer), the
        order of the images and the augmentations. An int (0 to 2**32 - 1) seeds
        each fit alike. A ``np.random.Generator`` is drawn from, and its state
        is used: the same object passed to two fits (or fitted twice) gives two
        different maps, while two Generators made alike
        (``np.random.default_rng(5)`` twice) give the same map. None: a new seed
        from the operating system at every fit. The same seed gives the same map
        bit for bit only on the same kind of machine (CPU or GPU model, and the
        same medcne and torch) with the same ``precision`` and the same number
        of torch threads (``torch.get_num_threads()``): another thread count
        sums in another order, and training carries the difference into a
        different map (more so in bf16).
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
    stream_ : bool
        Whether training streams the images (``stream`` resolved against the memory
        available when the data were checked; recorded in params.json).
    image_shape_ : (H, W, C)
    fill_ : tuple of float or None
        Colour of the corners rotations uncover (the dataset's border colour).
    model_ : TSimCNENet
    history_ : list of dict
        One row per epoch: stage, epoch, loss, lr, views_per_s (and knn).
    fit_seconds_ : float
        Training time, including the time before a resume.
    embedding_ : ndarray (N, dim)
        The map of the training images (N, 128 with ``loss='cosine'``).
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
        schedule: str = "stages",
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
        self.schedule = schedule
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
        """Train on images ``X`` (ImageSet, uint8 array N x H x W x C, or torch Dataset); ``y`` is ignored
        (labels for ``knn_every`` come with ``X``). A path, ``np.load``'s arrays or a dict are refused with
        what to pass instead (``medcne.load_dataset(path)``, ``X['images']``).

        A fit that does not finish (interrupted, as by Ctrl-C or Jupyter's "Interrupt kernel", or
        failed, as with :class:`~medcne.errors.DivergedError`) leaves the estimator as it was before
        the call: the previous fit intact, or not fitted. Its checkpoint, if any, is kept for
        ``resume_from``.

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
        started = time.monotonic()
        with all_or_nothing(self):  # interrupted or failed: the estimator as it was before the call
            data = as_imageset(X)
            self._resolve(data)
            # --compile compiles the views too (one graph: the batch shape is the same in every stage)
            augment = augmenter_for(data.images, self.preset, compile=self.compile, **self._switches())
            self.fill_ = augment.config.fill
            gens = session.generators(self.random_state, self.device_, self.world_)
            model = self._new_model(self.stages_[0].out_dim, gens.init)
            settings = self._settings()
            outcome = session.run_session(model, data, augment, gens, settings, self.record, resume_from=resume_from,
                                          new_lr=new_lr, callback=callback, started=started)
            self.stages_, self.history_, self.fit_seconds_ = outcome.stages, outcome.history, outcome.seconds
            self.embedding_, self.model_ = session.place(outcome.model, data.images, settings)
        return self

    def _settings(self) -> session.Settings:
        return session.Settings(
            self.stages_, self.batch_size_, self.rank_batch_size_, self.device_, self.world_, loss=self.loss,
            sync_bn=self.sync_bn_, budget=self.budget_, compile=self.compile, verbose=self.verbose,
            knn_every=self.knn_every, checkpoint=self.checkpoint, checkpoint_minutes=self.checkpoint_minutes,
            stream=self.stream_,
        )

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        """``fit(X)`` then the map of ``X``: (N, dim) float32, a copy of ``embedding_``; ``y`` is ignored."""
        return self.fit(X, **fit_params).embedding_.copy()

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
        # an annealed schedule's learned kernel values (temperature, dof), if any
        learned = next((s.anneal.learned for s in self.stages_ if s.anneal is not None), ())
        return TSimCNENet(self.backbone, self.image_shape_[2], int(self.width), self.small_stem_, out_dim, generator,
                          precision=self.precision_, learned=learned)

    # -- the record: parameters and resolved values as JSON ----------------------
    def resolved_params(self, stages=None) -> dict:
        """The resolved values (after :meth:`validate` or :meth:`fit`) as plain JSON values;
        ``stages``: another schedule than ``stages_`` (one a time budget chose)."""
        return record_params(self, stages)["resolved"]

    def record(self, stages=None) -> dict:
        """``{"params": ..., "resolved": ...}``: what params.json, checkpoints and model files store.

        :meth:`from_record` turns it back into an estimator.
        """
        return record_params(self, stages)

    @classmethod
    def from_record(cls, record: dict, device: str = "auto") -> TSimCNE:
        """An estimator with the parameters and resolved values of ``record`` (no model)."""
        params = dict(record["params"])
        params["epochs"], params["warmup"] = tuple(params["epochs"]), tuple(params["warmup"])
        est = cls(**{**params, "device": device})
        for name, value in resolve_record(record, est.precision, device).items():
            setattr(est, name, value)
        return est

    # -- using a fitted model ----------------------------------------------
    def transform(self, X) -> np.ndarray:
        """The map of images ``X``: (N, dim) float32 (128 columns with ``loss='cosine'``); deterministic,
        no augmentation. Before a fit finished: :class:`medcne.errors.NotFittedError`, which is also
        scikit-learn's ``NotFittedError``."""
        return self._apply("forward", X)

    def features(self, X) -> np.ndarray:
        """Backbone features h of ``X``: (N, num_features) float32 (512 for ResNet18 at width 64)."""
        return self._apply("forward_features", X)

    def _apply(self, method: str, X) -> np.ndarray:
        self._check_fitted()
        data = as_imageset(X, image_shape=tuple(self.image_shape_))
        data.check_shape(tuple(self.image_shape_))
        self.model_.eval()
        return embed(getattr(self.model_, method), data.images, self.device_)

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError("this TSimCNE is not fitted yet; call fit(X) or TSimCNE.load(path) first")

    def __sklearn_is_fitted__(self) -> bool:
        """Whether a fit finished (or a model was loaded): ``validate`` resolves values but trains nothing."""
        return hasattr(self, "model_")

    # -- persistence -------------------------------------------------------
    def save(self, path) -> Path:
        """Write the fitted model: a plain dict (record, state dict, history), atomically.

        ``path`` may name a model file medcne wrote (it is replaced once the new one is
        written), never another file, a folder, or a file in a run folder.
        """
        self._check_fitted()
        ckpt.check_target(path, (ckpt.MODEL_FORMAT, ckpt.OLD_MODEL_FORMAT), "model file", "path")
        return ckpt.save_model(path, self.model_, self.record(), self.history_)

    @classmethod
    def load(cls, path, device: str = "auto") -> TSimCNE:
        """Read a model written by :meth:`save` (``weights_only=True``: no code runs). The map of the
        training images is not in the file (a run keeps it in ``embedding.npz``): ``embedding_`` is
        unset; :meth:`transform` places any images."""
        state = ckpt.load_model(path)
        est = cls.from_record(state["record"], device)
        est.model_ = est._new_model(state["out_dim"])
        est.model_.load_state_dict(state["state_dict"])
        est.model_.to(est.device_).eval()
        est.history_ = list(state["history"])
        return est
