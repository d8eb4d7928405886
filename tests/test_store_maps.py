"""A store is read through a few memory-mapped windows at a time, never all its parts mapped at once.

A job under a limit on virtual memory (``ulimit -v``, a cluster's vmem) could
not open a store larger than the limit while every part was mapped, and each
map holds an open file (``ulimit -n``). Every way of reading (chunks in order,
random batches of training, a ``take``, a resize on read) reads the right
pixels with the windows bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from medcne.datasets import load_dataset
from medcne.datasets import store_read as store_module
from medcne.datasets.store_write import StoreWriter

SRC = Path(__file__).resolve().parents[1] / "src"


def numbered_store(path: Path, parts: int, per_part: int, shape=(8, 8, 3)) -> Path:
    """A store whose image i (over all parts) is filled with i % 251: a pixel says where it was read from."""
    with StoreWriter(path, shape) as w:
        for k in range(parts):
            index = np.arange(k * per_part, (k + 1) * per_part)
            images = np.broadcast_to((index % 251).astype(np.uint8)[:, None, None, None], (per_part, *shape))
            w.add_part(f"p{k}", images, ids=[str(i) for i in index])
    return path


def read_from(images: np.ndarray) -> np.ndarray:
    """The index (mod 251) each image of a numbered store was read from."""
    return images.reshape(len(images), -1)[:, 0]


def open_image_files() -> int:
    """This process's open files that are a store part's pixels (each memory map holds one)."""
    names = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
             if os.path.exists(f"/proc/self/fd/{fd}")]
    return sum(name.endswith("images.npy") for name in names)


def test_every_way_of_reading_keeps_few_windows_mapped_and_reads_the_right_images(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "WINDOW_BYTES", 4 * 192, raising=False)  # 4 images of 8 x 8 x 3 a window
    monkeypatch.setattr(store_module, "MAPS_OPEN", 3, raising=False)
    getattr(store_module, "_forget", lambda token: None)(None)  # no window of an earlier test's reader counts
    data = load_dataset(numbered_store(tmp_path / "s", parts=30, per_part=10))
    n, rng = len(data), np.random.default_rng(0)
    random = data.images._read.for_random_access()
    order = rng.permutation(n)
    for batch in np.array_split(order, 10):  # training's batches, in any order
        assert list(read_from(random(batch))) == list(batch % 251)
        assert open_image_files() <= 3
    assert list(read_from(np.concatenate([b for _, b in data.iter_chunks(chunk=7)]))) == list(np.arange(n) % 251)
    picked = rng.choice(n, 50, replace=False)
    assert list(read_from(data.take(picked).images[np.arange(50)])) == list(picked % 251)
    assert open_image_files() <= 3  # not one a part, as when every part was mapped
    del data, random
    import gc

    gc.collect()
    assert open_image_files() == 0  # a reader that is gone lets its windows go


def test_a_resize_on_read_reads_the_stored_images_a_bounded_block_at_a_time(tmp_path, monkeypatch):
    """Images of 128 px read at 16 px: a chunk of the small result is 64 times as many images as a
    chunk of the stored ones; they were read at once (4,096 images of 256 px read at 28 px: 805 MB)."""
    import tracemalloc

    from medcne import defaults

    with StoreWriter(tmp_path / "s", (128, 128, 3)) as w:  # 9.8 MB of pixels
        w.add_part("a", np.full((200, 128, 128, 3), 7, np.uint8), ids=[str(i) for i in range(200)])
    monkeypatch.setattr(defaults, "READ_CHUNK_MB", 1)  # 21 stored images, or 1,365 at 16 px
    data = load_dataset(tmp_path / "s", size=16)
    tracemalloc.start()
    try:
        blocks = [block for _, block in data.iter_chunks()]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [b.shape for b in blocks] == [(200, 16, 16, 3)] and (blocks[0] == 7).all()
    assert peak < 4 << 20, f"{peak / 2**20:.1f} MiB"  # a few 1 MB blocks, not the 9.8 MB of pixels


LIMITED = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from medcne import defaults
    from medcne.datasets import load_dataset

    defaults.READ_CHUNK_MB = 2
    data = load_dataset(sys.argv[1])
    size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_AS)[1]))
    chunks = [int(b.reshape(len(b), -1)[:, 0].astype(np.int64).sum()) for _, b in data.iter_chunks()]
    order = np.random.default_rng(0).permutation(len(data))[:300]
    batch = data.images._read.for_random_access()(order).reshape(300, -1)[:, 0]
    print(json.dumps({"sum": sum(chunks), "batch_ok": bool((batch == order % 251).all())}))
""")


def test_a_store_larger_than_the_limit_on_virtual_memory_is_read_under_it(tmp_path):
    """The process may grow by 64 MiB of address space after opening a store of 96 MB (three parts of
    32 MB): it reads every image, in order and in random batches. With every part mapped at once, the
    first read failed ("Cannot allocate memory")."""
    per_part = 32 * 2**20 // (64 * 64 * 3)
    store = numbered_store(tmp_path / "s", parts=3, per_part=per_part, shape=(64, 64, 3))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", LIMITED, str(store), str(64 * 2**20)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"sum": int((np.arange(3 * per_part) % 251).sum()), "batch_ok": True}


def test_no_address_space_left_for_a_window_lets_the_others_go_then_says_so_in_one_line(tmp_path, monkeypatch):
    import errno
    import mmap

    import pytest

    from medcne.errors import DataError

    store = numbered_store(tmp_path / "s", parts=2, per_part=4)
    data = load_dataset(store)
    store_module._forget(None)  # no window of an earlier test's reader counts
    real, calls = mmap.mmap, []

    def short_of_room(*args, **kwargs):  # the first try fails, as under `ulimit -v` with windows kept mapped
        calls.append(len(store_module._MAPS))
        if len(calls) == 2:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(mmap, "mmap", short_of_room)
    assert list(read_from(data.images[[0]])) == [0]
    assert list(read_from(data.images[[5]])) == [5] and calls == [0, 1, 0]  # the kept window let go, then mapped

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", no_room)
    with pytest.raises(DataError, match=r"part-000001.images\.npy: no virtual memory left to map .*`ulimit -v`") as err:
        load_dataset(store).images[[6]]  # a new reader: no window of its own mapped yet
    assert "\n" not in str(err.value)
