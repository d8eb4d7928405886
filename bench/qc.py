"""Curation measured on planted problems (issue 16), and its cost at PCam size.

Planted problems, one run: a 4,000-image BloodMNIST subset
(``numpy.random.default_rng(0).choice(17092, 4000, replace=False)`` of
``../shared/data/bloodmnist28.npz``) plus 50 near-duplicates (rescaled,
JPEG-recompressed, shifted by 1-2 px, rotated by 90 degrees copies of other
images) and 50 artefacts (blurred, over- and under-exposed, blank, colour-shifted,
grayscale noise), with 5% of the 4,000 labels flipped (seeded). A ``--quick``
t-SimCNE run (rotate preset) and a t-SNE-of-pixels baseline are trained on
these 4,100 images; every detector then runs on four spaces: the t-SimCNE
features, the t-SimCNE map, raw pixels and the t-SNE-of-pixels map.

    .venv/bin/python bench/qc.py                   # the planted-problem benchmark (~15 min on 2 cores)
    .venv/bin/python bench/qc.py --base sample --n-planted 25 --seed 1 --out build/qc-tune   # thresholds
    .venv/bin/python bench/qc.py --big 327680      # time and peak RSS of qc on 327,680 x 512 features

Results are printed, and written to ``OUT/results.json``; the propagation
curves to ``docs/propagation.png`` (``--plot``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
BLOOD = ROOT / ".." / "shared" / "data" / "bloodmnist28.npz"
PER_CLASS = (1, 5, 10, 50)


def machine() -> str:
    import torch

    from medcne.device import machine_name

    return f"{machine_name()}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}"


# -- planting ------------------------------------------------------------------
def near_copy(img: np.ndarray, kind: str, rng) -> np.ndarray:
    """A near-duplicate of one H x W x 3 uint8 image."""
    h, w = img.shape[:2]
    if kind == "rescaled":
        small = Image.fromarray(img).resize((int(w * 0.75), int(h * 0.75)), Image.BILINEAR)
        return np.asarray(small.resize((w, h), Image.BICUBIC))
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(rng.integers(30, 60)))
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    if kind == "shifted":
        dy, dx = rng.choice([-2, -1, 1, 2], size=2)
        padded = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="edge")
        return padded[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w].copy()
    return np.rot90(img, int(rng.integers(1, 4))).copy()  # "rot90"


def artefact(img: np.ndarray, kind: str, rng) -> np.ndarray:
    """An artefact made from (or instead of) one H x W x 3 uint8 image."""
    f = img.astype(np.float32)
    if kind == "blurred":
        return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(2.0)))
    if kind == "over-exposed":
        return np.clip(f * 1.8 + 90, 0, 255).astype(np.uint8)
    if kind == "under-exposed":
        return np.clip(f * 0.25, 0, 255).astype(np.uint8)
    if kind == "blank":
        return np.full_like(img, rng.choice([0, 255, int(rng.integers(100, 230))]))
    if kind == "colour-shifted":
        return np.clip(f[..., [2, 0, 1]] + np.float32([60, -40, 0]), 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, img.shape[:2], dtype=np.uint8)  # "gray-noise": another kind of image
    return np.repeat(noise[..., None], 3, axis=2)


DUP_KINDS = ("rescaled", "jpeg", "shifted", "rot90")
ART_KINDS = ("blurred", "over-exposed", "under-exposed", "blank", "colour-shifted", "gray-noise")


def plant(images, labels, n_classes: int, seed: int, n_planted: int = 50, flip: float = 0.05) -> dict:
    """Images with planted duplicates, artefacts and flipped labels, shuffled; and the truth.

    Returns a dict: ``images``, ``labels`` (noisy, what the dataset says), ``true``,
    ``ids``, ``flipped`` (bool), ``pairs`` (P, 2: copy, source), ``kind``
    (artefact kind or '' per image), ``n_base``.
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    sources = rng.choice(n, 2 * n_planted, replace=False)
    dup_src, art_src = sources[:n_planted], sources[n_planted:]
    dup_kind = [DUP_KINDS[i % len(DUP_KINDS)] for i in range(n_planted)]
    art_kind = [ART_KINDS[i % len(ART_KINDS)] for i in range(n_planted)]
    new = [near_copy(images[s], k, rng) for s, k in zip(dup_src, dup_kind, strict=True)]
    new += [artefact(images[s], k, rng) for s, k in zip(art_src, art_kind, strict=True)]
    all_images = np.concatenate([images, np.stack(new)])
    true = np.concatenate([labels, labels[dup_src], labels[art_src]]).astype(np.int64)
    noisy = true.copy()
    flipped = np.zeros(len(true), dtype=bool)
    flip_idx = rng.choice(n, int(round(flip * n)), replace=False)
    noisy[flip_idx] = (true[flip_idx] + rng.integers(1, n_classes, len(flip_idx))) % n_classes
    flipped[flip_idx] = True
    ids = [f"orig/{i}" for i in range(n)] + [f"dup/{k}-of-{s}" for s, k in zip(dup_src, dup_kind, strict=True)]
    ids += [f"art/{k}-{i}" for i, k in enumerate(art_kind)]
    kind = [""] * (n + n_planted) + art_kind
    order = rng.permutation(len(all_images))  # planted images spread through the dataset
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    pairs = np.c_[where[n + np.arange(n_planted)], where[dup_src]]
    return {"images": all_images[order], "labels": noisy[order], "true": true[order], "ids": np.array(ids)[order],
            "flipped": flipped[order], "pairs": pairs, "kind": np.array(kind)[order], "n_base": n}


