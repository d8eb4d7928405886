"""Sweep configurations: a TOML file (or a shipped one by name) checked in full before any cell runs.

A configuration names datasets, methods and seeds; the sweep is every
dataset x method x seed. Tables:

``[sweep]``
    ``seeds`` (a list, or a count N for 0..N-1), optional ``datasets`` /
    ``methods`` (which of the tables below to run, in order), ``data_dir``
    (where relative dataset paths live, relative to the file), ``reference``
    (the method the one-line answers compare against), ``description``.
``[training]``
    t-SimCNE settings for every t-SimCNE cell (``quick = true`` for the CPU
    settings, ``epochs``, ``batch_size``, ``width``, ...; the paper's by default).
``[simclr]``
    Settings of the SimCLR training of ``tsne-simclr`` cells (default: the
    network, batch and learning rate of ``[training]``, stage 1's epochs).
``[datasets.NAME]``
    ``path`` (a path or a list of candidate paths; the first that exists is
    used), ``fetch`` (one line: what to download and where; ``{dir}`` is the
    data folder), the :func:`medcne.datasets.load_dataset` options (``size``,
    ``subset``, ``labels_map`` (relative to the file), ``merge_rare``...) and
    ``batch_size`` for its trained cells.
``[methods.NAME]``
    ``method`` (``"tsimcne"`` or a baseline such as ``"tsne-pixels"``), its
    options (t-SimCNE: ``schedule`` ('stages', or 'anneal' for dimension annealing, with
    ``epochs`` then one number), ``preset``, ``crop``, ``jitter``, ``grayscale``,
    ``head_init``, any ``[training]`` key; ``tsne-simclr``: ``preset``, the
    switches, ``epochs``...), optional ``datasets`` (only these).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets.sample import SAMPLE_PATH
from ..defaults import BASELINES, SWEEP_CONFIG_DIR, shipped_configs
from ..errors import SEED_MUST, ConfigError, MedcneError, seed_ok

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIG_DIR = SWEEP_CONFIG_DIR
DATA_ENV = "MEDCNE_DATA"
TSIMCNE = "tsimcne"
METHODS = (TSIMCNE, *BASELINES)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# The source of a configuration made from command-line options (:func:`shorthand`): its messages name
# options (--budget), where a file's name its keys.
COMMAND_LINE = "command line"

AUGMENT_KEYS = ("preset", "crop", "jitter", "grayscale")
TRAINING_OPTIONS = ("schedule", "epochs", "batch_size", "lr", "stage3_lr_factor", "warmup", "backbone", "width",
                    "head_init", "dim", "device", "precision", "budget", "compile", "knn_every", "checkpoint_minutes",
                    "small_stem", *AUGMENT_KEYS)
SIMCLR_OPTIONS = ("epochs", "batch_size", "lr", "warmup", "backbone", "width", "device", "precision", *AUGMENT_KEYS)
BASELINE_OPTIONS = {"tsne-resnet18": ("weights", "download"), "tsne-resnet152": ("weights", "download"),
                    "tsne-simclr": SIMCLR_OPTIONS}
DATA_OPTIONS = ("format", "split", "size", "channels", "subset", "seed", "skip_bad", "path_column", "label_column",
                "labels_map", "merge_rare")
KEYS = {
    "": ("sweep", "training", "simclr", "datasets", "methods"),
    "sweep": ("seeds", "datasets", "methods", "data_dir", "reference", "description"),
    "training": ("quick", "paper", *TRAINING_OPTIONS),
    "simclr": SIMCLR_OPTIONS,
    "dataset": ("path", "fetch", "batch_size", *DATA_OPTIONS),
}


@dataclass(frozen=True)
class Dataset:
    """One ``[datasets.NAME]`` table: candidate paths, reader options, fetch hint, training overrides;
    ``command_line``: given as ``data`` with the command line's data options (messages name those options)."""

    name: str
    paths: tuple[str, ...]
    load: dict
    fetch: str | None = None
    training: dict = field(default_factory=dict)
    command_line: bool = False


@dataclass(frozen=True)
class Method:
    """One ``[methods.NAME]`` table: ``method`` and its options."""

    name: str
    method: str
    options: dict
    datasets: tuple[str, ...] | None = None


