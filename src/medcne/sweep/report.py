"""The report of a sweep: tables (Markdown, CSV), a figure grid and one answer line per dataset.

Everything is read from the cells' ``metrics.json`` (written by
:func:`medcne.runs.evaluate_and_write`, never recomputed here) and, for the
figure, their ``embedding.npz``. Mean ± standard deviation over the seeds that
finished (sample standard deviation, n - 1); the best mean of each column of a
dataset in bold (compared as printed: means that print alike are all bold).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MedcneError
from ..io import csv_text, write_text
from ..runs.evaluate import on_other_labels
from ..runs.folder import METRICS, read_json
from .run import STATUS, SWEEP, is_finished

REPORT = "report"
COLUMNS = (("knn_accuracy", "kNN accuracy (%)", "{:.1f}"), ("silhouette", "silhouette", "{:.3f}"))


@dataclass
class Row:
    """One method on one dataset: its metrics by seed."""

    dataset: str
    method: str
    kind: str
    values: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> seed -> value
    seconds: list[float] = field(default_factory=list)
    n_points: int | None = None
    relabelled: list[str] = field(default_factory=list)  # cells scored on other labels: left out

    def stats(self, key: str) -> tuple[float, float | None, int] | None:
        """(mean, std or None for one seed, n) of a metric over seeds, or None without values."""
        v = list(self.values.get(key, {}).values())
        if not v:
            return None
        return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None), len(v)


def collect(out) -> tuple[dict, list[Row]]:
    """``sweep.json`` and one row per dataset x method with the metrics of its finished cells."""
    out = Path(out)
    if not (out / SWEEP).exists():
        raise MedcneError(f"{out}: not a sweep folder (no {SWEEP}); give the `out` of `medcne sweep`")
    sweep = read_json(out / SWEEP)
    rows: dict[tuple[str, str], Row] = {}
    for name in sweep["order"]:
        dataset, method, seed = name.rsplit("/", 2)
        row = rows.setdefault((dataset, method), Row(dataset, method, sweep["cells"][name]["kind"]))
        folder = out / name
        if not is_finished(folder):
            continue
        metrics = read_json(folder / METRICS)
        if on_other_labels(metrics):  # `medcne evaluate CELL --labels...` since: not comparable with the others
            row.relabelled.append(name)
            continue
        seed = int(seed.removeprefix("seed"))
        for key, _, _ in COLUMNS:
            if metrics.get(key) is not None:
                row.values.setdefault(key, {})[seed] = float(metrics[key])
        if metrics.get("seconds") is not None:
            row.seconds.append(float(metrics["seconds"]))
        row.n_points = metrics.get("n_points", row.n_points)
    order = {d: i for i, d in enumerate(sweep["datasets"])}, {m: i for i, m in enumerate(sweep["methods"])}
    ordered = sorted(rows.values(), key=lambda r: (order[0].get(r.dataset, 1e9), order[1].get(r.method, 1e9)))
    return sweep, ordered


def reference_method(sweep: dict, rows: list[Row]) -> str | None:
    """What the answers compare against: the config's ``reference``, else a method named 'simclr'
    (the paper's default augmentations), else the first method."""
    methods = [r.method for r in rows]
    for candidate in (sweep.get("reference"), "simclr"):
        if candidate in methods:
            return candidate
    return methods[0] if methods else None


def answers(sweep: dict, rows: list[Row]) -> list[str]:
    """One line per dataset: the best method by mean kNN accuracy against the reference, paired by seed."""
    reference = reference_method(sweep, rows)
    lines = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        scored = [r for r in rows if r.dataset == dataset and r.stats("knn_accuracy")]
        if not scored:
            lines.append(f"{dataset}: no finished cell with labels yet")
            continue
        top = max(shown_mean(r, "knn_accuracy") for r in scored)
        ref = next((r for r in scored if r.method == reference), None)
        tied = [r for r in scored if shown_mean(r, "knn_accuracy") == top]  # as printed, as the table's bold
        best = ref if ref in tied else tied[0]
        ties = [r.method for r in tied if r is not best]
        if ref is None:
            lines.append(f"{best.method} is best on {dataset} ({_mean_std(best, 'knn_accuracy')} kNN); "
                         f"{reference} has no result there")
        elif best is ref and ties:
            lines.append(f"{ref.method} ties with {', '.join(ties)} for best on {dataset} "
                         f"({_mean_std(ref, 'knn_accuracy')} kNN)")
            continue
        elif best is ref:
            others = [r for r in scored if r is not ref]
            if not others:
                lines.append(f"{ref.method} on {dataset}: {_mean_std(ref, 'knn_accuracy')} kNN (nothing to compare)")
                continue
            second = max(others, key=lambda r: r.stats("knn_accuracy")[0])
            lines.append(f"{ref.method} beats {second.method} by {_paired(ref, second)} kNN points on {dataset}")
        else:
            lines.append(f"{best.method} beats {ref.method} by {_paired(best, ref)} kNN points on {dataset}")
        if ties:
            lines[-1] += f" (tied for best with {', '.join(ties)})"
    return lines


def shown_mean(row: Row, key: str) -> float | None:
    """The mean of ``key`` as the report prints it: means that print alike are equal (all bold, tied in the
    answers), never told apart by a float's last bits."""
    stats = row.stats(key)
    return None if stats is None else float(next(fmt for k, _, fmt in COLUMNS if k == key).format(stats[0]))


def _paired(a: Row, b: Row) -> str:
    """Mean ± std of a - b over the seeds both have."""
    va, vb = a.values["knn_accuracy"], b.values["knn_accuracy"]
    diffs = [va[s] - vb[s] for s in sorted(set(va) & set(vb))]
    if not diffs:
        return f"{a.stats('knn_accuracy')[0] - b.stats('knn_accuracy')[0]:.1f} (no common seed)"
    if len(diffs) == 1:
        return f"{diffs[0]:.1f} (1 seed)"
    return f"{statistics.fmean(diffs):.1f} ± {statistics.stdev(diffs):.1f} ({len(diffs)} seeds)"


def _mean_std(row: Row, key: str, fmt: str = "{:.1f}") -> str:
    stats = row.stats(key)
    if stats is None:
        return "–"
    mean, std, _ = stats
    return fmt.format(mean) + ("" if std is None else " ± " + fmt.format(std))


def to_markdown(sweep: dict, rows: list[Row], lines: list[str], figure: str | None = None) -> str:
    """One table per dataset: methods x (kNN, silhouette, seeds, minutes per run); best mean in bold."""
    text = [f"# Sweep `{sweep.get('config', '')}`", ""]
    if sweep.get("description"):
        text += [sweep["description"], ""]
    text += [f"- {line}" for line in lines] + [""]
    for dataset in dict.fromkeys(r.dataset for r in rows):
        group = [r for r in rows if r.dataset == dataset]
        n = next((r.n_points for r in group if r.n_points), None)
        text += [f"## {dataset}" + (f" ({n:,} images)" if n else ""), ""]
        text += ["| method | " + " | ".join(label for _, label, _ in COLUMNS) + " | seeds | minutes per run |",
                 "|---|" + "---:|" * (len(COLUMNS) + 2)]
        best = {key: max((shown_mean(r, key) for r in group if r.stats(key)), default=None) for key, _, _ in COLUMNS}
        for r in group:
            cells = []
            for key, _, fmt in COLUMNS:
                cell = _mean_std(r, key, fmt)
                bold = best[key] is not None and r.stats(key) is not None and shown_mean(r, key) == best[key]
                cells.append(f"**{cell}**" if bold else cell)
            n_seeds = max((len(v) for v in r.values.values()), default=0)
            minutes = f"{statistics.fmean(r.seconds) / 60:.1f}" if r.seconds else "–"
            text.append(f"| {r.method} | " + " | ".join(cells) + f" | {n_seeds} | {minutes} |")
        text.append("")
    text.append("Mean ± standard deviation over seeds (n - 1); kNN accuracy: k = 15, stratified 9:1 split; "
                f"silhouette: all points, class labels. Cells and their status: `{STATUS}`.")
    if figure:
        text += ["", f"![maps: datasets x methods, first finished seed]({figure})"]
    return "\n".join(text) + "\n"


def to_csv(rows: list[Row]) -> str:
    """Full precision: one line per dataset x method, with the value of every seed."""
    body = []
    for r in rows:
        stats = [r.stats(key) for key, _, _ in COLUMNS]
        cells = [r.dataset, r.method, r.kind, max((len(v) for v in r.values.values()), default=0)]
        for s in stats:
            cells += ["", ""] if s is None else [repr(s[0]), "" if s[1] is None else repr(s[1])]
        cells.append(repr(statistics.fmean(r.seconds)) if r.seconds else "")
        for key, _, _ in COLUMNS:
            cells.append(" ".join(f"{seed}:{v!r}" for seed, v in sorted(r.values.get(key, {}).items())))
        body.append(cells)
    header = ["dataset", "method", "kind", "n_seeds", "knn_mean", "knn_std", "silhouette_mean", "silhouette_std",
              "seconds_mean", "knn_by_seed", "silhouette_by_seed"]
    return csv_text(header, body)


def write_report(out) -> dict:
    """Write ``report.md``, ``report.csv`` and ``report.png`` into the sweep folder.

    Returns the paths (``png`` only when some cell finished) and the answer lines.
    """
    from .figure import figure_grid

    out = Path(out)
    sweep, rows = collect(out)
    lines = answers(sweep, rows)
    if relabelled := [name for r in rows for name in r.relabelled]:
        lines.append(f"left out: {len(relabelled)} cell(s) scored on other labels than their own since the sweep "
                     f"({', '.join(relabelled[:3])}{', ...' if len(relabelled) > 3 else ''}): `medcne evaluate "
                     "CELL` scores a cell on its own labels again")
    paths = {"csv": write_text(out / f"{REPORT}.csv", to_csv(rows))}
    png = figure_grid(out, sweep, out / f"{REPORT}.png")
    if png is not None:
        paths["png"] = png
    paths["md"] = write_text(out / f"{REPORT}.md", to_markdown(sweep, rows, lines, png and png.name))
    return {"paths": paths, "answers": lines}
