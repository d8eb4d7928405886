"""Tiling many slides into an on-disk store: one store part per slide, resumable, in parallel processes.

Each slide becomes one part of the store, committed atomically by the store's
writer, so a rerun skips the slides already done (resume) and a slide that
fails leaves nothing. Its thumbnail (``thumbnails/<id>.png`` and ``.json``) is
written just before its part. With several workers, each process plans a slide
and writes its tiles to a scratch file beside the output; the main process
alone commits parts (the store's manifest has one writer) and removes the
scratch. A scratch folder holds a marker that its run keeps locked; one whose
marker nobody holds was left by a killed run and is removed by the next run
into the same output.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing.managers import SyncManager
from pathlib import Path

import numpy as np

from ..errors import MedcneError
from ..io import atomic_write, write_json
from .slides import SLIDE_SUFFIXES, SlideError
from .slides_plan import SlidePlan, TileOptions, check_annotations, iter_blocks, plan_path
from .slides_scratch import make_scratch, remove_stale_scratch
from .store import is_store
from .store_tiles import THUMBNAILS, slide_record, slides_in_store, store_record
from .store_write import StoreWriter

BLOCK = 64


class Progress:
    """What the tiler reports as it goes; the CLI draws bars, the default stays quiet."""

    def begin(self, n_slides: int) -> None:
        """The slides were found: ``n_slides`` to go."""

    def planned(self, n_tiles: int) -> None:
        """A slide was planned: ``n_tiles`` more tiles to read."""

    def tiles(self, n: int) -> None:
        """``n`` more tiles were read."""

    def slide_done(self) -> None:
        """A slide was finished (tiled, resumed or skipped)."""


@dataclass
class TileReport:
    """What a tiling run did."""

    tiled: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tiles: int = 0
    notes: list[str] = field(default_factory=list)


def find_slides(paths) -> list[tuple[Path, str]]:
    """``(path, slide id)`` for each slide file given or found (recursively) in a folder given.

    The id is the file name without its extension; two slides with one id are
    refused, since ids name the store's parts and thumbnails.
    """
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found += sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)
        elif given.exists():
            found.append(given)
        else:
            raise SlideError(f"{given}: no such slide file or folder; check the path")
    if not found:
        raise SlideError(f"no slide files ({', '.join(SLIDE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    seen: dict[str, Path] = {}
    for path in found:
        sid = path.stem
        if sid in seen and seen[sid].resolve() != path.resolve():
            raise MedcneError(f"two slides have the id {sid!r} ({seen[sid]}, {path}); rename one, since the id "
                              "names its tiles and thumbnail")
        seen[sid] = path
    return [(p, s) for s, p in seen.items()]


def write_thumbnail(out: Path, plan: SlidePlan) -> list[Path]:
    """``thumbnails/<id>.png`` and ``.json`` in the store folder, each written atomically."""
    folder = out / THUMBNAILS
    png = atomic_write(folder / f"{plan.slide_id}.png", lambda p: plan.thumbnail.save(p, format="PNG", compress_level=1))
    return [png, write_json(folder / f"{plan.slide_id}.json", plan.thumbnail_info)]


class _Committer:
    """Opens the store on the first part and commits one slide's part with its thumbnail."""

    def __init__(self, out: Path, options: TileOptions, report: TileReport):
        self.out, self.options, self.report = out, options, report
        self.writer = None
        self.created = not out.exists()  # only then may a run that commits nothing remove it
        if is_store(out):  # appending (checked by slides_in_store): hold the store's lock from the start
            self.open()

    def open(self) -> None:
        size = self.options.tile_size
        self.writer = StoreWriter(self.out, (size, size, 3), tiling=store_record(self.options))

    def commit(self, plan: SlidePlan, blocks: Iterator[np.ndarray]) -> None:
        self.report.notes += plan.notes
        if not len(plan):
            self.report.skipped.append(plan.slide_id)
            return
        if self.writer is None:
            self.open()
        thumbs = write_thumbnail(self.out, plan)
        try:
            n = self.writer.add_part(plan.slide_id, blocks, labels=plan.labels, ids=plan.ids,
                                     provenance=plan.provenance,
                                     tiling=slide_record(self.options, plan.slide_id, plan.path))
        except BaseException:
            for path in thumbs:  # the part was not committed: its thumbnail goes too
                path.unlink(missing_ok=True)
            raise
        self.report.tiled.append(plan.slide_id)
        self.report.tiles += int(n)

    def close(self) -> None:
        """Close the store; one this run created but put no slide into is removed (nothing half-written)."""
        if self.writer is not None:
            self.writer.close()
        if self.created and not self.report.tiled and self.out.is_dir():
            shutil.rmtree(self.out, ignore_errors=True)


def _fail(report: TileReport, path: Path, sid: str, exc: SlideError, skip_bad: bool) -> None:
    if not skip_bad:
        raise exc
    report.skipped.append(sid)
    report.notes.append(f"skipped: {' '.join(str(exc).split())}")


