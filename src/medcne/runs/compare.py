"""Compare runs: a table (Markdown and CSV) and a figure with one panel per method.

Rows are methods; columns are kNN accuracy, silhouette and neighbourhood
preservation; runs of several datasets (grouped by their data path) give a
group of columns per dataset, as in the paper's Tables 2 and 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MedcneError
from ..io import csv_text, write_text
from .evaluate import METRIC_KEYS, evaluate_run, on_other_labels
from .folder import METRICS, Run, read_run
from .outputs import claim_files

COLUMNS = (
    ("knn_accuracy", "kNN accuracy (%)", "{:.1f}"),
    ("silhouette", "silhouette", "{:.3f}"),
    ("neighbour_preservation", "neighbourhood preservation", "{:.3f}"),
)


@dataclass
class Row:
    """One run in the table."""

    run: Run
    method: str
    dataset: str
    metrics: dict = field(default_factory=dict)


def dataset_key(run: Run) -> str:
    """The data path of a run (its grouping key), or the folder when params.json names none."""
    data = run.params.get("data") or {}
    path = data.get("path")
    if path is None:
        return f"(data of {run.name})"
    subset = data.get("subset")
    return str(path) + (f" [subset {subset}, seed {data.get('seed', 0)}]" if subset else "")


def short_names(keys: list[str]) -> dict[str, str]:
    """Dataset labels: the file stem, or parent/stem where stems collide."""
    stems = {k: Path(k.split(" [")[0]).stem + (" [" + k.split(" [", 1)[1] if " [" in k else "") for k in keys}
    out = {}
    for k, s in stems.items():
        clash = sum(1 for t in stems.values() if t == s) > 1
        p = Path(k.split(" [")[0])
        out[k] = f"{p.parent.name}/{s}" if clash else s
    return out


def collect(runs: list[Run]) -> list[Row]:
    """Rows with the metrics of metrics.json; a run never evaluated is evaluated (without
    neighbourhood preservation, which needs the images; nothing is written). A metric that an
    evaluation skipped (its notes say why) stays empty: it is not scored here on other labels."""
    if not runs:
        raise MedcneError("compare needs at least one run folder")
    rows = []
    for run in runs:
        source = run.metrics
        if not any(k in source for k in METRIC_KEYS) and run.labels is not None:
            source = {**evaluate_run(run, preservation=False), **source}
        rows.append(Row(run, run.method, dataset_key(run), _numbers(run, source)))
    _tell_apart(rows)
    return rows


def _tell_apart(rows: list[Row]) -> None:
    """Runs of one method on one dataset, named by the shortest end of their paths that differs (a
    sweep's cells all end in ``seedS``: ``simclr/seed0`` and ``rotate/seed0``); one run given twice is
    refused (the table has one row per run)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.method, row.dataset), []).append(row)
    for group in (g for g in groups.values() if len(g) > 1):
        parts = [row.run.path.resolve().parts for row in group]
        if len(set(parts)) < len(parts):
            twice = next(row.run.path for row, p in zip(group, parts, strict=True) if parts.count(p) > 1)
            raise MedcneError(f"{twice}: given twice; give each run once")
        for row, p in zip(group, parts, strict=True):
            depth = 1  # the fewest last parts that no other run of the group ends in
            while sum(q[-depth:] == p[-depth:] for q in parts) > 1:
                depth += 1
            row.method = f"{row.method} ({'/'.join(p[-depth:])})"


def _numbers(run: Run, source: dict) -> dict:
    """The table's metrics of ``source``, each a finite number (a hand-edited metrics.json is refused)."""
    m = {}
    for key, _, _ in COLUMNS:
        value = source.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise MedcneError(f"{run.path / METRICS}: damaged ({key} is {value!r}, not a number); delete it and run "
                              f"`medcne evaluate {run.path}` to write it again")
        m[key] = float(value)
    return m


def datasets_of(rows: list[Row]) -> list[str]:
    """The rows' dataset keys, in order of first appearance (one column group each)."""
    return list(dict.fromkeys(r.dataset for r in rows))


