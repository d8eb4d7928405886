"""Label suggestion in Chromium on runs whose images already have labels: suggestions go to the
images without one (the class ``unlabelled``), learned from the run's labels and the hand labels,
and never replace a label of the run's; qc.csv's suggestion is shown once beside the labels.

Small labelled runs built here; skipped without Chromium, Playwright or the bundle, except under
CI (see test_viewer_browser.py). The unlabelled run is test_viewer_browser.py's ``clusters``.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medcne.io import write_json
from medcne.runs import read_label_csv, write_embedding
from medcne.viewer import build_viewer
from test_viewer_browser import (
    _need_browser,
    chromium,
    label,
    legend_counts,
    open_page,
    panel_line,
    select,
    wait_ready,
)

pytestmark = pytest.mark.slow
NAMES = ["alpha", "beta", "unlabelled"]
ALPHA, BETA, NONE = range(3)
QC_HEADER = ["id", "label", "label_issue_score", "suggested_label", "likely_label_error", "duplicate_id",
             "duplicate_distance", "likely_duplicate", "outlier_score", "likely_outlier"]


def _groups():
    """(group, run label) per point and the groups' centres: three far-apart groups. 0 (left):
    40 alpha, 8 unlabelled; 1 (right): 40 beta, 8 unlabelled; 2 (top): 6 alpha, 2 unlabelled."""
    spec = [((-10, 0), [ALPHA] * 40 + [NONE] * 8), ((10, 0), [BETA] * 40 + [NONE] * 8),
            ((0, 12), [ALPHA] * 6 + [NONE] * 2)]
    group = np.concatenate([[g] * len(labels) for g, (_, labels) in enumerate(spec)])
    labels = np.concatenate([labels for _, labels in spec])
    centres = np.array([c for c, _ in spec], float)
    return group, labels, centres


def _write_run(folder, labels, names, centres, group, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    emb = (centres[group] + rng.normal(size=(len(labels), 2))).astype(np.float32)
    write_embedding(folder, emb, [f"img{i}" for i in range(len(labels))], labels, names)
    write_json(folder / "params.json", {"method": "tsimcne", "data": {}})
    return emb


@pytest.fixture(scope="module")
def partly(tmp_path_factory):
    """(index, run labels, group, map, (u, b)): 104 points, 18 of them of the class 'unlabelled', and a
    qc.csv whose suggested label is alpha for u (unlabelled, on the left) and b (a beta it doubts)."""
    _need_browser()
    run = tmp_path_factory.mktemp("partly")
    group, labels, centres = _groups()
    emb = _write_run(run, labels, NAMES, centres, group)
    rows = []
    for i, k in enumerate(labels):
        rows.append({"id": f"img{i}", "label": NAMES[k], "label_issue_score": "0.1",
                     "suggested_label": "" if k == NONE else NAMES[k], "likely_label_error": "0",
                     "duplicate_id": "", "duplicate_distance": "", "likely_duplicate": "0",
                     "outlier_score": "0.5", "likely_outlier": "0"})
    unl_a = int(np.flatnonzero((group == 0) & (labels == NONE))[0])  # its neighbours say alpha
    rows[unl_a]["suggested_label"] = "alpha"
    doubt_b = int(np.flatnonzero(labels == BETA)[0])  # a beta the checks doubt: alpha, they say
    rows[doubt_b].update(suggested_label="alpha", likely_label_error="1", label_issue_score="1.0")
    with open(run / "qc.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, QC_HEADER)
        w.writeheader()
        w.writerows(rows)
    images = np.random.default_rng(1).integers(0, 256, size=(len(labels), 8, 8, 3), dtype=np.uint8)
    return build_viewer(run, images=images), labels, group, emb, (unl_a, doubt_b)


@pytest.fixture(scope="module")
def fully(tmp_path_factory):
    """(index, run labels): 80 points of two classes, every one labelled."""
    _need_browser()
    run = tmp_path_factory.mktemp("fully")
    group = np.repeat([0, 1], 40)
    labels = group.copy()
    _write_run(run, labels, NAMES[:2], np.array([[-10.0, 0], [10, 0]]), group)
    images = np.random.default_rng(2).integers(0, 256, size=(80, 8, 8, 3), dtype=np.uint8)
    return build_viewer(run, images=images), labels


@pytest.fixture(scope="module")
def browser(partly):
    yield from chromium()


def current(page) -> list[str]:
    return page.evaluate("Array.from(medcne.labels.cur, k => medcne.labels.names[k])")


def vote(emb, known: dict[int, str], queries, k=5) -> dict[int, str]:
    """The majority label of each query's k nearest known points (a tie: the nearest of the tied)."""
    seeds = np.array(sorted(known))
    out = {}
    for q in queries:
        nearest = seeds[np.argsort(np.linalg.norm(emb[seeds] - emb[q], axis=1), kind="stable")[:k]]
        votes = [known[int(s)] for s in nearest]
        out[int(q)] = next(v for v in votes if votes.count(v) == max(map(votes.count, votes)))
    return out


def press_suggest(page) -> str:
    """Presses Suggest labels and returns what the suggestions row says."""
    page.evaluate("document.getElementById('suggest-count').textContent = ''")
    page.click("#suggest", timeout=5000)
    page.wait_for_function("document.getElementById('suggest-count').textContent.length > 0 && "
                           "!document.getElementById('suggest-count').textContent.includes('…')", timeout=10_000)
    return page.locator("#suggest-count").inner_text()