@dataclass
class SweepConfig:
    """A checked configuration: what to run; see the module docstring."""

    source: str
    seeds: tuple[int, ...]
    datasets: dict[str, Dataset]
    methods: dict[str, Method]
    training: dict = field(default_factory=dict)
    simclr: dict = field(default_factory=dict)
    data_dir: Path = field(default_factory=Path.cwd)
    reference: str | None = None
    description: str = ""

    def dataset_path(self, dataset: Dataset) -> Path | None:
        """The first candidate path of ``dataset`` that exists (relative ones under ``data_dir``), else None."""
        for candidate in dataset.paths:
            path = self._full(candidate)
            if path.exists():
                return path
        return None

    def _full(self, candidate: str) -> Path:
        path = Path(os.path.expanduser(candidate))
        return path if path.is_absolute() else self.data_dir / path

    def missing_message(self, dataset: Dataset) -> str:
        """One line: which file the dataset needs and where to put it."""
        where = " or ".join(str(self._full(p)) for p in dataset.paths)
        hint = (dataset.fetch or "give its path in the config or `data_dir` DIR").replace("{dir}", str(self.data_dir))
        return f"dataset {dataset.name}: {where} not found; {hint}"


def shipped() -> list[str]:
    """Names of the configurations shipped with medcne (``paper``, ``quick``, ...)."""
    return shipped_configs()


