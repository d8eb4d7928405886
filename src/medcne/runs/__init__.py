"""The run folder: its files, writing t-SimCNE and baseline runs, evaluating and comparing them.

Everything downstream of training (evaluate, plot, compare, the viewer) reads
run folders (:func:`read_run`); :func:`fit_run` and :func:`make_baseline`
write them; :func:`evaluate_and_write` is the only writer of ``metrics.json``.
"""

from .baseline import make_baseline
from .compare import compare
from .evaluate import evaluate_and_write, evaluate_run, format_metrics, read_label_csv, write_metrics
from .folder import RUN_FILES, Run, read_run, save_embedding_file, write_embedding, write_history
from .tsimcne import fit_run, resume_run, write_tsimcne_run

__all__ = [
    "RUN_FILES", "Run", "compare", "evaluate_and_write", "evaluate_run", "fit_run", "format_metrics",
    "make_baseline", "read_label_csv", "read_run", "resume_run", "save_embedding_file", "write_embedding",
    "write_history", "write_metrics", "write_tsimcne_run",
]
