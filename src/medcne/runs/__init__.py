"""The run folder: its files, writing t-SimCNE and baseline runs, evaluating and comparing them.

Everything downstream of training (evaluate, plot, compare, the viewer) reads
run folders (:func:`read_run`); :func:`fit_run` and :func:`make_baseline`
write them; :func:`evaluate_and_write` is the only writer of ``metrics.json``.
"""

# Imported on first use (PEP 562), so that commands which only read run files start without torch.
_WHERE = {
    "make_baseline": "baseline", "compare": "compare", "evaluate_and_write": "evaluate", "evaluate_run": "evaluate",
    "format_metrics": "evaluate", "read_label_csv": "evaluate", "write_metrics": "evaluate",
    "RUN_FILES": "folder", "Run": "folder", "read_run": "folder", "save_embedding_file": "folder",
    "write_embedding": "folder", "write_history": "folder", "fit_run": "tsimcne", "load_run_model": "tsimcne",
    "resume_run": "tsimcne", "write_tsimcne_run": "tsimcne",
}

__all__ = [
    "RUN_FILES", "Run", "compare", "evaluate_and_write", "evaluate_run", "fit_run", "format_metrics", "load_run_model",
    "make_baseline", "read_label_csv", "read_run", "resume_run", "save_embedding_file", "write_embedding",
    "write_history", "write_metrics", "write_tsimcne_run",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'medcne.runs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