def config_path(name_or_path) -> Path:
    """A config file: an existing path, or the name of a shipped configuration."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if str(name_or_path) in shipped():
        return CONFIG_DIR / f"{name_or_path}.toml"
    raise MedcneError(f"{name_or_path}: no such config file; give a .toml file or one of {', '.join(shipped())}")


def load_config(name_or_path, data_dir=None, allow_outside: bool = False) -> SweepConfig:
    """Read and check a configuration file (every error is a MedcneError naming the key).

    Relative dataset paths resolve under ``data_dir``, else ``$MEDCNE_DATA``,
    else the file's ``[sweep] data_dir``, else the file's folder (the current
    folder for the shipped configurations).

    As the image paths of a CSV dataset, the files a configuration names
    (dataset paths, ``labels_map``, ``[sweep] data_dir``) must lie inside the
    configuration's folder or the data folder given on the command line
    (``data_dir``, ``$MEDCNE_DATA``), or be the data bundled with medcne;
    ``allow_outside`` lifts this.
    """
    path = config_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise MedcneError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise MedcneError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    is_shipped = path.parent == CONFIG_DIR
    config = parse_config(raw, source=str(path) if not is_shipped else path.stem,
                          base=Path.cwd() if is_shipped else path.parent, data_dir=data_dir,
                          files=path.parent)
    if not allow_outside:
        given = data_dir or os.environ.get(DATA_ENV)
        roots = [Path(given).expanduser()] if given else []
        # What medcne ships (the sample, the shipped configs' labels maps) is no one's private file: always readable.
        own = [Path.cwd(), CONFIG_DIR] if is_shipped else [path.parent]
        check_inside(config, roots + own + [SAMPLE_PATH.parent])
    return config


def check_inside(config: SweepConfig, roots: list[Path]) -> None:
    """Refuse a dataset path or ``labels_map`` of ``config`` outside every folder of ``roots`` (one line,
    naming the key, never the content of the file)."""
    roots = [Path(os.path.realpath(r)) for r in roots]

    def inside(p: Path) -> bool:
        p = Path(os.path.realpath(p))
        return any(p == r or r in p.parents for r in roots)

    where = " or ".join(str(r) for r in roots)
    for d in config.datasets.values():
        named = [("path", config._full(c)) for c in d.paths]
        if "labels_map" in d.load:
            named.append(("labels_map", Path(d.load["labels_map"])))
        for key, p in named:
            if not inside(p):
                raise MedcneError(f"{config.source}: datasets.{d.name}.{key} {p} is outside {where}; a config reads "
                                  "only files under its folder or the data folder, as a CSV dataset does: move "
                                  "the file there, give `data_dir`, or pass `allow_outside`")


def parse_config(raw: dict, source: str, base: Path, data_dir=None, files: Path | None = None) -> SweepConfig:
    """A :class:`SweepConfig` from parsed TOML; ``files`` is where ``labels_map`` files are looked up."""
    err = _Errors(source)
    err.keys(raw, "", KEYS[""])
    sweep = err.table(raw, "sweep")
    err.keys(sweep, "sweep", KEYS["sweep"])
    training = err.table(raw, "training")
    err.keys(training, "training", KEYS["training"])
    simclr = err.table(raw, "simclr")
    err.keys(simclr, "simclr", KEYS["simclr"])
    datasets = {n: _dataset(err, n, t, files or base) for n, t in err.table(raw, "datasets").items()}
    methods = {n: _method(err, n, t) for n, t in err.table(raw, "methods").items()}
    if not methods:
        err.fail("methods", "no methods; add a [methods.NAME] table with method = 'tsimcne' or a baseline")
    for m in methods.values():
        for d in m.datasets or ():
            if d not in datasets:
                err.fail(f"methods.{m.name}.datasets", f"no dataset {d!r}; defined: {', '.join(datasets) or 'none'}")
    datasets = err.select(sweep, "datasets", datasets)
    methods = err.select(sweep, "methods", methods)
    reference = sweep.get("reference")
    if reference is not None and reference not in methods:
        err.fail("sweep.reference", f"no method {reference!r}; defined: {', '.join(methods)}")
    if "data_dir" in sweep and not isinstance(sweep["data_dir"], str):
        err.fail("sweep.data_dir", f"must be a folder path, as text; got {sweep['data_dir']!r}")
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or (base / sweep["data_dir"] if "data_dir" in sweep else base)
    return SweepConfig(
        source=source, seeds=parse_seeds(sweep.get("seeds", 1), f"{source}: sweep.seeds"), datasets=datasets,
        methods=methods, training=dict(training), simclr=dict(simclr), data_dir=Path(data_dir).expanduser(),
        reference=reference, description=str(sweep.get("description", "")),
    )


MOST_SEEDS = 1000  # a count of seeds (one run each) beyond any sweep: more is a typo


def parse_seeds(value, where: str = "`seeds`") -> tuple[int, ...]:
    """A count N (seeds 0..N-1), a list of ints, or '0,1,2' -> the seeds."""
    given = value  # what the message quotes, not what was left of it
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            value = int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]
        except (ValueError, IndexError):
            value = None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MOST_SEEDS:
        return tuple(range(value))
    if isinstance(value, list) and value and all(seed_ok(s) for s in value) and len(set(value)) == len(value):
        return tuple(value)
    raise MedcneError(f"{where} must be a count N from 1 to {MOST_SEEDS} (seeds 0..N-1) or a list of distinct "
                      f"seeds, each {SEED_MUST}; got {given!r}")


def _dataset(err: _Errors, name: str, table, files: Path) -> Dataset:
    where = f"datasets.{name}"
    err.name(name, where)
    if not isinstance(table, dict):
        err.fail(where, "must be a table with at least path = '...'")
    err.keys(table, where, KEYS["dataset"])
    paths = table.get("path")
    paths = [paths] if isinstance(paths, str) else paths
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        err.fail(f"{where}.path", "needs a path (or a list of candidate paths) to the dataset")
    load = {k: table[k] for k in DATA_OPTIONS if k in table}
    if "labels_map" in load:
        load["labels_map"] = str((files / os.path.expanduser(str(load["labels_map"]))).resolve())
        if not Path(load["labels_map"]).is_file():
            err.fail(f"{where}.labels_map", f"{load['labels_map']}: no such file")
    _check_data_options(err, where, load)
    training = {"batch_size": table["batch_size"]} if "batch_size" in table else {}
    fetch = table.get("fetch")
    if fetch is not None and not isinstance(fetch, str):
        err.fail(f"{where}.fetch", f"must be one line of text saying how to get the data; got {fetch!r}")
    return Dataset(name, tuple(paths), load, None if fetch is None else str(fetch), training)


def _check_data_options(err: _Errors, where: str, load: dict) -> None:
    from ..datasets.arrays import MEDMNIST_SPLITS
    from ..datasets.convert import CHANNEL_MODES, check_channels, parse_size
    from ..datasets.load import FORMATS

    choices = {"format": FORMATS, "split": MEDMNIST_SPLITS, "channels": CHANNEL_MODES}
    for key, allowed in choices.items():
        if key in load and load[key] not in allowed:
            err.fail(f"{where}.{key}", f"must be one of {', '.join(allowed)}; got {load[key]!r}")
    for key in ("subset", "seed", "merge_rare"):
        if key in load and (isinstance(load[key], bool) or not isinstance(load[key], int)):
            err.fail(f"{where}.{key}", f"must be an integer; got {load[key]!r}")
    try:
        check_channels(load.get("channels", "keep"))
        parse_size(load.get("size"))
    except (MedcneError, TypeError) as exc:
        err.fail(f"{where}.size", str(exc))


def _method(err: _Errors, name: str, table) -> Method:
    where = f"methods.{name}"
    err.name(name, where)
    if not isinstance(table, dict) or "method" not in table:
        err.fail(f"{where}.method", f"missing; one of {', '.join(METHODS)}")
    method = table["method"]
    if method not in METHODS:
        err.fail(f"{where}.method", f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    allowed = TRAINING_OPTIONS if method == TSIMCNE else BASELINE_OPTIONS.get(method, ())
    err.keys(table, where, ("method", "datasets", *allowed))
    datasets = table.get("datasets")
    if datasets is not None and not (isinstance(datasets, list) and all(isinstance(d, str) for d in datasets)):
        err.fail(f"{where}.datasets", "must be a list of dataset names")
    options = {k: v for k, v in table.items() if k not in ("method", "datasets")}
    return Method(name, method, options, None if datasets is None else tuple(datasets))


class _Errors:
    """Raise one-line errors that name the config and the key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str):
        raise ConfigError(f"{self.source}: {key}: {message}")

    def keys(self, table: dict, where: str, allowed) -> None:
        for key in table:
            if key not in allowed:
                full = f"{where}.{key}" if where else key
                self.fail(full, f"unknown key; allowed here: {', '.join(allowed)}")

    def table(self, raw: dict, key: str) -> dict:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, "must be a table ([" + key + "])")
        return value

    def name(self, name: str, where: str) -> None:
        if not NAME.match(name):
            self.fail(where, "a name may hold letters, digits and . _ + - only (it becomes a folder name)")

    def select(self, sweep: dict, key: str, defined: dict) -> dict:
        """The tables ``sweep[key]`` names, in its order (all when it is absent)."""
        names = sweep.get(key)
        if names is None:
            return defined
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.fail(f"sweep.{key}", "must be a list of names")
        for n in names:
            if n not in defined:
                self.fail(f"sweep.{key}", f"no {key[:-1]} {n!r}; defined: {', '.join(defined) or 'none'}")
        return {n: defined[n] for n in names}