def tile_slides(paths, out, options: TileOptions, *, workers: int = 1, skip_bad: bool = False,
                progress: Progress | None = None) -> TileReport:
    """Tile the slides at ``paths`` into the store folder ``out``; returns a :class:`TileReport`.

    Parameters
    ----------
    paths : list of str or Path
        Slide files, or folders searched recursively for them.
    out : str or Path
        The store folder: created, or appended to (slides already in it are skipped).
    options : TileOptions
    workers : int
        Slides tiled at once, each in its own process (1: in this process).
    skip_bad : bool
        A slide that cannot be read becomes a note instead of stopping the run.

    Raises
    ------
    SlideError
        A slide that cannot be read (unless ``skip_bad``), or no tiles at all.
    MedcneError
        Bad options, a store at ``out`` of other images or tiles of another
        scale, or a part of ``out`` named as a slide that is not its tiles.
        (That ``out`` is not inside an input is checked by the command line, as
        for ``medcne convert``.)
    AnnotationError
        A GeoJSON file that cannot label tiles: every slide's is read before
        anything is written.
    """
    options.check()
    if not isinstance(workers, int) or workers < 1:
        raise MedcneError(f"`workers` must be a positive integer; got {workers!r}")
    out, progress = Path(out), progress or Progress()
    slides = find_slides(paths)
    held, notes = slides_in_store(out, options, slides)  # refusals first: nothing is written before them
    todo = [(path, sid) for path, sid in slides if sid not in held]
    check_annotations(options, todo)
    report = TileReport(notes=notes)
    if options.slide_labels is not None:
        report.notes += _unmatched_labels(options.slide_labels, slides)
    remove_stale_scratch(out)
    progress.begin(len(slides))
    committer = _Committer(out, options, report)
    try:
        for _, sid in slides:
            if sid in held:
                report.resumed.append(sid)
                progress.slide_done()
        if workers == 1 or len(todo) <= 1:
            _run_here(todo, options, committer, progress, skip_bad)
        else:
            _run_pool(todo, options, committer, progress, skip_bad, workers)
    finally:
        committer.close()
    if not report.tiles and not report.resumed:
        raise SlideError(f"no tiles from {len(slides)} slide(s): {'; '.join(report.notes) or 'nothing kept'}; "
                         "lower `min_tissue` or check the slides")
    return report


def _unmatched_labels(labels: dict[str, str], slides: list[tuple[Path, str]]) -> list[str]:
    """A note naming the rows of the labels CSV that match no slide given (by id or file name)."""
    known = {sid for _, sid in slides} | {path.name for path, _ in slides}
    unmatched = [name for name in labels if name not in known]
    if not unmatched:
        return []
    shown = ", ".join(repr(name) for name in unmatched[:5]) + (f" and {len(unmatched) - 5} more"
                                                               if len(unmatched) > 5 else "")
    return [f"labels CSV: {len(unmatched)} row(s) name no slide given ({shown}); check the slide ids or file names"]


def _run_here(todo, options: TileOptions, committer: _Committer, progress: Progress, skip_bad: bool) -> None:
    for path, sid in todo:
        try:
            plan = plan_path(path, sid, options)
            progress.planned(len(plan))
            committer.commit(plan, iter_blocks(plan, options.tile_size, BLOCK, progress.tiles))
        except SlideError as exc:
            _fail(committer.report, path, sid, exc, skip_bad)
        progress.slide_done()


def _watch_parent(parent: int, grace: float = 0.0) -> None:
    """In a helper process (worker, queue manager): exit once the tiling process ``parent`` is gone
    (killed), ``grace`` seconds later, instead of lingering and tiling on into a scratch folder nobody
    will read. The queue's manager is given a grace, so that no worker outlives it and fails on it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="medcne-watch-parent", daemon=True).start()


def _tile_to_scratch(path: Path, sid: str, options: TileOptions, scratch: Path, messages) -> tuple[SlidePlan, Path]:
    """Worker process: plan a slide and write its tiles to ``scratch/<id>.npy``."""
    plan = plan_path(path, sid, options)
    messages.put(("planned", len(plan)))
    target = scratch / f"{sid}.npy"
    size = options.tile_size
    tiles = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(len(plan), size, size, 3))
    start = 0
    for block in iter_blocks(plan, size, BLOCK, lambda n: messages.put(("tiles", n))):
        tiles[start: start + len(block)] = block
        start += len(block)
    tiles.flush()
    del tiles
    return plan, target


def _scratch_blocks(target: Path) -> Iterator[np.ndarray]:
    tiles = np.load(target, mmap_mode="r")
    for start in range(0, len(tiles), BLOCK):
        yield np.asarray(tiles[start: start + BLOCK])


def _drain(messages, progress: Progress) -> None:
    while True:
        try:
            kind, n = messages.get_nowait()
        except queue_module.Empty:
            return
        (progress.planned if kind == "planned" else progress.tiles)(n)


def _run_pool(todo, options: TileOptions, committer: _Committer, progress: Progress, skip_bad: bool,
              workers: int) -> None:
    """Slides in worker processes (spawned: no OpenSlide handle or thread crosses a fork)."""
    scratch, marker = make_scratch(committer.out)
    context = multiprocessing.get_context("spawn")
    me = os.getpid()
    try:
        manager = SyncManager(ctx=context)
        manager.start(_watch_parent, (me, 2.0))
        with manager, ProcessPoolExecutor(min(workers, len(todo)), mp_context=context,
                                          initializer=_watch_parent, initargs=(me,)) as pool:
            messages = manager.Queue()
            pending = {pool.submit(_tile_to_scratch, p, s, options, scratch, messages): (p, s) for p, s in todo}
            try:
                while pending:
                    done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    _drain(messages, progress)
                    for future in done:
                        path, sid = pending.pop(future)
                        _finish(future, path, sid, committer, progress, skip_bad)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # slides not started are not started
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        os.close(marker)


def _finish(future, path: Path, sid: str, committer: _Committer, progress: Progress, skip_bad: bool) -> None:
    try:
        plan, target = future.result()
    except SlideError as exc:
        _fail(committer.report, path, sid, exc, skip_bad)
    else:
        try:
            committer.commit(plan, _scratch_blocks(target))
        finally:
            target.unlink(missing_ok=True)
    progress.slide_done()
