"""The figures the README and the documentation quote, measured and written to docs/results.json.

Runs what `make demo` runs on the bundled sample (`medcne fit --quick --preset
rotate`, seed 0), t-SNE of pixels on the same images, and `medcne qc` on the
demo's run, each a fresh process timed from start to exit; then writes their
metrics, the machine and the commands to ``docs/results.json``. The pages mark
every figure they quote (``<!-- fig demo.knn_accuracy -->69.5``) and
tests/test_docs_figures.py checks each against this file, so a figure is
changed here, by measuring again, and never typed by hand.

    .venv/bin/python bench/docs_results.py            # about 3 minutes on 2 cores
    .venv/bin/python bench/docs_results.py --out build/docs-results   # keep the runs elsewhere
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from medcne.device import machine_name  # noqa: E402  (the one way benchmarks name the machine)

SAMPLE = "src/medcne/datasets/data/bloodmnist_sample.npz"


def run(args: list[str], cwd: Path) -> tuple[float, str]:
    """Run ``python -m medcne ARGS`` in ``cwd``; return (seconds, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "medcne", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def metrics(run_dir: Path) -> dict:
    """The figures of one run's metrics.json, rounded as the pages quote them."""
    m = json.loads((run_dir / "metrics.json").read_text())
    return {
        "knn_accuracy": round(m["knn_accuracy"], 1),
        "knn_accuracy_mean": round(m["knn_accuracy_mean"], 1),
        "knn_accuracy_std": round(m["knn_accuracy_std"], 1),
        "silhouette": round(m["silhouette"], 3),
        "neighbour_preservation": round(m["neighbour_preservation"], 3),
        "seconds": round(m.get("seconds") or 0.0),
    }


def qc_counts(stdout: str) -> dict:
    """The counts of `medcne qc`'s summary line."""
    found = re.search(r"([\d,]+) likely label errors, ([\d,]+) near-duplicate pairs, ([\d,]+) outliers", stdout)
    if not found:
        raise SystemExit(f"qc printed no summary line: {stdout!r}")
    errors, dups, outliers = (int(x.replace(",", "")) for x in found.groups())
    return {"likely_label_errors": errors, "near_duplicate_pairs": dups, "likely_outliers": outliers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/docs-results", help="folder for the runs")
    parser.add_argument("--results", default="docs/results.json", help="the results file to write")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sample = str(ROOT / SAMPLE)
    commands = {
        "demo": ["fit", sample, "--out", str(out / "demo-run"), "--quick", "--preset", "rotate", "--overwrite"],
        "tsne_pixels": ["baseline", sample, "--method", "tsne-pixels", "--out", str(out / "tsne-pixels"), "--force"],
        "qc": ["qc", str(out / "demo-run")],
    }
    wall = {}
    printed = {}
    for name, command in commands.items():
        wall[name], printed[name] = run(command, ROOT)
        print(f"{name}: {wall[name]:.0f} s", flush=True)
    results = {
        "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{machine_name()}, torch "
                   + subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                                    capture_output=True, text=True).stdout.strip(),
        "commands": {k: "medcne " + " ".join(v).replace(str(ROOT) + "/", "") for k, v in commands.items()},
        "demo": {**metrics(out / "demo-run"), "wall_seconds": round(wall["demo"])},
        "tsne_pixels": {**metrics(out / "tsne-pixels"), "wall_seconds": round(wall["tsne_pixels"])},
        "qc": qc_counts(printed["qc"]),
    }
    path = ROOT / args.results
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    shutil.copyfile(out / "demo-run" / "map.png", ROOT / "docs" / "demo-map.png")  # the README's picture
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if apply_figures(page, results):
            print(f"figures updated in {page.relative_to(ROOT)}")


FIGURE = re.compile(r"(<!--\s*fig\s+(?P<key>[\w.]+)\s*-->\s*)(?P<value>-?[0-9][0-9,]*(?:\.[0-9]+)?)")


def apply_figures(page: Path, results: dict) -> bool:
    """Write each figure a page quotes (``<!--fig demo.silhouette-->0.149``) from ``results``, keeping its
    number of decimals; returns whether the page changed."""
    def value(m: re.Match) -> str:
        v = results
        for part in m["key"].split("."):
            v = v[part]
        decimals = len(m["value"].partition(".")[2])
        text = f"{float(v):,.{decimals}f}" if "," in m["value"] else f"{float(v):.{decimals}f}"
        return m.group(1) + text

    text = page.read_text(encoding="utf-8")
    new = FIGURE.sub(value, text)
    if new != text:
        page.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    main()