def dataset_name(path) -> str:
    """A folder-safe dataset name from a path: its file stem (``bloodmnist28.npz`` -> ``bloodmnist28``)."""
    stem = Path(path).name.split(".")[0] or "data"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", stem).lstrip("._+-") or "data"


def with_data(config: SweepConfig, paths, load: dict) -> SweepConfig:
    """``config`` with its datasets replaced by ``paths`` (from the command line), read with ``load``."""
    datasets = {}
    for p in paths:
        name = dataset_name(p)
        if name in datasets:
            raise MedcneError(f"`data`: two datasets named {name!r} ({p}); give files with different names")
        options = {k: v for k, v in load.items() if v is not None}
        datasets[name] = Dataset(name, (str(Path(p).expanduser().resolve()),), options, command_line=True)
    # A method the file keeps for some of its datasets runs on the data given instead.
    methods = {n: Method(m.name, m.method, m.options, None) for n, m in config.methods.items()}
    return SweepConfig(config.source, config.seeds, datasets, methods, config.training, config.simclr,
                       config.data_dir, config.reference, config.description)


def shorthand(data_path, load: dict, presets, baselines, seeds) -> SweepConfig:
    """The configuration of ``medcne sweep DATA --presets a,b --baselines c --seeds N``."""
    from ..defaults import PRESETS

    methods = {}
    for preset in presets:
        if preset not in PRESETS:
            raise MedcneError(f"`presets`: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        methods[preset] = Method(preset, TSIMCNE, {"preset": preset})
    for baseline in baselines:
        if baseline not in BASELINES:
            raise MedcneError(f"`baselines`: unknown method {baseline!r}; choose from {', '.join(BASELINES)}")
        methods[baseline] = Method(baseline, baseline, {})
    if not methods:
        raise MedcneError("give at least one preset (`presets` simclr,rotate) or baseline (`baselines` tsne-pixels)")
    base = SweepConfig(COMMAND_LINE, parse_seeds(seeds), {}, methods)
    return with_data(base, [data_path], load)
