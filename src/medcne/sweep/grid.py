"""The cells of a sweep: (dataset, method with its options, seed) -> the settings of one run folder.

A cell's folder is ``DIR/DATASET/METHOD/seedS``. Its settings are resolved
here, once, from the configuration and the command line (which wins), so that
a cell's ``spec`` says everything that makes its result; the sweep compares
specs to refuse reusing a finished cell that was made differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..defaults import TRAINING_KEYS, default_budget, training_settings
from ..errors import ConfigError, MedcneError
from ..params import named_in
from ..train.stages import check_trains
from .config import COMMAND_LINE, TSIMCNE, Dataset, Method, SweepConfig


@dataclass(frozen=True)
class Cell:
    """One run of the grid.

    Attributes
    ----------
    dataset, method : str
        Names of the config's tables.
    seed : int
    kind : str
        ``'tsimcne'`` or a baseline method.
    data_path : Path or None
        None when the dataset is not there (``missing`` says what to fetch).
    load : dict
        :func:`medcne.datasets.load_dataset` options.
    options : dict
        :class:`~medcne.TSimCNE` parameters (``random_state`` = seed), or the
        options of :func:`medcne.runs.make_baseline` (``seed``...).
    missing : str or None
    """

    dataset: str
    method: str
    seed: int
    kind: str
    data_path: Path | None
    load: dict
    options: dict
    missing: str | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.method}/seed{self.seed}"

    def folder(self, out) -> Path:
        return Path(out) / self.dataset / self.method / f"seed{self.seed}"

    def spec(self) -> dict:
        """Everything that makes this cell's result, as plain JSON values."""
        data = {"path": None if self.data_path is None else str(self.data_path.resolve()), **self.load}
        return json.loads(json.dumps({"kind": self.kind, "data": data, "options": self.options}, default=list))


def cells(config: SweepConfig, overrides: dict | None = None) -> list[Cell]:
    """Every dataset x method x seed, seed by seed.

    Seed-major order: an interrupted sweep has a whole table for its first
    seeds rather than every seed of its first methods.
    ``overrides`` (t-SimCNE settings from the command line, ``quick``) win
    over the file.
    """
    overrides = dict(overrides or {})
    if not config.datasets:
        raise MedcneError(f"{config.source}: no datasets; give `data` PATH (or add a [datasets.NAME] table)")
    plan = []
    for dataset in config.datasets.values():
        path = config.dataset_path(dataset)
        check_data_options(config, dataset, path)
        missing = None if path is not None else config.missing_message(dataset)
        for method in config.methods.values():
            if method.datasets is None or dataset.name in method.datasets:
                plan.append((dataset, path, missing, method, method_options(config, dataset, method, overrides)))
    out = []
    for seed in config.seeds:
        for dataset, path, missing, method, options in plan:
            seeded = {**options, "random_state": seed} if method.method == TSIMCNE else {**options, "seed": seed}
            out.append(Cell(dataset.name, method.name, seed, method.method, path, dict(dataset.load), seeded, missing))
    return out


def method_options(config: SweepConfig, dataset: Dataset, method: Method, overrides: dict) -> dict:
    """The resolved options of ``method`` on ``dataset``, checked (a MedcneError names the table)."""
    try:
        if method.method == TSIMCNE:
            params = tsimcne_settings(config, dataset, method.options, overrides)
            check_trains(_check_estimator(params).stages_)  # fit's rule, before any cell runs (not in each)
            return params
        options = {k: v for k, v in method.options.items()}
        if method.method == "tsne-simclr":
            options = {"simclr": simclr_settings(config, dataset, method.options, overrides)}
            simclr = dict(options["simclr"])
            epochs = simclr.pop("epochs")
            _check_estimator({**simclr, "loss": "cosine", "epochs": (epochs, 0, 0)})
        return options
    except (MedcneError, TypeError, ValueError) as exc:
        # The shorthand's methods are its presets and baselines; a value from the command line (which
        # wins over the file) is named by its option.
        if config.source == COMMAND_LINE or named_in(str(exc)) & overrides.keys():
            raise MedcneError(f"{method.name} on {dataset.name}: {exc}") from None
        raise ConfigError(f"{config.source}: methods.{method.name} on {dataset.name}: {exc}") from None