def exact_duplicate_pairs(images: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of identical images already in the data (true duplicates too)."""
    first: dict[bytes, int] = {}
    pairs = set()
    for i, img in enumerate(images):
        key = img.tobytes()
        if key in first:
            pairs.add((first[key], i))
        else:
            first[key] = i
    return pairs


# -- scoring -------------------------------------------------------------------
def score_labels(res, truth) -> dict:
    from sklearn.metrics import roc_auc_score

    s = np.nan_to_num(res.label_issue_score, nan=0.0)
    pos = truth["flipped"]
    K = int(pos.sum())
    top = np.argsort(-s, kind="stable")[:K]
    flag = res.likely_label_error
    return {"flipped": K, "precision_at_k": float(pos[top].mean()), "roc_auc": float(roc_auc_score(pos, s)),
            "flagged": int(flag.sum()), "flag_precision": float(pos[flag].mean()) if flag.any() else 0.0,
            "flag_recall": float(pos[flag].sum() / K)}


def score_duplicates(res, truth) -> dict:
    planted = {tuple(sorted(map(int, p))) for p in truth["pairs"]}
    true_pairs = planted | truth["exact_pairs"]
    flagged = {tuple(map(int, p)) for p in res.duplicate_pairs()}
    ranked: list[tuple[int, int]] = []  # the closest pairs first, as many as were planted
    for i in np.argsort(res.duplicate_distance, kind="stable"):
        p = tuple(sorted((int(i), int(res.duplicate_index[i]))))
        if p not in ranked:
            ranked.append(p)
        if len(ranked) == len(planted):
            break
    return {"planted": len(planted), "exact_in_data": len(truth["exact_pairs"]), "flagged_pairs": len(flagged),
            "recall": len(flagged & planted) / len(planted),
            "precision": len(flagged & true_pairs) / len(flagged) if flagged else 0.0,
            "closest_pairs_true": len(set(ranked) & true_pairs) / len(ranked),
            "recall_by_kind": _by_kind(truth, flagged)}


def _by_kind(truth, flagged) -> dict:
    out: dict[str, list[int]] = {}
    for (copy, src), kind in zip(truth["pairs"], truth["dup_kind"], strict=True):
        out.setdefault(kind, []).append(tuple(sorted((int(copy), int(src)))) in flagged)
    return {k: f"{sum(v)}/{len(v)}" for k, v in out.items()}


def score_outliers(res, truth) -> dict:
    art = truth["kind"] != ""
    top = np.argsort(-res.outlier_score, kind="stable")[:100]
    hit = np.zeros(len(art), dtype=bool)
    hit[top] = True
    by_kind = {k: f"{int((hit & (truth['kind'] == k)).sum())}/{int((truth['kind'] == k).sum())}" for k in ART_KINDS}
    flag = res.likely_outlier
    return {"recall_at_100": float((hit & art).sum() / art.sum()), "recall_at_100_by_kind": by_kind,
            "flagged": int(flag.sum()), "flag_precision": float(art[flag].mean()) if flag.any() else 0.0,
            "flag_recall": float((flag & art).sum() / art.sum())}


def propagation(X, truth, method: str, reps: int, nb=None) -> dict:
    """Accuracy (%) vs the true labels of the images not annotated (artefacts left out), mean of ``reps`` draws."""
    from medcne.curate import propagate_labels

    true, ok = truth["true"], truth["kind"] == ""
    out = {}
    for m in PER_CLASS:
        accs = []
        for rep in range(reps):
            rng = np.random.default_rng(1000 + rep)
            seeds = np.concatenate([rng.choice(np.flatnonzero(ok & (true == c)), m, replace=False)
                                    for c in np.unique(true)])
            given = np.full(len(true), -1)
            given[seeds] = true[seeds]
            pred, _ = propagate_labels(X, given, method=method, neighbours=nb)
            test = ok & (given < 0)
            accs.append(100.0 * float(np.mean(pred[test] == true[test])))
        out[m] = {"mean": float(np.mean(accs)), "std": float(np.std(accs))}
    return out


# -- the runs ------------------------------------------------------------------
def base_data(base: str):
    from medcne.datasets import load_dataset, load_sample

    if base == "sample":
        return load_sample()
    data = load_dataset(BLOOD)
    return data.take(np.random.default_rng(0).choice(len(data), 4000, replace=False))


def make_runs(out: Path, seed: int, n_planted: int, base: str, reuse: bool):
    """Plant, write the dataset, fit t-SimCNE (--quick, rotate) and t-SNE of pixels; returns runs and truth."""
    from medcne.defaults import QUICK_CPU
    from medcne.io import save_npz
    from medcne.runs import fit_run, make_baseline, read_run

    data = base_data(base)
    truth = plant(data.to_numpy(), data.labels, len(data.class_names), seed, n_planted)
    truth["exact_pairs"] = exact_duplicate_pairs(truth["images"])
    truth["dup_kind"] = [DUP_KINDS[i % len(DUP_KINDS)] for i in range(n_planted)]
    npz = out / "planted.npz"
    save_npz(npz, images=truth["images"], labels=truth["labels"], class_names=np.array(data.class_names),
             ids=truth["ids"])
    times = {}
    t = time.perf_counter()
    if reuse and (out / "tsimcne" / "model.pt").exists():
        run = read_run(out / "tsimcne")
    else:
        run = fit_run(npz, out / "tsimcne", {**QUICK_CPU, "preset": "rotate", "random_state": 0}, overwrite=True,
                      quick=True, verbose=False)
    times["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    if reuse and (out / "tsne-pixels" / "embedding.npz").exists():
        base_run = read_run(out / "tsne-pixels")
    else:
        base_run = make_baseline(npz, "tsne-pixels", out / "tsne-pixels", force=True, seed=0)
    times["tsne"] = time.perf_counter() - t
    return run, base_run, truth, times


def evaluate_spaces(run, base_run, truth, reps: int) -> dict:
    """Every detector on the four spaces: the space alone, and with the image checks (what `medcne qc` does)."""
    from medcne.curate import image_checks, nearest_neighbours, quality_control
    from medcne.runs.curate import run_points

    data = run.load_images()
    spaces = {
        "t-SimCNE features": run_points(run, "features", data)[0],
        "t-SimCNE map": run_points(run, "map")[0],
        "pixels": run_points(run, "pixels", data)[0],
        "t-SNE of pixels": run_points(base_run, "map")[0],
    }
    t = time.perf_counter()
    checks = image_checks(data.images)
    checks_seconds = time.perf_counter() - t
    n_classes = len(run.class_names)
    results = {}
    for name, X in spaces.items():
        t = time.perf_counter()
        nb = nearest_neighbours(X, 15)
        res = quality_control(X, run.labels, checks=checks, n_classes=n_classes, neighbours=nb)
        seconds = time.perf_counter() - t
        alone = quality_control(X, run.labels, n_classes=n_classes, neighbours=nb)
        r = {"dims": int(X.shape[1]), "qc_seconds": seconds, "checks_seconds": checks_seconds,
             "labels": score_labels(res, truth), "duplicates": score_duplicates(res, truth),
             "outliers": score_outliers(res, truth), "duplicates_space_alone": score_duplicates(alone, truth),
             "outliers_space_alone": score_outliers(alone, truth),
             "propagation": propagation(X, truth, "spreading", reps, nb),
             "propagation_knn": propagation(X, truth, "knn", reps)}
        results[name] = r
        print(name, json.dumps(r), flush=True)
    return results


def table(results: dict) -> str:
    """The Markdown table of bench/RESULTS.md and the README."""
    head = ("| space | label errors: precision at K / ROC AUC | near-duplicate pairs: recall / precision "
            "(space alone) | artefacts in top 100 (space alone) | propagation, 1 / 5 / 10 / 50 per class |")
    lines = [head, "|---|---|---|---|---|"]
    for name, r in results.items():
        lab, dup, dup0 = r["labels"], r["duplicates"], r["duplicates_space_alone"]
        prop = " / ".join(f"{r['propagation'][m]['mean']:.1f}" for m in PER_CLASS)
        lines.append(
            f"| {name} | {lab['precision_at_k']:.2f} / {lab['roc_auc']:.3f} | {dup['recall']:.2f} / {dup['precision']:.2f} "
            f"({dup0['recall']:.2f} / {dup0['precision']:.2f}) | {r['outliers']['recall_at_100']:.2f} "
            f"({r['outliers_space_alone']['recall_at_100']:.2f}) | {prop} |"
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, r in results.items():
        ys = [r["propagation"][m]["mean"] for m in PER_CLASS]
        ax.plot(PER_CLASS, ys, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(PER_CLASS, [str(m) for m in PER_CLASS])
    ax.set_xlabel("annotated images per class")
    ax.set_ylabel("accuracy of propagated labels (%)")
    ax.set_title("Label spreading on 4,100 BloodMNIST images", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


class RandomImages:
    """A lazily made store of ``n`` random uint8 images (as PCam's reader is lazy): slices only."""

    def __init__(self, n: int, side: int = 96):
        self.n, self.side = n, side

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, _ = key.indices(self.n)
        rng = np.random.default_rng(start)
        return rng.integers(0, 256, (stop - start, self.side, self.side, 3), dtype=np.uint8)


def big(n: int, d: int, baseline_n: int) -> dict:
    """Time and peak RSS of qc on n x d random float32 features and n random 96 x 96 images (made lazily).

    The ratio: our exact kNN against scikit-learn's brute force on ``baseline_n`` of the points.
    """
    from sklearn.neighbors import NearestNeighbors

    from medcne.curate import image_checks, nearest_neighbours, quality_control

    rng = np.random.default_rng(0)
    small = rng.standard_normal((baseline_n, d), dtype=np.float32)
    t = time.perf_counter()
    nearest_neighbours(small, 15)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    NearestNeighbors(n_neighbors=16, algorithm="brute").fit(small).kneighbors(small)
    ref = time.perf_counter() - t
    del small
    X = rng.standard_normal((n, d), dtype=np.float32)
    labels = rng.integers(0, 2, n)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t = time.perf_counter()
    checks = image_checks(RandomImages(n))
    checks_s = time.perf_counter() - t
    t = time.perf_counter()
    nb = nearest_neighbours(X, 15)
    knn_s = time.perf_counter() - t
    t = time.perf_counter()
    res = quality_control(X, labels, checks=checks, k=15, n_classes=2, neighbours=nb)
    detect_s = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"n": n, "d": d, "image_checks_s": checks_s, "knn_s": knn_s, "detectors_s": detect_s,
            "total_s": checks_s + knn_s + detect_s, "peak_rss_gb": peak, "rss_before_gb": rss_before,
            "features_gb": X.nbytes / 2**30, "summary": res.summary(),
            f"knn_{baseline_n}_ours_s": ours, f"knn_{baseline_n}_sklearn_brute_s": ref, "ratio": ref / ours}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "build" / "qc-bench"), help="runs and results (build/ is ignored)")
    p.add_argument("--base", default="bloodmnist", choices=["bloodmnist", "sample"])
    p.add_argument("--seed", type=int, default=0, help="seed of the planted problems")
    p.add_argument("--n-planted", type=int, default=50)
    p.add_argument("--reps", type=int, default=5, help="draws of the annotated images per point of the curve")
    p.add_argument("--reuse", action="store_true", help="keep runs already in --out (no retraining)")
    p.add_argument("--fit-only", action="store_true", help="plant and train, then stop (evaluate later with --reuse)")
    p.add_argument("--plot", default="", help="write the propagation curves here (e.g. docs/propagation.png)")
    p.add_argument("--big", type=int, default=0, help="only time qc on this many random 512-D features")
    p.add_argument("--baseline-n", type=int, default=20000, help="points of the kNN ratio against scikit-learn")
    args = p.parse_args()
    print(machine(), flush=True)
    if args.big:
        print(json.dumps(big(args.big, 512, args.baseline_n)), flush=True)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run, base_run, truth, times = make_runs(out, args.seed, args.n_planted, args.base, args.reuse)
    print(f"{len(truth['ids'])} images; fit {times['fit']:.0f} s, t-SNE {times['tsne']:.0f} s; "
          f"map kNN {run.metrics.get('knn_accuracy')} vs t-SNE {base_run.metrics.get('knn_accuracy')}", flush=True)
    if args.fit_only:
        return
    results = evaluate_spaces(run, base_run, truth, args.reps)
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "args": vars(args), "times": times,
              "knn_accuracy": {"t-SimCNE": run.metrics.get("knn_accuracy"),
                               "t-SNE of pixels": base_run.metrics.get("knn_accuracy")},
              "results": results}
    (out / "results.json").write_text(json.dumps(record, indent=1))
    print(table(results))
    if args.plot:
        plot(results, Path(args.plot))


if __name__ == "__main__":
    main()
