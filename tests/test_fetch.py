"""fetch_medmnist and `medcne fetch` against a local HTTP server; nothing reaches the internet."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from medcne.cli import main
from medcne.datasets import fetch as fetch_module
from medcne.datasets import fetch_medmnist, load_dataset
from medcne.datasets.medmnist_info import MD5
from medcne.errors import FetchError, MedcneError


def small_medmnist_npz() -> bytes:
    """A tiny file in the official MedMNIST layout: 3 splits, labels as N x 1."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 8).reshape(n, 1).astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


class LocalServer:
    """An HTTP server on 127.0.0.1 in a background thread, for the handler a subclass defines."""

    def serve(self, handler) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Server(LocalServer):
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 and records the paths asked for."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        self.serve(Handler)


@pytest.fixture(autouse=True)
def no_internet(tmp_path, monkeypatch):
    """Point the default mirror at a closed local port and the cache into tmp_path,
    so a test that forgets ``url=`` fails instead of downloading."""
    monkeypatch.setenv(fetch_module.MIRROR_ENV, f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv(fetch_module.CACHE_ENV, str(tmp_path / "default-cache"))


@pytest.fixture
def payload() -> bytes:
    return small_medmnist_npz()


@pytest.fixture
def server(payload, monkeypatch):
    md5 = hashlib.md5(payload).hexdigest()
    monkeypatch.setitem(MD5, "bloodmnist", {28: md5, 64: md5, 128: md5, 224: md5})
    srv = Server({"/bloodmnist.npz": payload, "/bloodmnist_64.npz": payload})
    yield srv
    srv.close()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_downloads_verifies_and_loads(server, payload, tmp_path):
    cache = tmp_path / "cache"
    path = fetch_medmnist("bloodmnist", root=cache, url=server.url)
    assert path == cache / "bloodmnist.npz"
    assert path.read_bytes() == payload
    assert server.requests == ["/bloodmnist.npz"]
    assert [p.name for p in cache.iterdir()] == ["bloodmnist.npz"]  # no temp file left
    data = load_dataset(path)
    assert len(data) == 11
    assert data.images.shape[1:] == (28, 28, 3)
    assert data.class_names[0] == "basophil"


def test_env_mirror_default_cache_and_size_suffix(server, payload, tmp_path, monkeypatch):
    monkeypatch.setenv(fetch_module.MIRROR_ENV, server.url)
    path = fetch_medmnist("BloodMNIST", size=64)
    assert path == tmp_path / "default-cache" / "bloodmnist_64.npz"
    assert server.requests == ["/bloodmnist_64.npz"]
    assert path.read_bytes() == payload


def test_reuses_cached_file(server, payload, tmp_path):
    cache = tmp_path / "cache"
    first = fetch_medmnist("bloodmnist", root=cache, url=server.url)
    second = fetch_medmnist("bloodmnist", root=cache, url=server.url)
    assert first == second
    assert len(server.requests) == 1
    assert first.read_bytes() == payload


def test_a_file_that_is_not_the_official_one_is_refused_and_left_alone(server, payload, tmp_path):
    # The user's own data (or an edited, truncated copy) under the official name, in their data folder.
    folder = tmp_path / "data"
    folder.mkdir()
    mine = folder / "bloodmnist.npz"
    mine.write_bytes(payload[:100])
    with pytest.raises(MedcneError) as info:
        fetch_medmnist("bloodmnist", root=folder, url=server.url)
    message = str(info.value)
    assert not isinstance(info.value, FetchError)
    assert str(mine) in message and "not the official bloodmnist.npz" in message
    assert "MD5 differs" in message and "move or rename it" in message and "`root`" in message
    assert "\n" not in message
    assert mine.read_bytes() == payload[:100]
    assert [p.name for p in folder.iterdir()] == ["bloodmnist.npz"]  # no temp file either
    assert server.requests == []


def test_a_folder_under_the_files_name_is_refused(server, tmp_path):
    (tmp_path / "bloodmnist.npz").mkdir()
    with pytest.raises(MedcneError, match="it is not a file"):
        fetch_medmnist("bloodmnist", root=tmp_path, url=server.url)
    assert server.requests == []


def test_cli_refuses_a_file_that_is_not_the_official_one(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(fetch_module.MIRROR_ENV, server.url)
    mine = tmp_path / "bloodmnist.npz"
    mine.write_bytes(b"my curated data")
    assert main(["fetch", "bloodmnist", "--root", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medcne fetch: error:")
    assert str(mine) in lines[0] and "another --root" in lines[0]
    assert mine.read_bytes() == b"my curated data"
    assert server.requests == []


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf"), 1e12, True, "60"])
def test_timeout_must_be_positive_seconds(timeout, server, tmp_path):
    with pytest.raises(MedcneError, match="^`timeout` must be a positive number of seconds"):
        fetch_medmnist("bloodmnist", root=tmp_path / "cache", url=server.url, timeout=timeout)
    assert server.requests == []
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("value", ["-1", "0", "inf", "1e12"])
def test_cli_timeout_must_be_positive_seconds(value, server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(fetch_module.MIRROR_ENV, server.url)
    assert main(["fetch", "bloodmnist", "--root", str(tmp_path / "c"), "--timeout", value]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("medcne fetch: error: --timeout must be a positive number of seconds")
    assert server.requests == []


def test_wrong_md5_keeps_nothing(server, payload, tmp_path, monkeypatch):
    monkeypatch.setitem(MD5, "bloodmnist", {28: "0" * 32})
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as info:
        fetch_medmnist("bloodmnist", root=cache, url=server.url)
    message = str(info.value)
    assert "0" * 32 in message
    assert hashlib.md5(payload).hexdigest() in message
    assert not cache.exists()  # nothing kept, not even the folder made for it


def test_offline_names_the_file_to_download(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/"
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as info:
        fetch_medmnist("bloodmnist", root=cache, url=url, timeout=5)
    message = str(info.value)
    assert f"{url}bloodmnist.npz" in message
    assert "medcne info /path/to/bloodmnist.npz" in message
    assert "\n" not in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_server_that_never_answers_times_out(tmp_path):
    # A listening socket that never accepts: the connection opens, no reply comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(FetchError, match="could not download"):
            fetch_medmnist("bloodmnist", root=tmp_path / "cache", url=url, timeout=0.3)
    assert not (tmp_path / "cache").exists()  # the folder made for the file goes with it


def test_http_error_is_a_fetch_error(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_medmnist("bloodmnist", size=128, root=tmp_path / "new" / "cache", url=server.url)
    assert server.requests == ["/bloodmnist_128.npz"]
    assert list(tmp_path.iterdir()) == []  # a user probe: an offline fetch left its empty --root behind
    (tmp_path / "mine").mkdir()  # a folder that was there before stays
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_medmnist("bloodmnist", size=128, root=tmp_path / "mine", url=server.url)
    assert (tmp_path / "mine").is_dir()


def test_unwritable_cache_is_a_fetch_error(server, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(FetchError, match="`root`"):
        fetch_medmnist("bloodmnist", root=not_a_folder, url=server.url)


def test_unknown_name_or_size_lists_choices(server, tmp_path):
    with pytest.raises(MedcneError, match="bloodmnist") as info:
        fetch_medmnist("bloodmnis", root=tmp_path, url=server.url)
    assert not isinstance(info.value, FetchError)
    with pytest.raises(MedcneError, match="28, 64, 128, 224"):
        fetch_medmnist("bloodmnist", size=32, root=tmp_path, url=server.url)
    assert server.requests == []


def test_cli_prints_the_path(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(fetch_module.MIRROR_ENV, server.url)
    assert main(["fetch", "bloodmnist", "--size", "64", "--root", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out.strip()
    assert Path(out) == tmp_path / "c" / "bloodmnist_64.npz"
    assert Path(out).is_file()


@pytest.mark.parametrize("argv, expected", [
    (["fetch", "nosuchmnist"], "name must be one of"),
    (["fetch", "bloodmnist", "--size", "30"], "--size must be one of"),
    (["fetch", "bloodmnist"], "/bloodmnist.npz"),  # offline: the closed port of no_internet
])
def test_cli_errors_are_one_line_exit_2(argv, expected, tmp_path, capsys):
    assert main([*argv, "--root", str(tmp_path / "c"), "--timeout", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("medcne fetch: error:")
    assert expected in lines[0]


class EndlessServer(LocalServer):
    """Answers every GET with an endless body (optionally announcing ``length``), counting the bytes it sent."""

    def __init__(self, length: int | None):
        self.sent = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # no Content-Length needed: the body ends when the connection closes

            def do_GET(self) -> None:
                self.send_response(200)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                block = bytes(1 << 16)
                try:
                    while owner.sent < (300 << 20):  # a 300 MB body, as in the issue
                        self.wfile.write(block)
                        owner.sent += len(block)
                except OSError:  # the client hung up: what we want
                    pass

            def log_message(self, *args) -> None:
                pass

        self.serve(Handler)


@pytest.mark.parametrize("announced", [None, 300 << 20])
def test_a_body_longer_than_the_file_can_be_is_cut_off(announced, tmp_path, monkeypatch):
    from medcne.datasets import medmnist_info

    # 11 images of 28 x 28 x 3 can be at most ~1.1 MB as an npz: the cap is that, not 300 MB.
    monkeypatch.setitem(medmnist_info.N_IMAGES, "bloodmnist", 11)
    limit = medmnist_info.max_file_bytes("bloodmnist", 28)
    assert limit < 2 << 20
    server = EndlessServer(announced)
    try:
        with pytest.raises(FetchError) as info:
            fetch_medmnist("bloodmnist", root=tmp_path / "cache", url=server.url)
    finally:
        server.close()
    message = str(info.value)
    assert f"{limit:,} bytes at most" in message and "nothing was kept" in message
    assert ("announces 314,572,800 bytes" in message) == (announced is not None)
    assert server.sent < 64 << 20  # stopped long before the end (socket buffers hold a few MB)
    assert not (tmp_path / "cache").exists()  # nothing kept, not even the folder made for it


def test_the_cap_holds_the_real_files(bloodmnist_path):
    from medcne.datasets.medmnist_info import MD5, N_IMAGES, max_file_bytes

    assert set(N_IMAGES) == set(MD5)
    # The shared copy holds the official bloodmnist.npz's pixels and labels (as int64), compressed as well.
    assert bloodmnist_path.stat().st_size < max_file_bytes("bloodmnist", 28)
    assert max_file_bytes("bloodmnist", 28) == int((17_092 * 28 * 28 * 3 + 17_092 * 8) * 1.01) + (1 << 20)
    assert max_file_bytes("chestmnist", 64) > 112_120 * (64 * 64 + 14 * 8)


def test_fetch_sample_prints_the_bundled_samples_path_and_downloads_nothing(capsys, monkeypatch):
    from medcne.datasets import SAMPLE_PATH

    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded for the bundled sample")

    import medcne.cli.fetch as fetch_command

    monkeypatch.setattr(fetch_command, "fetch_medmnist", no_download)
    assert main(["fetch", "sample"]) == 0
    assert capsys.readouterr().out.strip() == str(SAMPLE_PATH)
    assert main(["fetch", "sample", "--size", "64"]) == 2
    assert "the bundled sample is 28x28 only" in capsys.readouterr().err
    for option in (["--root", "cache"], ["--timeout", "60"]):  # they would do nothing: said, not ignored
        assert main(["fetch", "sample", *option]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{option[0]}: the bundled sample is not downloaded or copied" in err


def test_fetch_waits_its_default_timeout_when_none_is_given(monkeypatch, capsys):
    import medcne.cli.fetch as fetch_command
    from medcne.datasets.fetch import DEFAULT_TIMEOUT

    seen = []
    monkeypatch.setattr(fetch_command, "fetch_medmnist", lambda name, **kw: seen.append(kw["timeout"]) or "x")
    assert main(["fetch", "bloodmnist"]) == 0 and main(["fetch", "bloodmnist", "--timeout", "5"]) == 0
    assert seen == [DEFAULT_TIMEOUT, 5.0]
