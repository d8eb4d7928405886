"""Run a GIL-releasing kernel over disjoint ranges in threads.

The compiled kernels (augmentation, silhouette) are numba functions with
``nogil=True`` and no numba threading layer: plain Python threads, started per
call, split the work. That keeps them safe to call from any thread and in
processes that fork (DataLoader workers), where an OpenMP pool is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def split_run(work: Callable[[int, int], None], n: int, threads: int) -> None:
    """Call ``work(start, stop)`` on ``threads`` contiguous, near-equal runs of ``range(n)``.

    The calling thread takes the first run; the others run in new threads.
    An exception in any run is raised here after all runs have ended.
    """
    threads = max(1, min(int(threads), n))
    if threads == 1:
        if n > 0:
            work(0, n)
        return
    bounds = [n * t // threads for t in range(threads + 1)]
    errors: list[BaseException] = []

    def run(start: int, stop: int) -> None:
        try:
            work(start, stop)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller
            errors.append(error)

    helpers = [
        threading.Thread(target=run, args=(bounds[t], bounds[t + 1]), daemon=True)
        for t in range(1, threads)
    ]
    for thread in helpers:
        thread.start()
    run(bounds[0], bounds[1])
    for thread in helpers:
        thread.join()
    if errors:
        raise errors[0]
