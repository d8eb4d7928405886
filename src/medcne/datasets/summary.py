"""`medcne info`'s summary of a dataset: counts, classes and problems found."""

from __future__ import annotations

import hashlib

from ..defaults import UNLABELLED
from .files import listed
from .imageset import ImageSet, class_count, label_problem

RARE_CLASS = 15  # fewer images than the kNN k of the paper's evaluation


def find_problems(data: ImageSet, chunk: int | None = None) -> list[str]:
    """Problems worth a look before training: duplicates, blank images, tiny classes."""
    problems = list(data.notes)
    if data.labels is None:
        problems.append("no labels: maps can be made, but kNN accuracy and silhouette cannot be measured")
    else:
        counts = {n: c for n, c in data.class_counts().items() if n != UNLABELLED}  # no label: no class
        empty = [n for n, c in counts.items() if c == 0]
        rare = [f"{n} ({c})" for n, c in counts.items() if 0 < c < RARE_CLASS]
        if empty:
            problems.append(f"classes without images: {listed(empty, ', ')}")
        if rare:
            problems.append(f"{len(rare):,} classes with fewer than {RARE_CLASS} images: {listed(rare, ', ')}")
        labels = data.known_labels()  # as fit and evaluate count them: the class `unlabelled` is no label
        if problem := label_problem(labels[labels >= 0]):
            problems.append(f"{problem}: a map can be made, but kNN accuracy and silhouette cannot be measured")
    seen: dict[bytes, int] = {}
    duplicates, constant = 0, 0
    for _, block in data.iter_chunks(chunk):
        flat = block.reshape(len(block), -1)
        constant += int((flat.min(axis=1) == flat.max(axis=1)).sum())
        for row in flat:
            key = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
            if key in seen:
                duplicates += 1
            else:
                seen[key] = 1
    if duplicates:
        problems.append(f"{duplicates} exact duplicate image(s) (same pixels as an earlier image)")
    if constant:
        problems.append(f"{constant} blank image(s) (all pixels equal)")
    h, w, _ = data.image_shape
    if min(h, w) < 16:
        problems.append(f"images are only {h}x{w} pixels; crops of scale 0.2 will hold very little")
    return problems


def describe(data: ImageSet) -> str:
    """The text `medcne info` prints."""
    h, w, c = data.image_shape
    lines = [
        f"source:   {data.source}",
        f"images:   {len(data):,}",
        f"size:     {h}x{w} pixels, {c} channel{'s' if c != 1 else ''} ({'RGB' if c == 3 else 'gray'})"
        + (" (read lazily)" if data.is_lazy else ""),
    ]
    if data.labels is not None:
        counts = data.class_counts()
        none = f" (and the class {UNLABELLED!r}: no label)" if UNLABELLED in counts else ""
        lines.append(f"classes:  {class_count(counts)}{none}")
        width = max(len(n) for n in counts)
        for i, (name, count) in enumerate(counts.items()):
            lines.append(f"  {i:>3}  {name:<{width}}  {count:>8,}  {100 * count / len(data):5.1f}%")
    else:
        lines.append("classes:  none (unlabeled)")
    problems = find_problems(data)
    lines.append("problems: " + ("none found" if not problems else ""))
    lines += [f"  - {p}" for p in problems]
    return "\n".join(lines)
