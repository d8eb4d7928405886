"""Checkpoints and model files: plain dicts of tensors and numbers, written atomically.

A checkpoint holds everything needed to continue a run exactly as if it had not
stopped: model and optimiser state, the stage and the epochs done in it (the
learning rate is a function of these), the states of all random generators, the
history so far, and the estimator's record (its parameters and resolved
values). A model file holds the record, the weights and the history. Both are
read with ``torch.load(weights_only=True)``: no pickled objects, no code runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..datasets.files import medcne_output_kind
from ..errors import MedcneError
from ..io import atomic_write
from ..runfiles import EMBEDDING, MODEL, PARAMS, finished_by
from .loop import Position
from .rng import Generators

FORMAT = "medcne-checkpoint/2"
MODEL_FORMAT = "medcne-model/2"
OLD_MODEL_FORMAT = "medcne-model/1"  # medcne 0.1 before the record: still read
# What must match between an interrupted run and its resume.
RESUME_PARAMS = ("backbone", "width", "batch_size", "loss", "preset", "crop", "jitter", "grayscale", "random_state")


def _cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def _read(path, fmt: str, what: str, missing: str, fix: str) -> dict:
    """A checkpoint or model file as a dict, or one line saying what is wrong and ``fix``."""
    path = Path(path)
    if not path.exists():
        raise MedcneError(f"{path}: {missing}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MedcneError(f"{path}: cannot read the {what} ({type(exc).__name__}); {fix}") from None
    if isinstance(state, dict) and state.get("format") == OLD_MODEL_FORMAT and fmt == MODEL_FORMAT:
        state = _from_old_model(state)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise MedcneError(f"{path}: not a medcne {what} (format {fmt}); {fix}")
    return state


def file_format(path) -> str | None:
    """The ``format`` a medcne checkpoint or model file states, None for any other file (read
    memory-mapped: its tensors are not read)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return state.get("format") if isinstance(state, dict) and isinstance(state.get("format"), str) else None


def check_target(path, formats: tuple[str, ...], what: str, param: str, run_folder_ok: bool = False) -> Path:
    """Refuse, in one line naming parameter ``param``, to write a ``what`` at ``path`` over something medcne did
    not write: a folder, a symbolic link, or an existing file that is not a medcne file of ``formats`` (known
    by the format it states, not by its name). A path in a run folder is refused too, since a run's files
    are written with its map; with ``run_folder_ok`` (a checkpoint, which fit_run keeps in the run it
    writes) only in a finished run."""
    path = Path(path)
    if path.is_symlink():
        raise MedcneError(f"`{param}` {path} is a symbolic link; medcne never writes through one: choose another name")
    if path.is_dir():
        raise MedcneError(f"`{param}` {path} is a folder; give a file name, e.g. {path / MODEL}")
    run = _run_in(path.parent)
    if run is not None and (not run_folder_ok or run == "finished"):
        raise MedcneError(f"`{param}` {path} is in the {run} run folder {path.parent}, whose files medcne writes "
                          "together with its map; save it elsewhere")
    if path.exists() and file_format(path) not in formats:
        raise MedcneError(f"`{param}` {path} exists and is not a medcne {what}, so medcne never replaces it; "
                          "choose another name")
    return path


def _run_in(folder: Path) -> str | None:
    """'finished' or 'unfinished' when ``folder`` holds a run of medcne (as the dataset readers tell one),
    else None."""
    if medcne_output_kind(folder) != "run":
        return None
    try:
        params = json.loads((folder / PARAMS).read_text(encoding="utf-8")) if (folder / PARAMS).is_file() else {}
    except (OSError, ValueError):
        params = {}
    params = params if isinstance(params, dict) else {}
    finished = (folder / EMBEDDING).is_file() and finished_by(params, folder)  # as the run readers tell
    return "finished" if finished else "unfinished"


# -- checkpoints -----------------------------------------------------------------
def make_checkpoint(model, optimizer, position: Position, generators: Generators, record: dict,
                    n_images: int, elapsed: float = 0.0, data_fingerprint: str | None = None) -> dict:
    """A checkpoint as a plain dict (all tensors on the CPU); ``data_fingerprint``: of the training images
    (:meth:`~medcne.datasets.ImageSet.fingerprint`), which a resume must give again."""
    return {
        "data_fingerprint": data_fingerprint,
        "format": FORMAT,
        "record": record,
        "n_images": int(n_images),
        "out_dim": int(model.out_dim),
        "model": _cpu(model.state_dict()),
        "optimizer": _cpu(optimizer.state_dict()) if optimizer is not None else None,
        "stage": int(position.stage),
        "epoch": int(position.epoch),
        "history": [dict(r) for r in position.history],
        "rng": _cpu(generators.state_dict()),
        "elapsed": float(elapsed),
    }