def test_suggestions_label_only_the_unlabelled_images_from_every_label_known(browser, partly, tmp_path):
    index, labels, group, emb, _ = partly
    unlabelled = np.flatnonzero(labels == NONE)
    ctx, page, errors = open_page(browser, index)
    try:
        # The run's own labels are enough to learn from: no hand label needed.
        assert not page.locator("#suggest").is_disabled()
        assert press_suggest(page) == "18 suggested labels to review"
        want = [NAMES[k] for k in labels]
        for i in unlabelled:
            want[i] = "alpha" if group[i] in (0, 2) else "beta"
        assert current(page) == want
        assert legend_counts(page) == {"alpha": 46 + 10, "beta": 40 + 8, "unlabelled": 0}

        # Hand labels take part and win over the run's: the top group's six alphas are "gamma" now,
        # and five of the run's alphas on the left are beta by hand.
        top = np.flatnonzero((group == 2) & (labels == ALPHA))
        select(page, top)
        label(page, "gamma")
        left = np.flatnonzero((group == 0) & (labels == ALPHA))[:5]
        select(page, left)
        label(page, "beta")
        assert press_suggest(page) == "18 suggested labels to review"
        known = {i: NAMES[k] for i, k in enumerate(labels) if k != NONE}
        known.update({int(i): "gamma" for i in top})
        known.update({int(i): "beta" for i in left})
        want = [known.get(i, "") for i in range(len(labels))]
        for i, name in vote(emb, known, unlabelled).items():
            want[i] = name
        assert {want[i] for i in unlabelled if group[i] == 2} == {"gamma"}
        assert current(page) == want
        # Not one image the run labelled carries a suggestion.
        pending = np.asarray(page.evaluate("Array.from(medcne.labels.pending.label)"))
        assert np.flatnonzero(pending >= 0).tolist() == unlabelled.tolist()

        page.click("#suggest-accept")
        with page.expect_download() as dl:
            page.click("#export")
        target = tmp_path / "labels.csv"
        dl.value.save_as(target)
        rows = list(csv.DictReader(target.open(newline="")))
        suggested = {r["id"]: (r["old_label"], r["new_label"]) for r in rows if r["source"] == "suggested"}
        assert suggested == {f"img{i}": ("unlabelled", want[i]) for i in unlabelled}
        assert read_label_csv(target) == {f"img{i}": want[i] for i in [*top, *left]}
        page.reload()
        wait_ready(page)
        assert current(page) == want
        assert page.locator("#suggest-count").inner_text() == "18 suggested labels accepted"
    finally:
        ctx.close()
    assert errors == []


def test_a_run_with_every_image_labelled_has_nothing_to_suggest(browser, fully):
    index, labels = fully
    ctx, page, errors = open_page(browser, index)
    try:
        select(page, [0, 1, 2, 3, 4])
        label(page, "gamma")  # five hand labels among 80 the run labelled
        want = current(page)
        assert press_suggest(page) == "nothing to suggest: every image has a label"
        assert page.evaluate("medcne.labels.pending") is None
        assert current(page) == want and legend_counts(page) == {"alpha": 35, "beta": 40, "gamma": 5}
        assert page.locator("#suggest-accept").is_hidden() and page.locator("#suggest-clear").is_hidden()
        select(page, [50])
        label(page, "gamma")  # the next change of labels takes the note away
        assert page.locator("#suggestions").is_hidden()
    finally:
        ctx.close()
    assert errors == []


def test_qc_suggestion_is_shown_once_beside_the_labels(browser, partly):
    """qc.csv's suggested label is left out of the panel while the image carries that label already,
    given by hand or suggested: the panel never names one label twice as new."""
    index, labels, _, _, (unl_a, doubt_b) = partly
    ctx, page, errors = open_page(browser, index)
    try:
        select(page, [int(np.flatnonzero(labels == ALPHA)[0])])
        label(page, "alpha")  # a hand label, as the curator's first
        page.evaluate("i => medcne.showPoint(i)", unl_a)
        assert panel_line(page, "qc suggested label") == "qc suggested label: alpha"
        press_suggest(page)
        assert panel_line(page, "suggested label").startswith("suggested label: alpha (")
        assert panel_line(page, "qc suggested label") is None
        page.click("#suggest-clear")
        assert panel_line(page, "qc suggested label") == "qc suggested label: alpha"

        page.evaluate("i => medcne.showPoint(i)", doubt_b)
        assert panel_line(page, "qc suggested label") == "qc suggested label: alpha"
        select(page, [doubt_b])
        label(page, "alpha")  # the curator agrees with the checks
        assert panel_line(page, "new label") == "new label: alpha"
        assert panel_line(page, "qc suggested label") is None
        lines = page.eval_on_selector_all("#hover-text div", "ds => ds.map(d => d.textContent)")
        assert sum(line.endswith(": alpha") for line in lines) == 1, lines
        label(page, "gamma")  # the curator disagrees with both: the checks' word is news again
        assert panel_line(page, "qc suggested label") == "qc suggested label: alpha"
    finally:
        ctx.close()
    assert errors == []
