"""The names of the files medcne writes: a run folder's files, its markers, staging and lock names.

One leaf module (it imports nothing of medcne) that every reader and writer
takes its names from, so that the dataset readers (which skip folders medcne
wrote), the run writers, the viewer and the plots agree on them.
"""

from __future__ import annotations

PARAMS = "params.json"
HISTORY = "history.csv"
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
EMBEDDING = "embedding.npz"
EMBEDDING_CSV = "embedding.csv"
METRICS = "metrics.json"
MAP = "map.png"
# Written later from the run (medcne qc, medcne propagate): they describe this run's images and map,
# so a replacement of the run removes them with the other run files.
QC = "qc.csv"
PROPAGATED = "propagated.csv"
# The folder `medcne view RUN` writes by default.
VIEWER_DIR = "viewer"
TSIMCNE_FILES = (PARAMS, HISTORY, MODEL, CHECKPOINT, EMBEDDING, EMBEDDING_CSV, METRICS, MAP)
# The files of a finished baseline run (a t-SimCNE run adds history, model and checkpoint).
BASELINE_FILES = (PARAMS, EMBEDDING, EMBEDDING_CSV, METRICS, MAP)
# Every file a run may hold.
RUN_FILES = (*TSIMCNE_FILES, QC, PROPAGATED)
# What medcne writes into a run folder besides the run itself: allowed as outputs of commands reading the run.
RUN_OUTPUTS = (QC, PROPAGATED, VIEWER_DIR)
HISTORY_COLUMNS = ("stage", "epoch", "loss", "lr", "views_per_s", "knn")
FINISHED = "finished"  # the key of params.json that a writer sets last
FINGERPRINT = "data_fingerprint"  # the key of params.json: ImageSet.fingerprint of the training data
# ... and of the images alone (no labels): what a reader of the run checks, so that fixed labels still read.
IMAGES_FINGERPRINT = "images_fingerprint"

# The mark of a run folder medcne wrote: JSON {"format": RUN_MARKER_FORMAT, "files": [names medcne wrote]}.
RUN_MARKER = ".medcne-run"
RUN_MARKER_FORMAT = "medcne-run-1"
# The mark of a page folder of `medcne view`.
VIEWER_MARKER = ".medcne-viewer"
VIEWER_FORMAT = "medcne-viewer"
VIEWER_SLIDES = "slides"  # the folder of the copied slide thumbnails in a page folder
VIEWER_FILES = ("index.html", "medcne-viewer.js")
# The record, in a folder, of the single files medcne wrote there (figures, CSVs, reports), each with
# its size and sha256: a file is replaced only while it is still what medcne wrote.
WRITTEN_RECORD = ".medcne-written.json"
WRITTEN_FORMAT = "medcne-written-1"

# A replacement run is written into ".NAME.medcne-new" beside the run folder NAME.
STAGING_SUFFIX = ".medcne-new"
# The advisory lock of an output NAME is the file ".NAME.medcne-lock" beside it.
LOCK_SUFFIX = ".medcne-lock"


def staging_name(name: str) -> str:
    """The staging folder's name for the run folder ``name``."""
    return f".{name}{STAGING_SUFFIX}"


def lock_name(name: str) -> str:
    """The lock file's name for the output ``name``."""
    return f".{name}{LOCK_SUFFIX}"


def locked_name(lock: str) -> str:
    """The output's name that the lock file ``lock`` (named by :func:`lock_name`) is for."""
    return lock[1 : -len(LOCK_SUFFIX)]


def finished_by(params: dict, folder) -> bool:
    """Whether a run folder (a ``pathlib.Path``) whose params.json holds ``params`` (and whose
    embedding.npz is there) is finished: its writer set ``finished`` last; a run written before medcne
    recorded this counts as finished when both embedding files are there and its params.json names the
    method, as every params.json medcne wrote does (``{}`` is not a run's record)."""
    flag = params.get(FINISHED)
    if flag is None:  # written before medcne recorded it
        return "method" in params and (folder / EMBEDDING_CSV).is_file()
    return flag is True