def table(rows: list[Row]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body (formatted cells) and the dataset labels, one row per method."""
    datasets = datasets_of(rows)
    names = short_names(datasets)
    methods = list(dict.fromkeys(r.method for r in rows))
    by = {(r.method, r.dataset): r for r in rows}
    header = ["method"]
    for d in datasets:
        # A dataset's name over each of its columns (Markdown has one header row; <br> breaks the cell).
        prefix = f"{names[d]}<br>" if len(datasets) > 1 else ""
        header += [prefix + label for _, label, _ in COLUMNS]
    body = []
    for method in methods:
        cells = [method]
        for d in datasets:
            r = by.get((method, d))
            for key, _, fmt in COLUMNS:
                value = None if r is None else r.metrics.get(key)
                cells.append("–" if value is None else fmt.format(value))
        body.append(cells)
    return header, body, [names[d] for d in datasets]


def to_markdown(rows: list[Row]) -> str:
    header, body, datasets = table(rows)
    lines = []
    if len(datasets) == 1:
        lines.append(f"Dataset: {datasets[0]} ({len(rows[0].run.ids):,} images)\n")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines.append("")
    lines.append("kNN accuracy: k = 15, stratified 9:1 split; silhouette: all points, class labels; "
                 "neighbourhood preservation: share of the 15 nearest neighbours in pixel space kept in "
                 "the map (– where not computed: run `medcne evaluate`).")
    relabelled = [r for r in rows if on_other_labels(r.run.metrics)]
    if relabelled:
        lines.append("")
        lines.append("Scored on other labels than the runs' own (`medcne evaluate` with --labels, --labels-map "
                     "or --merge-rare), so not comparable with the other rows as they stand:")
        on = {d: f" on {n}" for d, n in short_names(datasets_of(rows)).items()} if len(datasets) > 1 else {}
        lines += [f"- {r.method}{on.get(r.dataset, '')}: {other_labels(r.run)}" for r in relabelled]
    lines.append("")
    lines.append("Runs: " + ", ".join(f"`{r.run.path}`" for r in rows))
    return "\n".join(lines) + "\n"


def other_labels(run: Run) -> str:
    """What a run was scored on when not its own labels (metrics.json's ``labels`` record), else ""."""
    record = run.metrics.get("labels")
    if not isinstance(record, dict):
        return ""
    what = "; ".join(record.get("changed") or []) or "labels changed"
    n = record.get("classes", "?")
    return f"{n} {'class' if n == 1 else 'classes'} ({what})"


def to_csv(rows: list[Row]) -> str:
    """Machine-readable: full precision, one column per dataset and metric, and per dataset the
    ``labels`` a run was scored on when they are not its own (empty for its own: comparable)."""
    datasets = datasets_of(rows)
    names = short_names(datasets)
    methods = list(dict.fromkeys(r.method for r in rows))
    by = {(r.method, r.dataset): r for r in rows}
    body = []
    for method in methods:
        cells = [method]
        for d in datasets:
            r = by.get((method, d))
            cells += ["" if r is None or r.metrics.get(k) is None else repr(float(r.metrics[k]))
                      for k, _, _ in COLUMNS]
            cells.append("" if r is None else other_labels(r.run))
        body.append(cells)
    keys = [*(key for key, _, _ in COLUMNS), "labels"]
    return csv_text(["method"] + [f"{names[d]}:{key}" for d in datasets for key in keys], body)


def panel_maps(rows: list[Row]) -> list[dict]:
    """Inputs of :func:`medcne.plot.plot_panels`: one panel per run, a row of panels per dataset (named
    left of the row when there are several), t-SimCNE runs titled with their preset when theirs differ."""
    names = short_names(datasets_of(rows))
    presets = [preset_of(r.run) if r.run.method == "tsimcne" else None for r in rows]
    differ = len({p for r, p in zip(rows, presets, strict=True) if r.run.method == "tsimcne"}) > 1
    maps = []
    for r, preset in zip(rows, presets, strict=True):
        m = r.metrics
        score = f"kNN {m['knn_accuracy']:.1f}%" if "knn_accuracy" in m else ""
        if "silhouette" in m:
            score += f", sil. {m['silhouette']:.3f}"
        method = r.method + (f", preset {preset}" if differ and r.run.method == "tsimcne" else "")
        maps.append(dict(Z=np.asarray(r.run.embedding)[:, :2], labels=r.run.labels,
                         class_names=r.run.class_names, title=method + (f"\n{score}" if score else ""),
                         row=r.dataset, row_label=names[r.dataset] if len(names) > 1 else None))
    return maps


def preset_of(run: Run) -> str | None:
    """The augmentation preset of a t-SimCNE run (its params.json), or None when it names none."""
    estimator = run.params.get("estimator")
    return estimator.get("preset") if isinstance(estimator, dict) else None


def compare_figure(rows: list[Row], path) -> Path:
    """Write the panels of all runs (PNG, PDF or SVG) atomically."""
    from ..plot import new_figure, plot_panels, save_figure

    maps = panel_maps(rows)
    n_rows = len({m["row"] for m in maps})
    n_cols = max(sum(1 for m in maps if m["row"] == row) for row in {m["row"] for m in maps})
    fig = new_figure(3.6 * n_cols, 3.9 * n_rows)
    plot_panels(maps, fig)
    return save_figure(fig, path)


def report_paths(out) -> dict[str, Path]:
    """``{'md': REPORT.md, 'csv': ..., 'png': ...}`` of ``out``, a path without extension (or with one of them)."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise MedcneError(f"`out` {str(out)!r} names no file; give a name such as REPORT "
                          "(REPORT.md, REPORT.csv and REPORT.png are written)")
    if out.suffix in (".md", ".csv", ".png"):
        out = out.with_suffix("")
    return {ext: out.with_name(out.name + "." + ext) for ext in ("md", "csv", "png")}


def compare(run_paths, out, overwrite: bool = False) -> dict[str, Path]:
    """Write ``OUT.md``, ``OUT.csv`` and ``OUT.png`` comparing the runs; returns the three paths.

    Existing files are replaced only with ``overwrite`` and only when medcne
    wrote them (:func:`.outputs.claim_files`).
    """
    paths = report_paths(out)
    with claim_files(list(paths.values()), overwrite, runs=run_paths):
        rows = collect([read_run(p) for p in run_paths])
        write_text(paths["md"], to_markdown(rows))
        write_text(paths["csv"], to_csv(rows))
        compare_figure(rows, paths["png"])
    return paths
