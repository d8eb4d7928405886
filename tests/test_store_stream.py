"""Training streamed from an on-disk store: same batches as in memory, resume, shards, the automatic choice."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

from ddphelpers import free_port
from medcne import TSimCNE
from medcne.datasets import from_array, load_dataset
from medcne.datasets.memory import training_streams
from medcne.errors import DataError, MedcneError
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

    def broken(indices):
        raise OSError("disk gone")

    data.images._read = broken
    stream = StreamingStore(data, torch.device("cpu"))
    with pytest.raises(OSError, match="disk gone"):
        list(stream.batches(torch.arange(32), [slice(0, 8), slice(8, 16)]))


def test_automatic_choice(tmp_path, monkeypatch):
    lazy = load_dataset(write_store(tmp_path / "s", n=16, size=8))
    array = from_array(np.zeros((16, 8, 8, 3), np.uint8))
    assert not training_streams(lazy)  # fits: in memory
    assert not training_streams(array)  # already in memory
    monkeypatch.setattr("medcne.datasets.memory.available_bytes", lambda: 1000)  # 16 x 192 bytes do not fit in 800
    assert training_streams(lazy)
    with pytest.raises(DataError, match="needs"):  # forced into memory that is not there: refused with the figure
        training_streams(lazy, stream=False)
    assert training_streams(array, stream=True)
    cpu = torch.device("cpu")
    assert isinstance(make_store(lazy, cpu, True), StreamingStore)
    assert isinstance(make_store(lazy, cpu, False), ImageStore)


def test_the_estimator_resolves_and_records_the_choice_before_training(tmp_path, monkeypatch):
    lazy = load_dataset(write_store(tmp_path / "s", n=16, size=8))
    est = TSimCNE(epochs=(1, 0, 0), batch_size=8, width=8, device="cpu")
    assert est.validate(lazy).stream_ is False and est.record()["resolved"]["stream"] is False
    monkeypatch.setattr("medcne.datasets.memory.available_bytes", lambda: 1000)
    assert est.validate(lazy).stream_ is True and est.record()["resolved"]["stream"] is True
    with pytest.raises(DataError, match="needs"):  # refused by validate, before anything is trained or written
        TSimCNE(epochs=(1, 0, 0), stream=False, device="cpu").validate(lazy)
    with pytest.raises(MedcneError, match="stream"):
        TSimCNE(stream="yes").validate(lazy)


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
    # Placing the images: each rank embeds its half as a lazy view (read chunk by chunk), never as one array.
    assert [r["embedded"] for r in ranks] == [[("LazyImages", 24)], [("LazyImages", 24)]]


@pytest.mark.slow
def test_cli_fit_streams_a_store_and_embeds_it(tmp_path, capsys):
    import json

    from medcne.cli import main

    store = write_store(tmp_path / "s", n=48)
    tiny_cli = ["--epochs", "1,1,1", "--warmup", "0,0,0", "--width", "4", "--batch-size", "16", "--device", "cpu"]
    assert main(["fit", str(store), "--out", str(tmp_path / "run"), "--stream", "on", *tiny_cli]) == 0
    assert json.loads((tmp_path / "run" / "params.json").read_text())["estimator"]["stream"] is True
    assert main(["embed", str(tmp_path / "run"), str(store), "--out", str(tmp_path / "map.csv")]) == 0
    assert len((tmp_path / "map.csv").read_text().splitlines()) == 49
    assert main(["fit", str(store), "--out", str(tmp_path / "r2"), "--stream", "sometimes"]) == 2
    assert "--stream" in capsys.readouterr().err


def test_training_that_stops_early_ends_the_reader_thread(tmp_path):
    import threading

    data = load_dataset(write_store(tmp_path / "s", n=64, size=8))
    stream = StreamingStore(data, torch.device("cpu"), prefetch=1)
    batches = stream.batches(torch.arange(64), [slice(i, i + 4) for i in range(0, 64, 4)])
    next(batches)
    batches.close()  # what happens when an error leaves the epoch
    assert not any(t.name == "medcne-stream" for t in threading.enumerate())


def test_a_store_that_can_neither_be_held_nor_streamed_is_refused_before_the_run_is_written(tmp_path, monkeypatch,
                                                                                             capsys):
    from medcne.cli import main

    store = write_store(tmp_path / "s", n=16, size=8)
    monkeypatch.setattr("medcne.datasets.memory.available_bytes", lambda: 1000)
    out = tmp_path / "run"
    assert main(["fit", str(store), "--out", str(out), "--stream", "off", "--epochs", "1,0,1", "--width", "4",
                 "--batch-size", "8", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "needs" in err and "--subset" in err and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s"]