def save_checkpoint(path, checkpoint: dict) -> Path:
    """Write atomically, so a run killed while saving keeps its previous checkpoint."""
    return atomic_write(path, lambda p: torch.save(checkpoint, p))


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    return _read(path, FORMAT, "checkpoint", "no checkpoint to resume from; start the run again without resume",
                 "start the run again")


def check_resume(checkpoint: dict, record: dict, n_images: int, ignore_lr: bool = False,
                 data_fingerprint: str | None = None) -> None:
    """Refuse to resume ``checkpoint`` with other parameters or data than it was made with
    (``ignore_lr``: except the learning rates, on purpose); the data by their number and, when the
    checkpoint has it, their ``data_fingerprint``."""
    saved, now = checkpoint["record"], record

    def stages(r):  # through Stage: a record from before a setting was added reads with its default
        from .stages import Stage

        return [{k: v for k, v in Stage(**s).to_dict().items() if not (ignore_lr and k == "lr")}
                for s in r["resolved"]["stages"]]

    pairs = [("stages", stages(saved), stages(now)),
             ("precision", saved["resolved"].get("precision"), now["resolved"].get("precision"))]
    pairs += [(key, saved["params"].get(key), now["params"].get(key)) for key in RESUME_PARAMS]
    for key, before, after in pairs:
        if before != after:
            raise MedcneError(
                f"cannot resume: {'the schedule' if key == 'stages' else f'`{key}`'} was {before!r} in the "
                f"checkpoint but is {after!r} now; "
                "resume with the parameters of the interrupted run"
            )
    if checkpoint["n_images"] != n_images:
        raise MedcneError(
            f"cannot resume: the checkpoint was trained on {checkpoint['n_images']} images, not {n_images}; "
            "pass the same data"
        )
    saved_data = checkpoint.get("data_fingerprint")  # none in a checkpoint of an earlier medcne
    if saved_data is not None and data_fingerprint is not None and saved_data != data_fingerprint:
        raise MedcneError("cannot resume: the checkpoint was trained on other images (their pixels, ids or labels "
                          "differ), and training continues only on its own data; pass the same data")


def restore(checkpoint: dict, model, generators: Generators, stages) -> tuple[Position, dict | None]:
    """Load weights and generator states into ``model`` and ``generators``.

    Returns the position to continue from and the optimiser state (None at a
    stage boundary, where the next stage starts with a fresh optimiser).
    """
    if checkpoint["out_dim"] != model.out_dim:
        model.replace_last(checkpoint["out_dim"])
    model.load_state_dict(checkpoint["model"])
    generators.load_state_dict(checkpoint["rng"])
    stage, epoch = checkpoint["stage"], checkpoint["epoch"]
    optimizer = checkpoint["optimizer"]
    while stage < len(stages) and epoch >= stages[stage].epochs:
        stage, epoch, optimizer = stage + 1, 0, None
    return Position(stage, epoch, [dict(r) for r in checkpoint["history"]]), optimizer


# -- model files -----------------------------------------------------------------
def save_model(path, model, record: dict, history: list[dict]) -> Path:
    """Write a fitted model: the estimator's record, the weights and the history, atomically."""
    state = {
        "format": MODEL_FORMAT,
        "record": record,
        "out_dim": int(model.out_dim),
        "history": list(history),
        "state_dict": _cpu(model.state_dict()),
    }
    return atomic_write(path, lambda p: torch.save(state, p))


def load_model(path) -> dict:
    """Read a model file written by :func:`save_model`; a dict with ``record``, ``state_dict``..."""
    return _read(path, MODEL_FORMAT, "model file", "no such model file; give the model.pt of a run",
                 "give the model.pt of a finished run")


def _from_old_model(state: dict) -> dict:
    """A model file of format 1 (parameters and ``fitted`` values apart) in today's layout."""
    params = {k: v for k, v in state["params"].items() if k != "stages"}
    fitted = state["fitted"]
    resolved = {
        "batch_size": fitted["batch_size"], "lr": fitted["lr"], "device": "cpu",
        "small_stem": fitted["small_stem"], "image_shape": fitted["image_shape"],
        "stages": state["params"]["stages"], "fill": None,
    }
    return {"format": MODEL_FORMAT, "record": {"params": params, "resolved": resolved},
            "out_dim": fitted["out_dim"], "history": state["history"], "state_dict": state["state_dict"]}