def check_data_options(config: SweepConfig, dataset: Dataset, path: Path | None) -> None:
    """Refuse reader options that would fail every cell of ``dataset`` at its first read, after the sweep
    folder was made: the checks :func:`medcne.datasets.load_dataset` makes before it reads a pixel."""
    try:
        _check_load(dataset.load, path)
    except MedcneError as exc:
        if dataset.command_line or config.source == COMMAND_LINE:  # data options of the command line
            raise MedcneError(str(exc)) from None
        raise ConfigError(f"{config.source}: datasets.{dataset.name}: {exc}") from None


def _check_load(load: dict, path: Path | None) -> None:
    from ..datasets.labels import check_merge_rare, read_labels_map
    from ..datasets.load import SCAN_OPTIONS, check_read_options

    # A folder is walked (to tell its format) only when a scan option or a split needs the format.
    scans = any(load.get(k) not in (None, False) for k in SCAN_OPTIONS) or load.get("split") is not None
    checked = ("format", "channels", "seed", "size", "split", *SCAN_OPTIONS)
    check_read_options(path if scans else None, **{k: v for k, v in load.items() if k in checked})
    if load.get("labels_map") is not None:
        read_labels_map(load["labels_map"])
    if load.get("merge_rare") is not None:
        check_merge_rare(load["merge_rare"])


def tsimcne_settings(config: SweepConfig, dataset: Dataset, options: dict, overrides: dict) -> dict:
    """:class:`~medcne.TSimCNE` parameters: command line > method > dataset > ``[training]`` > quick > paper."""
    from ..device import resolve_device
    from ..train.stages import epochs_record

    quick = bool(overrides.get("quick") or config.training.get("quick", False))
    explicit = {**config.training, **dataset.training, **options, **overrides}
    explicit.pop("quick", None)
    paper = bool(explicit.pop("paper", False))
    explicit = {k: tuple(v) if isinstance(v, list) else v for k, v in explicit.items() if v is not None}
    device = resolve_device(explicit.get("device", "auto")).type
    settings = training_settings(quick, device, {k: explicit.get(k) for k in TRAINING_KEYS},
                                 budget=explicit.get("budget") is not None, paper=paper)
    # The rule of `medcne fit`: on a CPU a cell that names no schedule trains within a time budget.
    budget = default_budget(device, budget=explicit.get("budget"), epochs=explicit.get("epochs"), quick=quick,
                            paper=paper)
    if budget is not None:
        explicit["budget"] = budget
    # One spelling ('12,1,6' on the command line, [12, 1, 6] in a file), so that specs compare equal.
    settings["epochs"] = tuple(epochs_record(settings["epochs"]))
    settings["warmup"] = tuple(epochs_record(settings["warmup"], "warmup"))
    return {**settings, **{k: v for k, v in explicit.items() if k not in TRAINING_KEYS}}


def simclr_settings(config: SweepConfig, dataset: Dataset, options: dict, overrides: dict) -> dict:
    """SimCLR's :class:`~medcne.TSimCNE` parameters for a ``tsne-simclr`` cell.

    By default the network, batch and learning rate of the t-SimCNE cells and
    their stage-1 epochs (the paper's 1000 = its SimCLR epochs); then
    ``[simclr]``, then the method's own options.
    """
    from ..train.stages import first_epochs

    t = tsimcne_settings(config, dataset, {}, overrides)
    base = dict(epochs=first_epochs(t["epochs"]), batch_size=t["batch_size"], lr=t["lr"],
                warmup=first_epochs(t["warmup"], "warmup"), width=t["width"], backbone=t["backbone"],
                device=t.get("device", "auto"), precision=t.get("precision", "auto"))
    params = {**base, **config.simclr, **options}
    warmup = params["warmup"]
    params["warmup"] = (warmup, 0, 0) if isinstance(warmup, int) else tuple(warmup)
    return params


def _check_estimator(params: dict):
    """Let the estimator check every value on two dummy images (no training); the checked estimator."""
    from ..datasets import ImageSet
    from ..estimator import TSimCNE

    return TSimCNE(**{**params, "verbose": False}).validate(ImageSet(np.zeros((2, 32, 32, 3), dtype=np.uint8)))

