"""Training streamed from an on-disk store: same batches as in memory, resume, shards, the automatic choice."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

from ddphelpers import free_port
from medcne import TSimCNE
from medcne.datasets import from_array, load_dataset
from medcne.errors import MedcneError
from medcne.train.store import ImageStore, StreamingStore, make_store
from storehelpers import streamed_fit_entry, write_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw):
    args = dict(epochs=(1, 1, 1), warmup=(0, 0, 0), batch_size=16, width=4, device="cpu",
                random_state=0, verbose=False)
    return TSimCNE(**{**args, **kw})


def test_streamed_batches_equal_in_memory_batches(tmp_path):
    data = load_dataset(write_store(tmp_path / "s", n=40, size=8))
    cpu = torch.device("cpu")
    memory, stream = ImageStore(data, cpu), StreamingStore(data, cpu, prefetch=2)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    rows = [slice(i * 8, i * 8 + 8) for i in range(5)]
    got, want = list(stream.batches(order, rows)), list(memory.batches(order, rows))
    assert len(got) == 5 and all(torch.equal(a, b) and a.is_contiguous() for a, b in zip(got, want, strict=True))
    assert stream.read_count == 40


def test_streamed_training_equals_in_memory_training_bit_for_bit(tmp_path):
    data = load_dataset(write_store(tmp_path / "s"))
    assert data.is_lazy
    in_memory = tiny(stream=False).fit(data)
    streamed = tiny(stream=True).fit(data)
    np.testing.assert_array_equal(streamed.embedding_, in_memory.embedding_)
    assert [r["loss"] for r in streamed.history_] == [r["loss"] for r in in_memory.history_]


class Stop(Exception):
    pass


def test_streamed_training_resumes_exactly(tmp_path):
    data = load_dataset(write_store(tmp_path / "s"))
    full = tiny(epochs=(2, 1, 1), stream=True).fit(data)
    ckpt = tmp_path / "ckpt.pt"

    def stop(end):
        if end.position.stage == 0 and end.position.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        tiny(epochs=(2, 1, 1), stream=True, checkpoint=ckpt, checkpoint_minutes=0).fit(data, callback=stop)
    resumed = tiny(epochs=(2, 1, 1), stream=True, checkpoint=ckpt).fit(data, resume_from=ckpt)
    np.testing.assert_array_equal(resumed.embedding_, full.embedding_)


def test_a_read_error_in_the_background_reaches_training(tmp_path):
    data = load_dataset(write_store(tmp_path / "s", n=32, size=8))
    stream = StreamingStore(data, torch.device("cpu"))

    def broken(indices):
        raise OSError("disk gone")

    data.images._read = broken
    with pytest.raises(OSError, match="disk gone"):
        list(stream.batches(torch.arange(32), [slice(0, 8), slice(8, 16)]))


def test_automatic_choice(tmp_path, monkeypatch):
    cpu = torch.device("cpu")
    lazy = load_dataset(write_store(tmp_path / "s", n=16, size=8))
    array = from_array(np.zeros((16, 8, 8, 3), np.uint8))
    assert isinstance(make_store(lazy, cpu), ImageStore)  # fits: in memory
    monkeypatch.setattr("medcne.train.store.available_bytes", lambda: 1000)  # 16 x 192 bytes do not fit in 800
    assert isinstance(make_store(lazy, cpu), StreamingStore)
    assert isinstance(make_store(array, cpu), ImageStore)  # already in memory
    assert isinstance(make_store(lazy, cpu, stream=False), ImageStore)
    assert isinstance(make_store(array, cpu, stream=True), StreamingStore)
    with pytest.raises(MedcneError, match="stream must be"):
        make_store(lazy, cpu, stream="yes")


@pytest.mark.slow
def test_two_processes_read_disjoint_shards(tmp_path):
    store = write_store(tmp_path / "s", n=48)
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=streamed_fit_entry, args=(r, 2, port, str(store), str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(150)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    errors = [(tmp_path / f"rank{r}.err").read_text() for r in range(2) if (tmp_path / f"rank{r}.err").exists()]
    assert not alive and not errors, errors or "ranks still running"
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    reads = [np.concatenate(r["read"]) for r in ranks]
    # 48 images, global batch 16: 3 steps of 8 images per rank; each rank reads only its own 24.
    assert [len(r) for r in reads] == [24, 24]
    assert not set(reads[0].tolist()) & set(reads[1].tolist())
    assert sorted(np.concatenate(reads).tolist()) == list(range(48))
    assert ranks[0]["n"] == ranks[1]["n"] == 48
