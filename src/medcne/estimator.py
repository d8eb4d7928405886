"""`TSimCNE`: the scikit-learn style estimator.

>>> from medcne import TSimCNE, load_sample
>>> data = load_sample()
>>> est = TSimCNE(epochs=(20, 2, 10), batch_size=256, width=16, random_state=0)
>>> Z = est.fit_transform(data)            # (2000, 2) float32
>>> Z_new = est.transform(other_images)    # same map, deterministic
>>> H = est.features(data)                 # (2000, 512 * width / 64) backbone features
>>> est.save("model.pt"); est2 = TSimCNE.load("model.pt")

``__init__`` only stores parameters; :meth:`fit` validates them and resolves
``'auto'`` values into attributes ending in ``_``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .datasets import ImageSet, from_array, from_torch_dataset
from .errors import MedcneError
from .losses import get_loss
from .models import TSimCNENet, check_model_args, use_small_stem
from .train import checkpoint as ckpt_mod
from .train.data import Generators, ImageStore, resolve_device
from .train.estimate import duration_message, expected_seconds, time_step
from .train.loop import EpochEnd, train
from .train.stages import default_lr, parse_epochs, simclr_stages, tsimcne_stages

MODEL_FORMAT = "medcne-model/1"
QUICK_HINT = "`medcne fit ... --quick`"
KNN_POINTS = 5000


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

    Attributes
    ----------
    stages_ : tuple of Stage
    batch_size_, lr_ : resolved values
    device_ : torch.device
    small_stem_ : bool
    image_shape_ : (H, W, C)
    model_ : TSimCNENet
    history_ : list of dict
        One row per epoch: stage, epoch, loss, lr, views_per_s (and knn).
    embedding_ : ndarray (N, dim)
        The map of the training images.
    """

    def __init__(
        self,
        dim: int = 2,
        epochs=(1000, 50, 450),
        batch_size: int = 1024,
        lr="auto",
        stage3_lr_factor: float = 1e-3,
        warmup=(10, 0, 10),
        loss: str = "cauchy",
        preset: str = "simclr",
        crop: bool = True,
        jitter: bool = True,
        grayscale: bool = True,
        backbone: str = "resnet18",
        width: int = 64,
        small_stem="auto",
        device: str = "auto",
        compile: bool = False,
        knn_every: int = 0,
        checkpoint=None,
        checkpoint_minutes: float = 10.0,
        random_state=None,
        verbose: bool = True,
    ):
        self.dim = dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.stage3_lr_factor = stage3_lr_factor
        self.warmup = warmup
        self.loss = loss
        self.preset = preset
        self.crop = crop
        self.jitter = jitter
        self.grayscale = grayscale
        self.backbone = backbone
        self.width = width
        self.small_stem = small_stem
        self.device = device
        self.compile = compile
        self.knn_every = knn_every
        self.checkpoint = checkpoint
        self.checkpoint_minutes = checkpoint_minutes
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting -----------------------------------------------------------
    def fit(self, X, y=None, *, resume_from=None, callback=None) -> TSimCNE:
        """Train on images ``X`` (ImageSet, uint8 array N x H x W x C, or torch Dataset).

        Parameters
        ----------
        resume_from : path, optional
            A checkpoint of an interrupted fit with the same parameters and data;
            training continues where it stopped, giving the same result.
        callback : callable, optional
            Called with a :class:`medcne.train.EpochEnd` after every epoch.
        """
        data = as_imageset(X)
        self._resolve(data)
        self._elapsed_before = 0.0
        rng = self.random_state if isinstance(self.random_state, np.random.Generator) else (
            np.random.default_rng(self.random_state))
        gens = Generators.from_rng(rng, self.device_)
        stage1_dim = self.stages_[0].out_dim
        self.model_ = self._new_model(stage1_dim, gens.init)
        position, opt_state = None, None
        if resume_from is not None:
            position, opt_state = self._restore(ckpt_mod.load_checkpoint(resume_from), gens, len(data))
        augment = self._augmenter(data)
        store = ImageStore(data, self.device_)
        loss_fn = get_loss(self.loss)
        if self.verbose and position is None:
            step = time_step(self.model_, store, self.batch_size_, augment, loss_fn)
            secs = expected_seconds(step, self.stages_, len(data), self.batch_size_)
            print(duration_message(secs, self.device_, QUICK_HINT), flush=True)
        on_epoch = self._epoch_callback(data, store, gens, callback)
        pos = train(
            self.model_, store, self.stages_, batch_size=self.batch_size_, augment=augment, loss_fn=loss_fn,
            generators=gens, position=position, optimizer_state=opt_state, on_epoch=on_epoch,
            compile=self.compile, progress=self.verbose,
        )
        self.history_ = pos.history
        self.embedding_ = self._embed(data, self.model_.forward)
        return self

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

    def resolved_params(self) -> dict:
        """The resolved values (after :meth:`validate` or :meth:`fit`) as plain JSON values."""
        return {
            "batch_size": self.batch_size_, "lr": self.lr_, "device": str(self.device_),
            "small_stem": self.small_stem_, "image_shape": list(self.image_shape_),
            "stages": [s.to_dict() for s in self.stages_],
        }

    def _resolve(self, data: ImageSet) -> None:
        if len(data) < 2:
            raise MedcneError(f"need at least 2 images to train; got {len(data)}")
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 2:
            raise MedcneError(f"batch_size must be an integer >= 2; got {self.batch_size!r}")
        if self.loss not in ("cauchy", "cosine"):
            raise MedcneError(f"loss must be 'cauchy' (t-SimCNE) or 'cosine' (SimCLR); got {self.loss!r}")
        self.batch_size_ = int(min(self.batch_size, len(data)))
        if self.lr == "auto":
            self.lr_ = default_lr(self.batch_size_)
        elif isinstance(self.lr, (int, float)) and self.lr > 0:
            self.lr_ = float(self.lr)
        else:
            raise MedcneError(f"lr must be a positive number or 'auto'; got {self.lr!r}")
        epochs, warmup = parse_epochs(self.epochs), parse_epochs(self.warmup)
        if self.loss == "cosine":
            self.stages_ = simclr_stages(epochs[0], self.lr_, warmup[0])
        else:
            self.stages_ = tsimcne_stages(epochs, self.lr_, self.dim, warmup, self.stage3_lr_factor)
        self.device_ = resolve_device(self.device)
        self.image_shape_ = data.image_shape
        check_model_args(self.backbone, data.image_shape[2], self.width, self.stages_[-1].out_dim)
        from .augment import Augmenter

        Augmenter(self.preset, crop=self.crop, jitter=self.jitter, grayscale=self.grayscale)  # validates
        self.small_stem_ = use_small_stem(max(data.image_shape[:2]), self.small_stem)
        if not isinstance(self.knn_every, (int, np.integer)) or self.knn_every < 0:
            raise MedcneError(f"knn_every must be a non-negative integer (0: off); got {self.knn_every!r}")

    def _new_model(self, out_dim: int, generator=None) -> TSimCNENet:
        return TSimCNENet(self.backbone, self.image_shape_[2], int(self.width), self.small_stem_, out_dim, generator)

    def _augmenter(self, data: ImageSet):
        from .augment import Augmenter, border_colour

        fill = border_colour(data.images) if self.preset == "rotate" else None
        return Augmenter(self.preset, crop=self.crop, jitter=self.jitter, grayscale=self.grayscale, fill=fill)

    def _params_for_checkpoint(self) -> dict:
        params = self.get_params()
        params["random_state"] = params["random_state"] if isinstance(params["random_state"], int) else None
        params["checkpoint"] = None if params["checkpoint"] is None else str(params["checkpoint"])
        params["epochs"] = list(parse_epochs(self.epochs))
        params["warmup"] = list(parse_epochs(self.warmup))
        params["stages"] = [s.to_dict() for s in self.stages_]
        return params

    def _restore(self, ck: dict, gens: Generators, n: int):
        saved, now = ck["params"], self._params_for_checkpoint()
        for key in ("stages", "backbone", "width", "batch_size", "loss", "preset", "crop", "jitter", "grayscale"):
            if saved.get(key) != now.get(key):
                raise MedcneError(
                    f"cannot resume: {key} was {saved.get(key)!r} in the checkpoint but is {now.get(key)!r} now; "
                    "resume with the parameters of the interrupted run"
                )
        if ck["n_images"] != n:
            raise MedcneError(f"cannot resume: the checkpoint was trained on {ck['n_images']} images, not {n}; pass the same data")
        if ck["out_dim"] != self.model_.out_dim:
            self.model_.replace_last(ck["out_dim"])
        self.model_.load_state_dict(ck["model"])
        gens.load_state_dict(ck["rng"])
        self._elapsed_before = ck.get("elapsed", 0.0)
        return ckpt_mod.position_of(ck, self.stages_)

    def _epoch_callback(self, data: ImageSet, store: ImageStore, gens: Generators, user_callback):
        knn_idx = None
        if self.knn_every and data.labels is not None:
            knn_idx = np.sort(np.random.default_rng(0).permutation(len(data))[:KNN_POINTS])
        last_save = time.monotonic()
        t_start = time.monotonic() - getattr(self, "_elapsed_before", 0.0)

        def on_epoch(end: EpochEnd) -> None:
            nonlocal last_save
            if knn_idx is not None and end.row and end.position.epoch % self.knn_every == 0:
                end.row["knn"] = self._knn(store, data.labels, knn_idx, end.model)
            due = time.monotonic() - last_save >= 60 * self.checkpoint_minutes
            if self.checkpoint is not None and (end.stage_done or due):
                ck = ckpt_mod.make_checkpoint(
                    end.model, end.optimizer, end.position, gens, self._params_for_checkpoint(), len(data),
                    time.monotonic() - t_start,
                )
                ckpt_mod.save_checkpoint(self.checkpoint, ck)
                last_save = time.monotonic()
            if user_callback is not None:
                user_callback(end)

        return on_epoch

    def _knn(self, store: ImageStore, labels, idx, model) -> float:
        from .metrics import knn_accuracy

        was_training = model.training
        model.eval()
        with torch.no_grad():
            z = [model(self._as_input(store.images[torch.as_tensor(c)])) for c in np.array_split(idx, max(len(idx) // 512, 1))]
        model.train(was_training)
        return float(knn_accuracy(torch.cat(z).float().cpu().numpy(), labels[idx]))

    # -- using a fitted model ----------------------------------------------
    def transform(self, X) -> np.ndarray:
        """The map of images ``X``: (N, dim) float32; deterministic, no augmentation."""
        self._check_fitted()
        return self._embed(self._check_images(as_imageset(X)), self.model_.forward)

    def features(self, X) -> np.ndarray:
        """Backbone features h of ``X``: (N, num_features) float32 (512 for ResNet18 at width 64)."""
        self._check_fitted()
        return self._embed(self._check_images(as_imageset(X)), self.model_.forward_features)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise MedcneError("this TSimCNE is not fitted yet; call fit(X) or TSimCNE.load(path) first")

    def _check_images(self, data: ImageSet) -> ImageSet:
        if data.image_shape != tuple(self.image_shape_):
            raise MedcneError(
                f"images must be {self.image_shape_} (H, W, C) like the training images; got {data.image_shape}; "
                "resize with size= / --size and channels= / --channels"
            )
        return data

    def _as_input(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device_).float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last) if self.device_.type == "cuda" else x

    @torch.no_grad()
    def _embed(self, data: ImageSet, fn, chunk: int = 1024) -> np.ndarray:
        self.model_.eval()
        cuda = self.device_.type == "cuda"
        out = []
        images = data.images
        for start in range(0, len(data), chunk):
            block = np.ascontiguousarray(images[start : start + chunk])
            x = self._as_input(torch.from_numpy(block).permute(0, 3, 1, 2))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                out.append(fn(x).float().cpu())
        return torch.cat(out).numpy().astype(np.float32)

    # -- persistence -------------------------------------------------------
    def save(self, path) -> Path:
        """Write the fitted model: a plain dict (state dict + parameters), atomically."""
        from .runfolder import atomic_write

        self._check_fitted()
        state = {
            "format": MODEL_FORMAT,
            "params": self._params_for_checkpoint(),
            "fitted": {
                "image_shape": list(self.image_shape_), "small_stem": bool(self.small_stem_),
                "out_dim": int(self.model_.out_dim), "batch_size": self.batch_size_, "lr": self.lr_,
            },
            "history": self.history_,
            "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
        }
        return atomic_write(path, lambda p: torch.save(state, p))

    @classmethod
    def load(cls, path, device: str = "auto") -> TSimCNE:
        """Read a model written by :meth:`save` (``weights_only=True``: no code runs)."""
        path = Path(path)
        if not path.exists():
            raise MedcneError(f"{path}: no such model file; give the model.pt of a run")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
            raise MedcneError(f"{path}: not a medcne model ({MODEL_FORMAT}); give the model.pt of a run")
        params = {k: v for k, v in state["params"].items() if k != "stages"}
        params["epochs"], params["warmup"] = tuple(params["epochs"]), tuple(params["warmup"])
        est = cls(**params)
        est.device = device
        fitted = state["fitted"]
        est.image_shape_ = tuple(fitted["image_shape"])
        est.small_stem_ = fitted["small_stem"]
        est.batch_size_, est.lr_ = fitted["batch_size"], fitted["lr"]
        est.device_ = resolve_device(device)
        est.stages_ = tuple(_stage_from_dict(d) for d in state["params"]["stages"])
        est.model_ = est._new_model(fitted["out_dim"])
        est.model_.load_state_dict(state["state_dict"])
        est.model_.to(est.device_).eval()
        est.history_ = list(state["history"])
        return est


def _stage_from_dict(d: dict):
    from .train.stages import Stage

    return Stage(**d)


def as_imageset(X) -> ImageSet:
    """An ImageSet from an ImageSet, an image array, or a torch Dataset."""
    if isinstance(X, ImageSet):
        return X
    if isinstance(X, np.ndarray):
        return from_array(X)
    if isinstance(X, torch.Tensor):
        return from_array(X.cpu().numpy())
    if hasattr(X, "__getitem__") and hasattr(X, "__len__"):
        return from_torch_dataset(X)
    raise MedcneError(
        f"X must be an ImageSet, an N x H x W x C uint8 array, or a torch Dataset; got {type(X).__name__}"
    )
